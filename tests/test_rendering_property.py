"""Inline templates that transform `read()` results render as plain Jinja would, and equal keys
mean equal text.

Generated templates use filters (`upper`, `lower`, `trim`, `replace`, `length`, `int`, `join`),
tests (`in`, `startswith`), `for` loops over `.splitlines()` and `.split(',')`, `if`/`else`,
`{% set %}` and vars referenced only inside a loop or a branch. Each is rendered by an orch
template step (`template: "<generated>"`, `inputs: [...]`, `output: out.txt`) and compared with
`jinja2.Environment(keep_trailing_newline=True)` given the real file reader and the vars.
`ORCH_RENDER_EXAMPLES=2000` runs more examples than the default 200.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.engine.build import Request, build
from orchestrator.store.lockfile import read_lock

pytestmark = pytest.mark.slow

INPUTS = ("in/a.txt", "in/b.txt")
LINES = ("x", "y", "Apple", " pad ", "1", "2,3", "a,b", "zz", "")
CONTENTS = st.lists(st.sampled_from(LINES), max_size=4).flatmap(
    lambda lines: st.sampled_from(["\n".join(lines), "\n".join(lines) + "\n"])
)
WORDS = st.sampled_from(["x", "Apple", "2", "a,b", " q "])
ITEMS = st.lists(st.sampled_from(["p", "q", "1"]), max_size=3)
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
"""Where workdirs go: a memory file system when there is one (orch syncs what it writes)."""

# ---------------------------------------------------------------------------- templates

READS = st.sampled_from([f"read('{path}')" for path in INPUTS])


def strings(scope: tuple[str, ...]) -> st.SearchStrategy[str]:
    """String-valued expressions over the inputs and the names in scope."""
    atoms = READS | st.sampled_from(["v", *scope])
    return st.one_of(
        atoms,
        st.tuples(atoms, st.sampled_from(["upper", "lower", "trim"])).map(" | ".join),
        atoms.map(lambda a: f"{a} | replace('x', 'X')"),
        atoms.map(lambda a: f"{a}.splitlines() | join('+')"),
        st.just("items | join(',')"),
    )


def numbers(scope: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Number-valued expressions."""
    return st.one_of(
        strings(scope).map(lambda s: f"({s}) | length"),
        READS.map(lambda r: f"{r}.splitlines() | length"),
        READS.map(lambda r: f"({r}.splitlines() | first | default('0')) | int"),
        st.just("n | int + 1"),
    )


