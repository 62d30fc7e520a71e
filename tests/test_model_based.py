"""Model-based test of orch's core promise.

After any sequence of edits, a build's outputs equal those of a build from scratch, and a step
whose key did not change and whose outputs are intact never runs.

A hypothesis state machine keeps a model of a small pipeline (at most six steps: shell steps
writing a file or a folder, inline template steps, `foreach` groups and steps that `need`
another) and of its source files. Its rules edit the sources (change, touch, revert), the outputs
(delete, corrupt, hand-edit, a stray file in a folder) and the pipeline (a command, a template, a
var, a step added or removed), and build in-process: at the start, when the `build` rule fires,
and at the end if edits are left. After every build it checks:

(a) the build succeeded;
(b) every declared output (a file, or the set of files in an output folder and their bytes) is
    what a build of the same pipeline and sources in a new empty folder gives;
(c) no step ran whose lock key did not change and whose outputs were intact before the build;
(d) a second build right after runs and restores nothing;
(e) a step whose key an earlier build of this workdir recorded is restored, not run (the cache
    holds its outputs).

`ORCH_MODEL_EXAMPLES=2000` runs more examples than the default 200.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from orchestrator.engine.build import Report, Request, build
from orchestrator.store.lockfile import LockEntry, read_lock

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("ORCH_MODEL_EXAMPLES", "200"))
MAX_STEPS = 6
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
"""Where workdirs go: a memory file system when there is one, as orch syncs every file it
writes and most of a build's time would go to waiting for the disk."""

# ---------------------------------------------------------------------------- the model

SOURCES = ("src/a.txt", "src/b.txt", "src/c.txt")
LINES = ("x", "y", "apple", "Banana", "x,y", "3")
CONTENTS = st.lists(st.sampled_from(LINES), max_size=3).map(lambda lines: "\n".join(lines) + "\n")
WORDS = st.sampled_from(["hi", "yo", "x"])
"""Values of the scalar vars `v` (used in commands) and `w` (used only inside loops/branches)."""
ITEMS = st.lists(st.sampled_from(["p", "q", "r"]), min_size=1, max_size=2, unique=True)
"""Values of the list var `items`, which `foreach` steps and some folder commands go over."""


def jinja(expression: str) -> str:
    """`{{ expression }}`."""
    return "{{ " + expression + " }}"


@dataclass(frozen=True, repr=False)
class Ref:
    """Something a step can read: a source file, or a step's file, folder or foreach group."""

    entry: str
    """How it is written in `inputs`."""
    words: str
    """Shell words naming its files."""
    file: str | None
    """One file of it that a template may `read()`, if there is one."""
    step: str | None = None
    """The step that writes it (None for a source file)."""

    def __repr__(self) -> str:
        return repr(self.entry)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


SNIPPETS = (
    "{{ read('PATH') | upper }}",
    "{% for line in read('PATH').splitlines() %}{{ loop.index }}:{{ line }} {{ w }}\n{% endfor %}",
    "{% if 'apple' in read('PATH') %}apple {{ w }}{% else %}none{% endif %}\n",
    "{% set n = read('PATH').splitlines() | length %}{{ n }} lines\n",
    "{{ read('PATH') }}",
    "{% for part in read('PATH').split(',') %}[{{ part | trim }}]{% endfor %}\n",
    "{{ v }}\n",
)
"""Pieces of inline templates; PATH is one of the step's inputs."""

FILE_COMMANDS = (
    "cat WORDS > OUT",
    "cat WORDS | tr a-z A-Z > OUT",
    "printf '%s\\n' '{{ v }}' > OUT && cat WORDS >> OUT",
    "printf '%s\\n' \"$V\" | cat - WORDS > OUT",
    "printf '%s' {{ read('FILE') | upper | quote }} > OUT",
)
"""Commands of shell steps writing one file; FILE is an input a template may read."""

FOLDER_COMMANDS = (
    "cat WORDS > OUT/all.txt && tr a-z A-Z < OUT/all.txt > OUT/up.txt",
    "cat WORDS > OUT/all.txt && (cd OUT && split -l 1 all.txt part_)",
    "cat WORDS > OUT/all.txt && for i in {{ items | join(' ') }}; do echo $i > OUT/$i.txt; done",
)
"""Commands of shell steps writing several files into the folder OUT (always `all.txt`)."""

FOREACH_COMMANDS = (
    "printf '%s\\n' '{{ item }}' | cat - WORDS > OUT",
    "cat WORDS | tr a-z A-Z > OUT && echo '{{ item }}' >> OUT",
)

