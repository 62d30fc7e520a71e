"""Compiled plans kept between builds, so that an unchanged pipeline is not parsed again.

A saved plan is reused only while everything it was compiled from is unchanged:

- the pipeline file's bytes, its absolute path, and orch's own code;
- the bytes of every file it includes (`include:`), recorded by absolute path;
- the `--set` values, `--provider`, the settings orch reads while loading
  (`ORCH_TEMPLATE_TIMEOUT_S`, `ORCH_TEMPLATE_MAX_BYTES`), and the environment variables loading
  read: each one looked up by name, or the whole environment (but for `_` and `OLDPWD`, which a
  shell changes all the time) when something went through all of it;
- every file read at plan time (dotenv files, values files, template and prompt files the user
  writes, parsed for what they reach, the data files of `foreach: {rows: ...}`) and what each
  `foreach` glob matches;
- the existence of every source input (a missing one must be reported where it is declared,
  which takes the full load).

Anything else, including an unreadable or foreign file, means a full load. A saved plan carries
the sha256 of its bytes (`integrity.seal`): one cut short or with a flipped bit is not used,
nor one whose fields are not what a save writes (`Plan.from_json` checks each).
Plans live in `<workdir>/.orch/plans/`; the workdir is found from the pipeline's top-level
`workdir:` line.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import __version__
from orchestrator.core.paths import (
    cut,
    escapes_through_symlink,
    exists,
    expand_glob,
    is_dir,
    name_of,
    normalize,
)
from orchestrator.language.tracked import TrackedEnv
from orchestrator.plan.compiled import Plan
from orchestrator.store.digest import canonical_json, sha256_file
from orchestrator.store.integrity import seal, unseal
from orchestrator.store.layout import StateFolder

if TYPE_CHECKING:
    from orchestrator.language.pipeline import LoadedPipeline

PLAN_FORMAT = 3
_WORKDIR_LINE = re.compile(rb"""^workdir:[ \t]*(["']?)([^"'#\r\n]*?)\1[ \t]*(?:#.*)?$""", re.M)
_PACKAGE = Path(__file__).resolve().parent
LOAD_SETTINGS = ("ORCH_TEMPLATE_TIMEOUT_S", "ORCH_TEMPLATE_MAX_BYTES")
"""Variables orch itself reads while loading a pipeline (see `language.limits`)."""
_VOLATILE = frozenset({"_", "OLDPWD"})
"""Variables a shell changes on every command or `cd`; no pipeline should depend on them."""


def load(
    pipeline: Path, overrides: Mapping[str, Any], provider: str | None
) -> tuple[Plan | None, str]:
    """The saved plan if it is still valid (else None), and the identity a save must use."""
    found, identity = _valid(pipeline, overrides, provider)
    return (None if found is None else found[0]), identity


def saved_reads(
    pipeline: Path, overrides: Mapping[str, Any], provider: str | None
) -> dict[str, Any] | None:
    """What the saved plan was compiled from, as `reads` gives it, if the plan is still valid."""
    found, _ = _valid(pipeline, overrides, provider)
    return None if found is None else found[1]


def _valid(
    pipeline: Path, overrides: Mapping[str, Any], provider: str | None
) -> tuple[tuple[Plan, dict[str, Any]] | None, str]:
    """The saved plan and its reads if still valid (else None), and the identity of a save."""
    try:
        text = pipeline.read_bytes()
    except OSError:
        return None, ""
    identity = _identity(pipeline, text, overrides, provider)
    file = _plan_file(pipeline, text, identity)
    try:
        record = unseal(file.read_bytes())
        if record is None:
            return None, identity
        saved = json.loads(record)
        if saved.get("format") != PLAN_FORMAT or saved.get("identity") != identity:
            return None, identity
        plan = Plan.from_json(saved["plan"])
        if not _unchanged(Path(plan.workdir), saved["reads"], plan):
            return None, identity
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, identity
    return (replace(plan, pipeline=str(pipeline)), saved["reads"]), identity


def save(identity: str, loaded: LoadedPipeline, plan: Plan) -> None:
    """Keep a compiled plan for the next build; failing to is not an error."""
    from orchestrator.store.filestore import atomic_write

    if not identity:
        return
    text = loaded.file.read_bytes()
    file = _plan_file(loaded.file, text, identity)
    record = {
        "format": PLAN_FORMAT,
        "identity": identity,
        "reads": reads(loaded),
        "plan": plan.to_json(),
    }
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(record, separators=(",", ":")).encode("utf-8")
        atomic_write(file, seal(data), durable=False)
    except OSError:
        return


def _identity(
    pipeline: Path, text: bytes, overrides: Mapping[str, Any], provider: str | None
) -> str:
    material = {
        "format": PLAN_FORMAT,
        "orch": [__version__, _code_stamp()],
        "pipeline": [str(pipeline.resolve()), hashlib.sha256(text).hexdigest()],
        "overrides": dict(overrides),
        "provider": provider,
        "settings": {name: os.environ.get(name) for name in LOAD_SETTINGS},
    }
    return hashlib.sha256(canonical_json(material)).hexdigest()


def _code_stamp() -> list[list[Any]]:
    """Size and mtime of orch's own modules, so that a changed orch compiles afresh."""
    stamps = []
    for module in sorted(_PACKAGE.rglob("*.py")):
        stat = module.stat()
        stamps.append([module.name, stat.st_size, stat.st_mtime_ns])
    return stamps


PLAN_STEM_BYTES = 120
"""How much of the pipeline file's stem a saved plan's name keeps (a hash tells them apart)."""


def _plan_file(pipeline: Path, text: bytes, identity: str) -> Path:
    match = _WORKDIR_LINE.search(text)
    workdir = pipeline.parent / (match[2].decode(errors="replace").strip() if match else ".")
    name = hashlib.sha256(str(pipeline.resolve()).encode()).hexdigest()[:16]
    return StateFolder(workdir).plans / f"{cut(pipeline.stem, PLAN_STEM_BYTES)}-{name}.json"


def reads(loaded: LoadedPipeline) -> dict[str, Any]:
    """Every file and glob that rendering the pipeline looked at, with what it saw (a fake
    provider's reply files among them: whether one exists decides the step's inputs)."""
    files = [normalize(name) for name in loaded.spec.dotenv]
    files.extend(str(path) for path in loaded.source.includes)  # absolute: maybe outside
    if isinstance(loaded.spec.vars, list):
        files.extend(normalize(entry) for entry in loaded.spec.vars if isinstance(entry, str))
    for step in loaded.steps.values():
        files.extend(step.plan_reads)
    workdir = loaded.workdir
    digests = {path: _digest(workdir / path) for path in set(files)}
    digests.update(loaded.data_files)  # as they were when read, not as they are now
    return {
        "files": dict(sorted(digests.items())),
        "globs": {pattern: list(found) for pattern, found in sorted(loaded.globs.items())},
        "environ": _environ_read(loaded.env),
    }


def _environ_read(env: Mapping[str, str]) -> dict[str, str | None]:
    """What loading read of the environment: a digest of each variable looked up by name, as
    the real environment holds it (the dotenv files are among the files read), or of the
    whole environment under `*`."""
    if not isinstance(env, TrackedEnv) or env.whole:
        return {"*": _whole_environ()}
    return {name: _value_digest(os.environ.get(name)) for name in sorted(env.names)}


def _whole_environ() -> str:
    """A digest of every environment variable but the volatile ones."""
    environ = {k: v for k, v in os.environ.items() if k not in _VOLATILE}
    return hashlib.sha256(canonical_json(environ)).hexdigest()


def _value_digest(value: str | None) -> str | None:
    """A variable's value as a digest (a saved plan holds no secret), None when unset."""
    return (
        None
        if value is None
        else hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    )


def _environ_unchanged(read: Mapping[str, Any]) -> bool:
    if "*" in read:
        return bool(read["*"] == _whole_environ())
    return all(_value_digest(os.environ.get(name)) == digest for name, digest in read.items())


def _digest(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _unchanged(workdir: Path, reads: Mapping[str, Any], plan: Plan) -> bool:
    if not _environ_unchanged(reads["environ"]):
        return False
    for path, digest in reads["files"].items():
        if _digest(workdir / path) != digest:
            return False
    for pattern, found in reads["globs"].items():
        if expand_glob(workdir, pattern) != found:
            return False
    return all(exists(workdir, path) for path in plan.sources) and _confined(workdir, plan)


def _confined(workdir: Path, plan: Plan) -> bool:
    """Whether no folder holding a declared path now leads outside the workdir (a fresh load
    refuses such paths where they are declared)."""
    folders = {
        posixpath.dirname(path.rstrip("/")) or "."
        for step in plan.steps.values()
        for path in (*map(name_of, step.inputs), *step.outputs)
    }
    folders.update(path for step in plan.steps.values() for path in step.outputs if is_dir(path))
    return not any(escapes_through_symlink(workdir, folder) for folder in folders if folder != ".")


def step_graph(
    workdir: Path, name: str, steps: Collection[str]
) -> dict[str, tuple[str, ...]] | None:
    """Each of `steps`' predecessors among them, from the newest plan saved in the workdir for
    the pipeline `name` that holds every one of them; None when no saved plan does.

    A run folder keeps what happened, not the graph: `orch report` takes it from here. The plan
    is the pipeline as last compiled, so it can be newer than the run it is drawn with.
    """
    wanted = set(steps)
    for file in _newest_first(StateFolder(workdir).plans.glob("*.json")):
        plan = _read_plan(file)
        if plan is not None and plan.name == name and wanted <= plan.steps.keys():
            return {s: tuple(p for p in plan.steps[s].preds if p in wanted) for s in steps}
    return None


def _newest_first(files: Iterable[Path]) -> list[Path]:
    dated = []
    for file in files:
        try:
            dated.append((file.stat().st_mtime_ns, file))
        except OSError:
            continue
    return [file for _, file in sorted(dated, reverse=True)]


def _read_plan(file: Path) -> Plan | None:
    try:
        record = unseal(file.read_bytes())
        return Plan.from_json(json.loads(record)["plan"]) if record is not None else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
