"""What `orch watch` watches: the files a build of the selected steps reads and no build writes.

That is the pipeline file, the files it was compiled from (includes, values and dotenv files,
template and prompt files read at plan time, `foreach` data files and globs), and the selected
steps' source inputs (`Plan.sources`: files, folders and globs no step writes). A path under
`.orch/`, the lock file, its temp files and every declared output are never part of it, so the
files a build writes cannot start another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from orchestrator.core.paths import covers, is_dir, is_glob, is_within, unescape
from orchestrator.engine.build import Request, open_plan
from orchestrator.store.journal import journal_path
from orchestrator.store.layout import StateFolder
from orchestrator.store.lockfile import lock_path

_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
"""The temp files orch's atomic writes rename into place (`.NAME.XXXXXXXX.tmp`)."""


@dataclass(frozen=True)
class WatchSet:
    """Absolute files, and workdir-relative declared inputs, to watch; outputs to ignore."""

    workdir: Path
    files: frozenset[Path]
    sources: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    written: frozenset[Path] = frozenset()
    """Files and folders a build writes outside the declared outputs (`.orch/`, the lock)."""

    @classmethod
    def of_pipeline(cls, pipeline: Path) -> WatchSet:
        """The pipeline file alone: what to watch while it cannot be loaded."""
        file = pipeline.resolve()
        return cls(file.parent, frozenset({file}))

    def with_pipeline(self, pipeline: Path) -> WatchSet:
        """This set, with the pipeline file in it (it may be new, after a rename)."""
        return replace(self, files=self.files | {pipeline.resolve()})

    def roots(self) -> list[Path]:
        """The fewest existing folders that hold everything watched, to watch recursively."""
        anchors = {_existing(file.parent) for file in self.files}
        anchors.update(_existing(self.workdir / _anchor(source)) for source in self.sources)
        ordered = sorted(anchors, key=lambda path: len(path.parts))
        roots: list[Path] = []
        for anchor in ordered:
            if not any(anchor.is_relative_to(root) for root in roots):
                roots.append(anchor)
        return sorted(roots)

    def covers(self, path: str) -> bool:
        """Whether a change to the absolute `path` should start a build."""
        changed = Path(path)
        if any(changed == written or changed.is_relative_to(written) for written in self.written):
            return False
        if _TEMP_NAME.fullmatch(changed.name):
            return False
        if not changed.is_relative_to(self.workdir):
            return changed in self.files
        relative = PurePosixPath(changed.relative_to(self.workdir)).as_posix()
        if any(is_within(relative, output) for output in self.outputs):
            return False
        return changed in self.files or any(covers(s, relative) for s in self.sources)


def _anchor(source: str) -> str:
    """The folder a declared input lives in: a folder itself, a glob's fixed leading folders,
    a file's folder."""
    if is_glob(source):
        fixed = []
        for part in source.split("/")[:-1]:
            if is_glob(part):
                break
            fixed.append(unescape(part))
        return "/".join(fixed) or "."
    if is_dir(source):
        return unescape(source)
    return os.path.dirname(unescape(source)) or "."


def _existing(folder: Path) -> Path:
    """`folder`, or its closest existing parent (a folder may appear later)."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder


def watch_set(request: Request) -> WatchSet:
    """What to watch for a build of `request`, from the plan the build saved (else from the
    pipeline loaded in full); a `PipelineError` or `UsageError` when it is not valid."""
    from orchestrator.plan import saved

    plan, pipeline = open_plan(request)
    read = saved.saved_reads(request.pipeline, request.overrides, request.provider)
    if read is None:
        read = saved.reads(pipeline())
    workdir = Path(plan.workdir).resolve()
    selected = plan.select(request.targets)
    inputs = {path for step in selected for path in plan.steps[step].inputs}
    files = {(workdir / path).resolve() for path in read["files"]}
    files.add(request.pipeline.resolve())
    sources = tuple(path for path in plan.sources if path in inputs)
    outputs = tuple(path for step in plan.steps.values() for path in step.outputs)
    lock = lock_path(Path(plan.pipeline)).resolve()
    written = frozenset({StateFolder(workdir).root.resolve(), lock, journal_path(lock)})
    return WatchSet(workdir, frozenset(files), (*sources, *read["globs"]), outputs, written)