NEEDS_COMMANDS = ("cat FILE > OUT", "tr a-z A-Z < FILE > OUT")
"""Commands of a step that reads the output of a step it `needs` without declaring it."""


@dataclass(frozen=True, repr=False)
class StepModel:
    """One step of the pipeline, as the model knows it."""

    name: str
    shape: str
    """`file`, `folder`, `foreach` (shell), `foreach-template`, `template` or `needs`."""
    refs: tuple[Ref, ...]
    """What it reads (for `needs`: the one file of the needed step)."""
    command: int = 0
    """Index into the command table of its shape."""
    snippets: tuple[tuple[int, int], ...] = ()
    """Template pieces: (index into SNIPPETS, index of the readable ref)."""

    def __repr__(self) -> str:
        """The step as the pipeline has it (counterexamples print it)."""
        return json.dumps({self.name: self.to_yaml()})

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    @property
    def is_template(self) -> bool:
        return self.shape in ("template", "foreach-template")

    @property
    def is_foreach(self) -> bool:
        return self.shape.startswith("foreach")

    def outputs(self, items: list[str]) -> list[str]:
        """The declared outputs, with the foreach items expanded."""
        if self.is_foreach:
            return [f"out/{self.name}-{item}.txt" for item in items]
        if self.shape == "folder":
            return [f"out/{self.name}/"]
        return [f"out/{self.name}.txt"]

    def ref(self) -> Ref:
        """How a later step reads this step's outputs."""
        if self.is_foreach:
            group = f"steps.{self.name}.outputs"
            return Ref(jinja(group), jinja(f"{group} | join(' ')"), None, self.name)
        if self.shape == "folder":
            folder = f"out/{self.name}"
            return Ref(f"{folder}/", f"{folder}/*", f"{folder}/all.txt", self.name)
        path = f"out/{self.name}.txt"
        return Ref(path, path, path, self.name)

    def to_yaml(self) -> dict[str, object]:
        """The step as written in the pipeline."""
        out = f"out/{self.name}-{jinja('item')}.txt" if self.is_foreach else self.outputs([])[0]
        words = " ".join(ref.words for ref in self.refs)
        readable = [ref.file for ref in self.refs if ref.file is not None]
        step: dict[str, object] = {}
        if self.is_foreach:
            step["foreach"] = "{{ items }}"
        if self.shape == "needs":
            step["needs"] = [self.refs[0].step]
        else:
            step["inputs"] = [ref.entry for ref in self.refs]
        if self.is_template:
            prefix = "{{ item }}: " if self.is_foreach else ""
            pieces = [SNIPPETS[s].replace("PATH", readable[r]) for s, r in self.snippets]
            step["template"] = prefix + "".join(pieces)
            step["output"] = out
            return step
        table = {
            "file": FILE_COMMANDS,
            "folder": FOLDER_COMMANDS,
            "foreach": FOREACH_COMMANDS,
            "needs": NEEDS_COMMANDS,
        }[self.shape]
        command = table[self.command]
        if self.shape == "folder":
            command = "mkdir -p OUT && " + command
            out = out.rstrip("/")
        else:
            command = "mkdir -p out && " + command
        first = self.refs[0].file if self.shape == "needs" else (readable or [""])[0]
        assert first is not None, "a needs step reads a ref that has a file"
        command = command.replace("WORDS", words).replace("FILE", first).replace("OUT", out)
        step["run"] = command
        if "$V" in command:
            step["env"] = {"V": "{{ v }}"}
        if self.shape == "folder":
            step["outputs"] = [f"{out}/"]
        else:
            step["output"] = out
        return step


def commands_for(shape: str, refs: tuple[Ref, ...]) -> list[int]:
    """The command indexes a shell step of this shape can use with these refs."""
    if shape == "file":
        can_read = any(ref.file for ref in refs)
        return [i for i in range(len(FILE_COMMANDS)) if can_read or "FILE" not in FILE_COMMANDS[i]]
    table = {"folder": FOLDER_COMMANDS, "foreach": FOREACH_COMMANDS, "needs": NEEDS_COMMANDS}
    return list(range(len(table[shape])))


@st.composite
def snippet_lists(draw: st.DrawFn, readable: int) -> tuple[tuple[int, int], ...]:
    """One to three template pieces over `readable` readable refs."""
    pieces = st.tuples(st.integers(0, len(SNIPPETS) - 1), st.integers(0, readable - 1))
    return tuple(draw(st.lists(pieces, min_size=1, max_size=3)))