def conditions(scope: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Tests that pick a branch."""
    needles = st.sampled_from(["'x'", "'Apple'", "'zz'", "','"])
    return st.one_of(
        st.tuples(needles, READS).map(lambda t: f"{t[0]} in {t[1]}"),
        st.tuples(needles, strings(scope)).map(lambda t: f"{t[0]} in {t[1]}"),
        strings(scope).map(lambda s: f"({s}).startswith('A')"),
        numbers(scope).map(lambda n: f"{n} > 2"),
        st.just("v == 'x'"),
    )


@st.composite
def blocks(draw: st.DrawFn, scope: tuple[str, ...] = (), depth: int = 0) -> str:
    """A template fragment; `w` and the loop variables are in scope only inside a loop or a
    branch, so `w` is a var that only a loop or branch references."""
    inner = (*scope, "w")
    kinds = ["text", "string", "number"] + (["for", "split", "if", "set"] if depth < 2 else [])
    kinds += ["w"] if "w" in scope else []
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return draw(st.sampled_from(["-", " ", "\n", "a:"]))
    if kind == "w":
        return "{{ w }}"
    if kind == "string":
        return "{{ " + draw(strings(scope)) + " }}"
    if kind == "number":
        return "{{ " + draw(numbers(scope)) + " }}"
    if kind == "for":
        body = draw(blocks((*inner, "line"), depth + 1))
        return f"{{% for line in {draw(READS)}.splitlines() %}}{body}\n{{% endfor %}}"
    if kind == "split":
        body = draw(blocks((*inner, "part"), depth + 1))
        return f"{{% for part in {draw(READS)}.split(',') %}}[{body}]{{% endfor %}}"
    if kind == "if":
        then, otherwise = draw(blocks(inner, depth + 1)), draw(blocks(inner, depth + 1))
        return f"{{% if {draw(conditions(scope))} %}}{then}{{% else %}}{otherwise}{{% endif %}}"
    value = draw(strings(scope))
    rest = draw(blocks((*scope, "s"), depth + 1))
    return f"{{% set s = {value} %}}{rest}"


TEMPLATES = st.lists(blocks(), min_size=1, max_size=4).map("".join)


@dataclass(frozen=True)
class State:
    """What the template sees: the vars and the contents of the inputs."""

    vars: dict[str, object]
    files: dict[str, str]


STATES = st.builds(
    State,
    st.fixed_dictionaries(
        {"v": WORDS, "w": WORDS, "n": st.sampled_from(["1", "7"]), "items": ITEMS}
    ),
    st.fixed_dictionaries({path: CONTENTS for path in INPUTS}),
)

CHANGES = st.one_of(
    st.tuples(st.just("vars"), st.sampled_from(["v", "w"]), WORDS),
    st.tuples(st.just("vars"), st.just("n"), st.sampled_from(["1", "7"])),
    st.tuples(st.just("vars"), st.just("items"), ITEMS),
    st.tuples(st.just("files"), st.sampled_from(INPUTS), CONTENTS),
)
"""One edit: (`vars` or `files`, a name, its new value)."""


@st.composite
def histories(draw: st.DrawFn) -> list[State]:
    """A state and two to four more, each one edit (a var or an input) away from the last."""
    states = [draw(STATES)]
    for field, name, value in draw(st.lists(CHANGES, min_size=1, max_size=4)):
        last = states[-1]
        changed = {**getattr(last, field), name: value}
        states.append(replace(last, **{field: changed}))
    return states


# ---------------------------------------------------------------------------- orch and jinja


@contextmanager
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="orch-render-", dir=SCRATCH))
    try:
        yield root
    finally:
        shutil.rmtree(root)


def write_state(root: Path, template: str, state: State) -> Path:
    """Write the inputs and a pipeline of one inline template step; the pipeline's path."""
    for path, text in state.files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    step = {"inputs": list(INPUTS), "template": template, "output": "out.txt"}
    pipeline = {"version": 1, "vars": state.vars, "steps": {"t": step}}
    file = root / "orch.yaml"
    file.write_text(json.dumps(pipeline) + "\n", encoding="utf-8")
    return file


def orch_render(root: Path, template: str, state: State) -> tuple[str, str]:
    """Build the step in `root` with this state: the rendered text and the step's lock key."""
    pipeline = write_state(root, template, state)
    report = build(Request(pipeline=pipeline, jobs=1))
    failure = report.manifest.steps["t"].failure
    assert report.status == "succeeded", f"the build failed: {failure}"
    return (root / "out.txt").read_text(encoding="utf-8"), read_lock(root / "orch.lock")["t"].key


def jinja_render(root: Path, template: str, state: State) -> str:
    """The template rendered by plain Jinja with the real file reader and the vars."""

    def read(path: str) -> str:
        return (root / path).read_text(encoding="utf-8")

    environment = jinja2.Environment(keep_trailing_newline=True)
    return environment.from_string(template).render(read=read, **state.vars)


COMMON = settings(
    max_examples=int(os.environ.get("ORCH_RENDER_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------- properties


@COMMON
@given(template=TEMPLATES, state=STATES)
def test_inline_templates_render_as_jinja_does(template: str, state: State) -> None:
    """An inline template step writes exactly what Jinja renders from the real contents."""
    with workdir() as root:
        text, _ = orch_render(root, template, state)
        assert text == jinja_render(root, template, state)


HIDDEN_VAR = "{% if 'zz' in read('in/a.txt') %}{{ w }}{% else %}-{% endif %}"
"""A var that only a branch taken on the real contents references."""
BEFORE = State({"v": "x", "w": "x", "n": "1", "items": []}, {"in/a.txt": "zz\n", "in/b.txt": ""})


@COMMON
@given(template=TEMPLATES, states=histories())
@example(template=HIDDEN_VAR, states=[BEFORE, State({**BEFORE.vars, "w": "Apple"}, BEFORE.files)])
def test_equal_keys_render_equal_text(template: str, states: list[State]) -> None:
    """Built in turn in one workdir, states whose lock keys are equal have equal correct text
    (so states whose text differs have different keys). The text is Jinja's, not what orch
    wrote: with equal keys orch restores the earlier output, so its own text would agree."""
    seen: dict[str, tuple[int, str]] = {}
    with workdir() as root:
        for number, state in enumerate(states):
            _, key = orch_render(root, template, state)
            expected = jinja_render(root, template, state)
            earlier, earlier_text = seen.setdefault(key, (number, expected))
            assert expected == earlier_text, (
                f"states {earlier} and {number} have the same key and render differently"
            )
