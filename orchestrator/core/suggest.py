"""Did-you-mean: the close match of a misspelt name, for error messages."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


def suggest(name: str, candidates: Iterable[str]) -> str:
    """A ``; did you mean 'x'?`` suffix when a close candidate exists, else ''."""
    close = get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