@st.composite
def new_steps(draw: st.DrawFn, name: str, available: list[Ref]) -> StepModel:
    """A step named `name` reading some of the `available` refs."""
    readable_refs = [ref for ref in available if ref.file is not None]
    needable = [ref for ref in readable_refs if ref.step is not None]
    shapes = ["file", "folder", "foreach", "template", "foreach-template"]
    if needable:
        shapes.append("needs")
    shape = draw(st.sampled_from(shapes))
    if shape == "needs":
        return StepModel(name, shape, (draw(st.sampled_from(needable)),), draw(st.integers(0, 1)))
    pool = readable_refs if shape in ("template", "foreach-template") else available
    refs = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)))
    if shape in ("template", "foreach-template"):
        readable = sum(ref.file is not None for ref in refs)
        return StepModel(name, shape, refs, snippets=draw(snippet_lists(readable)))
    return StepModel(name, shape, refs, draw(st.sampled_from(commands_for(shape, refs))))


@dataclass
class World:
    """The model's view of a workdir: sources, vars and steps; it writes them to disk."""

    sources: dict[str, str]
    v: str
    w: str
    items: list[str]
    steps: dict[str, StepModel] = field(default_factory=dict)
    counter: int = 0

    def refs(self) -> list[Ref]:
        """Everything a new step may read."""
        return [Ref(p, p, p) for p in SOURCES] + [s.ref() for s in self.steps.values()]

    def next_name(self) -> str:
        self.counter += 1
        return f"s{self.counter}"

    def pipeline_text(self) -> str:
        document = {
            "version": 1,
            "vars": {"v": self.v, "w": self.w, "items": self.items},
            "steps": {name: step.to_yaml() for name, step in self.steps.items()},
        }
        return json.dumps(document, separators=(",", ":")) + "\n"

    def outputs(self) -> list[str]:
        """Every declared output path of the pipeline."""
        return [path for step in self.steps.values() for path in step.outputs(self.items)]

    def used(self, name: str) -> bool:
        """Whether another step reads the step's outputs."""
        return any(ref.step == name for step in self.steps.values() for ref in step.refs)

    def write(self, root: Path) -> Path:
        """Write the pipeline and the sources under root (sources only when they changed)."""
        for path, text in self.sources.items():
            write_if_changed(root / path, text.encode())
        pipeline = root / "orch.yaml"
        write_if_changed(pipeline, self.pipeline_text().encode())
        return pipeline


# ---------------------------------------------------------------------------- files and builds


def write_if_changed(path: Path, data: bytes) -> None:
    """Write a file unless it already holds these bytes (so its mtime stays)."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def declared_files(root: Path, outputs: list[str]) -> dict[str, bytes | None]:
    """Each declared output file's bytes, and each file in a declared output folder
    (None marks a missing output)."""
    found: dict[str, bytes | None] = {}
    for output in outputs:
        path = root / output
        if output.endswith("/"):
            if not path.is_dir():
                found[output] = None
                continue
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                found[file.relative_to(root).as_posix()] = file.read_bytes()
        else:
            found[output] = path.read_bytes() if path.is_file() else None
    return found


def run_build(pipeline: Path) -> Report:
    return build(Request(pipeline=pipeline, jobs=2))


def statuses(report: Report) -> dict[str, str]:
    return {step: record.status for step, record in report.manifest.steps.items()}


def failures(report: Report) -> dict[str, object]:
    return {s: r.failure for s, r in report.manifest.steps.items() if r.failure is not None}


def fresh_build(
    pipeline_text: str, sources: dict[str, str], outputs: list[str]
) -> dict[str, bytes | None]:
    """The declared outputs of a build of the pipeline and sources in a new empty folder."""
    root = Path(tempfile.mkdtemp(prefix="orch-fresh-", dir=SCRATCH))
    try:
        for path, text in sources.items():
            write_if_changed(root / path, text.encode())
        (root / "orch.yaml").write_text(pipeline_text, encoding="utf-8")
        report = run_build(root / "orch.yaml")
        assert report.status == "succeeded", f"a fresh build failed: {failures(report)}"
        return declared_files(root, outputs)
    finally:
        shutil.rmtree(root)


class FreshBuilds:
    """Fresh builds, memoised by the pipeline text and the sources, made in a worker process
    so that they overlap the incremental build they are compared with."""

    def __init__(self) -> None:
        self.memo: dict[str, dict[str, bytes | None]] = {}
        self.pool: ProcessPoolExecutor | None = None

    def start(self, world: World) -> Callable[[], dict[str, bytes | None]]:
        """Start the fresh build of the world as it is now; a function waiting for its outputs."""
        text, sources = world.pipeline_text(), dict(world.sources)
        identity = hashlib.sha256(json.dumps([text, sorted(sources.items())]).encode()).hexdigest()
        if identity in self.memo:
            return lambda: self.memo[identity]
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        future = self.pool.submit(fresh_build, text, sources, world.outputs())

        def outputs() -> dict[str, bytes | None]:
            self.memo[identity] = future.result()
            return self.memo[identity]

        return outputs


FRESH = FreshBuilds()


def differences(
    actual: dict[str, bytes | None], expected: dict[str, bytes | None]
) -> dict[str, tuple[bytes | None, bytes | None]]:
    """The paths whose bytes differ: (here, in the fresh build); None where a file is missing."""
    paths = sorted(actual.keys() | expected.keys())
    return {p: (actual.get(p), expected.get(p)) for p in paths if actual.get(p) != expected.get(p)}


def intact(root: Path, entry: LockEntry, folders: list[str]) -> bool:
    """Whether the outputs a lock entry records are on disk as recorded, with no other files in
    the step's output folders."""
    for path, recorded in entry.outputs.items():
        file = root / path
        if not file.is_file() or digest(file) != recorded:
            return False
    for folder in folders:
        present = {
            p.relative_to(root).as_posix() for p in (root / folder).rglob("*") if p.is_file()
        }
        if present - set(entry.outputs):
            return False
    return True


