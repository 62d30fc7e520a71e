"""Run records read back from disk — manifests and events — checked field by field.

A run folder is a record, not state a build relies on, but anything may have damaged it (a
killed build, a full disk, a hand edit). `orch runs`, `orch show` and `orch tail` read it through
these functions (a manifest through `manifest.load`): a value of the wrong type is dropped (or
the default taken), never passed on to code that would trip over it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.record.events import Event

_ENVELOPE_TEXTS = ("ts", "level", "job_id", "type")


def event(value: Any) -> Event | None:
    """An event with a well-typed envelope (fields of the wrong type dropped), or None when
    `value` is not an event at all (not a mapping, or no type)."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    checked: Event = {
        name: value[name] for name in _ENVELOPE_TEXTS if isinstance(value.get(name), str)
    }
    step, data = value.get("step"), value.get("data")
    checked["step"] = step if isinstance(step, str) else None
    checked["data"] = data if isinstance(data, dict) else {}
    return checked


def failure(raw: Any) -> dict[str, str] | None:
    """A failure's kind and message, or None."""
    if not isinstance(raw, dict):
        return None
    return {"kind": text(raw.get("kind")), "message": text(raw.get("message"))}


def meta(raw: Any) -> dict[str, Any]:
    """What a step used: provider calls, tokens and cost as numbers, other facts as scalars."""
    if not isinstance(raw, dict):
        return {}
    kept: dict[str, Any] = {
        key: value
        for key, value in raw.items()
        if key not in ("calls", "tokens", "cost")
        and (value is None or isinstance(value, str | int | float | bool))
    }
    calls = count(raw.get("calls"))
    if calls:
        kept["calls"] = calls
    tokens = raw.get("tokens")
    if isinstance(tokens, dict):
        kept["tokens"] = {name: count(value) for name, value in tokens.items()}
    price = number(raw.get("cost"))
    if price is not None:
        kept["cost"] = price
    return kept


def text(value: Any) -> str:
    """A string, or '' for anything else."""
    return value if isinstance(value, str) else ""


def texts(value: Any) -> list[str]:
    """The strings of a list ([] for anything else)."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def number(value: Any) -> float | None:
    """A finite number (not a boolean), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if abs(value) < float("inf") else None


def count(value: Any) -> int:
    """A non-negative whole number, or 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
