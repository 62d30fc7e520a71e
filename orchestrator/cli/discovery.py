"""Finding the pipeline a command means: the file its PIPELINE argument names, or the one the
current folder holds (`orch.yaml`, else `orch.yml`, else the only `pipelines/*.yaml`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import UsageError

DEFAULT_NAMES = ("orch.yaml", "orch.yml")
PIPELINES_FOLDER = "pipelines"
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Search:
    """The pipelines a folder offers when none is named: one, or the candidates that make the
    choice ambiguous, or none."""

    folder: Path
    found: tuple[Path, ...]

    def pipeline(self) -> Path:
        """The one pipeline found; a UsageError when there are none or several."""
        if len(self.found) == 1:
            return self.found[0]
        where = self.folder.resolve()
        if not self.found:
            looked = ", ".join([*DEFAULT_NAMES, *(f"{PIPELINES_FOLDER}/*{s}" for s in SUFFIXES)])
            raise UsageError(f"no pipeline found in {where} (looked for {looked}); name one")
        names = ", ".join(str(path) for path in self.found)
        raise UsageError(f"{len(self.found)} pipelines found in {where}: {names}; name one")


def search(folder: Path = Path()) -> Search:
    """`orch.yaml`, else `orch.yml`, else every `pipelines/*.yaml` and `pipelines/*.yml`."""
    for name in DEFAULT_NAMES:
        if (folder / name).is_file():
            return Search(folder, (Path(name),))
    pipelines = folder / PIPELINES_FOLDER
    try:
        entries = sorted(pipelines.iterdir())
    except OSError:  # no such folder, or not one
        return Search(folder, ())
    found = tuple(
        Path(PIPELINES_FOLDER, entry.name)
        for entry in entries
        if entry.suffix in SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    )
    return Search(folder, found)


def named(word: str | Path) -> Path | None:
    """The pipeline file a PIPELINE argument names: itself, or itself with `.yaml` (then
    `.yml`) added when it was left off; None when no such file exists."""
    path = Path(word)
    if path.is_file():
        return path
    if path.suffix in SUFFIXES or str(word).endswith("/"):
        return None
    for suffix in SUFFIXES:
        with_suffix = path.with_name(path.name + suffix)
        if with_suffix.is_file():
            return with_suffix
    return None


def pipeline(word: str | Path | None) -> Path:
    """The pipeline of a command's optional PIPELINE argument: the file it names (a missing
    one is reported when it is read), else the one found in the current folder."""
    if word is None:
        return search().pipeline()
    return named(word) or Path(word)


def pipeline_if_any(word: str | Path | None) -> Path | None:
    """Like `pipeline`, but None when the folder holds no pipeline (several is still an
    error): for the commands that work without one."""
    if word is not None or search().found:
        return pipeline(word)
    return None


def pipeline_and_targets(words: tuple[str, ...]) -> tuple[Path, tuple[str, ...]]:
    """`[PIPELINE] [TARGET...]`: the first word is the pipeline when it names one (see
    `_names_pipeline`); otherwise the pipeline is the one found and every word is a target."""
    found = search()
    default = found.found[0] if len(found.found) == 1 else None
    if words:
        first = _names_pipeline(words[0], default)
        if first is not None:
            return first, words[1:]
    return found.pipeline(), words


_TOP_KEY = re.compile(rb"^steps[ \t]*:", re.M)
_FLOW_KEY = re.compile(rb"""[{,]\s*["']?steps["']?\s*:""")


def _names_pipeline(word: str, default: Path | None) -> Path | None:
    """The pipeline `word` names, or None when it is a target.

    Without a pipeline found in the folder: a YAML name (which need not exist) or any file.
    With one: that pipeline itself, or a file holding a top-level `steps:` key (block or flow
    style), so that a declared output (built or not) is a target. `.yaml` may be left off in
    both cases, but then the file must exist, so that a step's name stays a target.
    """
    path = named(word)
    if default is None:
        if path is None and word.endswith(SUFFIXES):
            return Path(word)
        return path
    if path is None:
        return None
    try:
        if path.samefile(default):
            return path
        with path.open("rb") as file:
            head = file.read(1 << 20)
    except OSError:
        return path  # reported as an unreadable pipeline
    flow = head.lstrip().startswith(b"{") and _FLOW_KEY.search(head) is not None
    return path if flow or _TOP_KEY.search(head) is not None else None