# ---------------------------------------------------------------------------- the state machine


class IncrementalBuilds(RuleBasedStateMachine):
    """Random pipelines, random edits, a build after each edit, and the promise checked."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="orch-model-", dir=SCRATCH))
        self.world: World
        self.history: dict[str, list[str]] = {}
        """Every content each source has had, for reverts."""
        self.seen_keys: set[str] = set()
        """Every key a build of this workdir recorded."""
        self.unbuilt = False
        """Whether edits were made since the last build."""
        self.failed = False
        """Whether a check failed (the teardown then builds no more)."""

    def teardown(self) -> None:
        """Check the last edits too (unless a check already failed), then remove the workdir."""
        try:
            if self.unbuilt and not self.failed:
                self.build_and_check()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ setup

    @initialize(
        data=st.data(),
        contents=st.tuples(*[CONTENTS] * len(SOURCES)),
        v=WORDS,
        w=WORDS,
        items=ITEMS,
        count=st.integers(1, 3),
    )
    def start(
        self,
        data: st.DataObject,
        contents: tuple[str, ...],
        v: str,
        w: str,
        items: list[str],
        count: int,
    ) -> None:
        """A pipeline of one to three steps over three source files, built once."""
        self.world = World(dict(zip(SOURCES, contents, strict=True)), v, w, items)
        self.history = {path: [text] for path, text in self.world.sources.items()}
        for _ in range(count):
            self._add(data)
        self.build_and_check()

    def _add(self, data: st.DataObject) -> None:
        name = self.world.next_name()
        self.world.steps[name] = data.draw(new_steps(name, self.world.refs()), label=name)

    def _edited(self) -> None:
        """Put the model's pipeline and sources on disk; the next build checks the edit."""
        self.world.write(self.root)
        self.unbuilt = True

    # ------------------------------------------------------------------ edits

    @rule(data=st.data(), edit=st.sampled_from(["change", "touch", "revert"]), content=CONTENTS)
    def edit_source(self, data: st.DataObject, edit: str, content: str) -> None:
        """Give a source new content, a new mtime and the same bytes, or a content it had."""
        source = data.draw(st.sampled_from(SOURCES), label="source")
        if edit == "change":
            self.world.sources[source] = content
            self.history[source].append(content)
        elif edit == "revert":
            earlier = data.draw(st.sampled_from(self.history[source]), label="earlier content")
            self.world.sources[source] = earlier
        else:
            path = self.root / source
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        self._edited()

    @rule(data=st.data(), edit=st.sampled_from(["delete", "corrupt", "hand-edit", "stray"]))
    def edit_output(self, data: st.DataObject, edit: str) -> None:
        """Delete, corrupt or hand-edit an output file (one in an output folder, or the whole
        folder), or drop a stray file into an output folder."""
        output = data.draw(st.sampled_from(self.world.outputs()), label="output")
        path: Path | None = self.root / output
        if output.endswith("/") and edit == "stray":
            (self.root / output).mkdir(parents=True, exist_ok=True)
            (self.root / output / "stray.txt").write_text("not made by the step\n")
        elif output.endswith("/"):
            folder = self.root / output
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            if edit == "delete" and data.draw(st.booleans(), label="whole folder"):
                shutil.rmtree(folder, ignore_errors=True)
                files = []
            path = data.draw(st.sampled_from(files), label="file") if files else None
        if path is not None and path.is_file():
            if edit == "delete":
                path.unlink()
            elif edit == "corrupt":
                path.write_bytes(b"\xff\x00corrupt")
            elif edit in ("hand-edit", "stray"):
                with path.open("ab") as file:
                    file.write(b"edited by hand\n")
        self._edited()

    @rule(
        data=st.data(),
        edit=st.sampled_from(["command", "template", "v", "w", "items"]),
        value=WORDS,
        items=ITEMS,
    )
    def edit_pipeline(self, data: st.DataObject, edit: str, value: str, items: list[str]) -> None:
        """Give a shell step another command or a template step another template, or change a
        var: `v` (used in commands and templates), `w` (used only inside template loops and
        branches) or the list `items` (which foreach steps go over)."""
        steps = self.world.steps.values()
        if edit == "command" and (shell := [s for s in steps if not s.is_template]):
            step = data.draw(st.sampled_from(shell), label="step")
            choices = [i for i in commands_for(step.shape, step.refs) if i != step.command]
            if choices:
                command = data.draw(st.sampled_from(choices), label="command")
                self.world.steps[step.name] = replace(step, command=command)
        elif edit == "template" and (templates := [s for s in steps if s.is_template]):
            step = data.draw(st.sampled_from(templates), label="step")
            readable = sum(ref.file is not None for ref in step.refs)
            snippets = data.draw(snippet_lists(readable), label="snippets")
            self.world.steps[step.name] = replace(step, snippets=snippets)
        elif edit in ("v", "w"):
            setattr(self.world, edit, value)
        elif edit == "items":
            self.world.items = items
        self._edited()

    @precondition(lambda self: len(self.world.steps) < MAX_STEPS)
    @rule(data=st.data())
    def add_step(self, data: st.DataObject) -> None:
        """Add a step reading sources or the outputs of steps already there."""
        self._add(data)
        self._edited()

    @precondition(lambda self: len(self.world.steps) > 1)
    @rule(data=st.data())
    def remove_step(self, data: st.DataObject) -> None:
        """Remove a step no other step reads."""
        removable = [name for name in self.world.steps if not self.world.used(name)]
        del self.world.steps[data.draw(st.sampled_from(removable), label="removed")]
        self._edited()

    @rule()
    def build(self) -> None:
        """Build, and check the promise."""
        self.build_and_check()

    # ------------------------------------------------------------------ the checks

    def build_and_check(self) -> None:
        """Build the workdir and check the promise (a) to (e)."""
        self.failed, self.unbuilt = True, False
        pipeline = self.world.write(self.root)
        before = read_lock(self.root / "orch.lock")
        folders = {
            name: [o for o in step.outputs(self.world.items) if o.endswith("/")]
            for name, step in self.world.steps.items()
        }
        was_intact = {
            name: intact(self.root, entry, folders.get(name, [])) for name, entry in before.items()
        }

        fresh = FRESH.start(self.world)
        report = run_build(pipeline)
        status = statuses(report)
        assert report.status == "succeeded", f"(a) the build failed: {failures(report)}"

        expected = fresh()
        actual = declared_files(self.root, self.world.outputs())
        assert actual == expected, (
            f"(b) outputs differ from a fresh build: {differences(actual, expected)}\n"
            f"statuses: {status}\npipeline: {self.world.pipeline_text()}"
        )

        after = read_lock(self.root / "orch.lock")
        needless = [
            name
            for name, state in status.items()
            if state == "ran"
            and name in before
            and before[name].key == after[name].key
            and was_intact[name]
        ]
        assert not needless, f"(c) ran with an unchanged key and intact outputs: {needless}"

        not_restored = [
            name
            for name, state in status.items()
            if state == "ran" and after[name].key in self.seen_keys
        ]
        assert not not_restored, f"(e) ran although the cache holds its key: {not_restored}"
        self.seen_keys.update(entry.key for entry in after.values())

        again = statuses(run_build(pipeline))
        busy = {name: state for name, state in again.items() if state != "up-to-date"}
        assert not busy, f"(d) a second build did work: {busy}"
        self.failed = False


IncrementalBuilds.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestIncrementalBuilds = IncrementalBuilds.TestCase
