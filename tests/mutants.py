"""Mutated pipelines for the fuzz soak: a corpus of valid pipelines and a seeded mutator.

The corpus is the repository's example pipelines and fixtures, plus small pipelines that use
every feature (foreach over a list, a mapping, a glob, files, rows, a matrix and another step's
output, `needs`, `if`, `default`, `template` and `template_file`, llm steps on the fake provider,
`stdout`, vars and values files, env, `include`, exclusions and optional inputs, `read()`,
`steps.X`).
A mutant is one of them with one to three mutations: structural ones on the parsed YAML (drop,
duplicate, retype or swap values, hostile strings, deep nesting, cycles in `needs`, escaping
paths, Jinja fragments) or textual ones on the bytes (flips, cuts, indentation, tabs, anchors,
duplicate keys, a BOM, invalid UTF-8). Everything depends only on the `random.Random` given.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
Doc = Any
Where = tuple[Any, ...]


@dataclass(frozen=True)
class Seed:
    """A valid pipeline and the files it reads, as relative paths to bytes."""

    name: str
    pipeline: str
    files: dict[str, bytes]


@dataclass(frozen=True)
class Mutant:
    """A seed whose pipeline file holds `text`, and what was done to it."""

    seed: Seed
    text: bytes
    mutations: tuple[str, ...]

    def write(self, root: Path) -> Path:
        """Lay the seed's files and the mutated pipeline out under `root`; the pipeline path."""
        for relative, data in self.seed.files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        pipeline = root / self.seed.pipeline
        pipeline.write_bytes(self.text)
        return pipeline


# --------------------------------------------------------------------------- the corpus

SMALL: dict[str, tuple[str, dict[str, str]]] = {
    "lists": (
        """\
        version: 1
        vars:
          langs: [en, fr]
          out: build
          greeting: "hello {{ env.WHO | default('you') }}"
        steps:
          hello:
            foreach: "{{ langs }}"
            run: echo {{ greeting | quote }} {{ item }} > {{ outputs[0] | quote }}
            output: "{{ out }}-{{ item }}.txt"
          join:
            inputs: ["{{ steps.hello.outputs }}"]
            template: "{% for p in inputs %}{{ read(p) }}{% endfor %}"
            output: joined.txt
          count:
            needs: [join]
            inputs: [joined.txt]
            run: wc -l < joined.txt
            env: { LANGS: "{{ langs | join(',') }}" }
            stdout: count.txt
        """,
        {},
    ),
    "mapping-glob": (
        """\
        version: 1
        steps:
          sizes:
            foreach: { small: 1, large: 100 }
            run: echo {{ key }}={{ item }}
            stdout: sizes/{{ key }}.txt
          rows:
            foreach: data/*.csv
            inputs: ["{{ item }}"]
            template_file: page.j2
            output: pages/{{ item | stem }}.md
          index:
            inputs: [sizes/, "{{ steps.rows.outputs }}"]
            run: ls sizes > index.txt
            output: index.txt
        """,
        {"data/a.csv": "x,1\n", "data/b.csv": "y,2\n", "page.j2": "{{ read(item) | upper }}\n"},
    ),
    "llm": (
        """\
        version: 1
        vars: { topic: trains }
        providers:
          offline: { kind: fake, echo: true }
        steps:
          notes:
            run: echo "notes on {{ topic }}"
            stdout: notes.txt
          ask:
            inputs: [notes.txt]
            system: Be brief.
            prompt: "Summarise {{ read('notes.txt') }} about {{ vars.topic }}"
            output: answer.md
          chat:
            inputs: ["{{ steps.ask.output }}"]
            messages:
              - { role: system, content: "Reply about {{ topic }}" }
              - { role: user, content: "{{ read(inputs[0]) }}" }
            output: chat.md
        """,
        {},
    ),
    "canned": (
        """\
        version: 1
        dotenv: [.env]
        providers:
          canned: { kind: fake, responses: replies }
        default_provider: canned
        steps:
          code:
            prompt: write code for {{ env.NAME }}
            extract: code
            output: gen/code.py
          files:
            prompt_file: ask.j2
            extract: files
            outputs: [gen/files/]
          check:
            kind: shell
            inputs: [gen/code.py]
            cwd: gen
            timeout_s: 10
            always_run: true
            cache: false
            run: cat code.py
        """,
        {
            ".env": "NAME=demo\n",
            "ask.j2": "Write the files of {{ env.NAME }}.\n",
            "replies/code.md": "Here:\n\n```python\nprint('hi')\n```\n",
            "replies/files.md": "```text a.txt\nA\n```\n\n```text sub/b.txt\nB\n```\n",
        },
    ),
    "data": (
        """\
        version: 1
        include: [parts/extra.yaml]
        vars:
          - params.yaml
          - {label: "n={{ train.n }}"}
        env: {LEVEL: "{{ train.n }}"}
        steps:
          fit:
            if: "{{ train.n > 0 }}"
            inputs: [params.yaml, "data/*.txt", "!data/skip.txt", {path: extra.txt, optional: true}]
            run: echo "$LEVEL {{ label }}" > fit.txt
            output: fit.txt
          case:
            foreach: {rows: data/cases.jsonl, key: id}
            template: "{{ item.q }}"
            output: "cases/{{ key }}.txt"
          grid:
            foreach:
              matrix: {size: [1, 2], lang: [en, fr]}
              exclude: [{size: 2, lang: fr}]
              include: [{size: 3, lang: de}]
            run: echo {{ item.size }} {{ item.lang }}
            stdout: "grid/{{ item.size }}-{{ item.lang }}.txt"
          each:
            foreach: {files: ["data/*.txt", "!data/skip.txt"]}
            inputs: ["{{ item }}"]
            run: cat {{ item | quote }}
            stdout: "each/{{ item | stem }}.txt"
          plan:
            run: >-
              echo '[{"m": "a"}, {"m": "b"}]' > plan.json
            output: plan.json
          module:
            foreach: {rows: "{{ steps.plan.output }}", key: m}
            run: echo {{ item.m }}
            stdout: "modules/{{ key }}.txt"
          report:
            default: false
            needs: [module]
            inputs: [modules/]
            run: ls modules
            stdout: report.txt
        """,
        {
            "params.yaml": "train:\n  n: 3\n",
            "data/a.txt": "a\n",
            "data/skip.txt": "s\n",
            "data/cases.jsonl": '{"id": "x", "q": "one"}\n{"id": "y", "q": "two"}\n',
            "parts/extra.yaml": "vars:\n  extra: 1\nsteps:\n  side:\n    run: echo {{ extra }}\n"
            "    stdout: side.txt\n",
        },
    ),
}

CHEAPER = {"python -m ": "echo python -m "}
"""Commands of the repository's pipelines that would start Python (pytest on the generated
app) are only echoed: the fuzz tests orch, not the commands."""


def _repo_seed(name: str, pipeline: str, folders: list[str], files: list[str]) -> Seed:
    """A pipeline of the repository with the files under `folders` and the `files` it reads."""
    paths = [ROOT / f for f in files]
    paths += [p for folder in folders for p in sorted((ROOT / folder).rglob("*")) if p.is_file()]
    found = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in paths}
    text = found[pipeline].decode()
    for old, new in CHEAPER.items():
        text = text.replace(old, new)
    found[pipeline] = text.encode()
    return Seed(name, pipeline, found)


def corpus() -> list[Seed]:
    """Every seed: the repository's pipelines and fixtures, then the small ones above."""
    import textwrap

    seeds = [
        _repo_seed(
            "notes_app",
            "pipelines/notes_app.yaml",
            ["pipelines/notes_app"],
            ["pipelines/notes_app.yaml", "specs/notes_app.md"],
        ),
        _repo_seed("full", "tests/fixtures/full/pipeline.yaml", ["tests/fixtures/full"], []),
    ]
    for name, (text, files) in SMALL.items():
        found = {path: data.encode() for path, data in files.items()}
        seeds.append(
            Seed(name, "orch.yaml", {**found, "orch.yaml": textwrap.dedent(text).encode()})
        )
    return seeds


# --------------------------------------------------------------------------- values

LONG = "x" * 300
JINJA = [
    "{{",
    "}}",
    "{% if %}",
    "{% for x in %}",
    "{{ nope }}",
    "{{ x | no_such_filter }}",
    "{{ 1 | no_such_test is nothing }}",
    "{{ read('../outside.txt') }}",
    "{{ read('nope.txt') }}",
    "{{ read(item) }}",
    "{{ read() }}",
    "{{ range(10**9) | list | length }}",
    "{{ range(100000) | join(',') }}",
    "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "{{ 'x' * 10**10 }}",
    "{{ 9 ** 99999 }}",
    "{{ 1 / 0 }}",
    "{{ none.attr }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ steps.nope.output }}",
    "{{ steps }}",
    "{{ env }}",
    "{{ vars }}",
    "{{ inputs }}",
    "{{ outputs[5] }}",
    "{{ item }}",
    "{{ key }}",
    "{% include 'orch.yaml' %}",
    "{% extends 'nope.j2' %}",
    "{% import 'x' as y %}",
    "{% raw %}",
    "{# open comment",
    "{{ '{{' }}",
    "{{ '\\ud800' }}",
    "{{ lipsum() }}",
    "{{ [1, 2] | random }}",
    "{{ {'a': 1} }}",
    "{{ [[1], {'b': 2}] }}",
    "{{ 1.5 }}",
    "{{ true }}",
    "{{ '' }}",
    "{{ '/abs' }}",
    "{{ '../up' }}",
    "{{ steps.hello.outputs | first }}",
    "{% set x = 1 %}{{ x }}",
    "{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
]
STRINGS = [
    "",
    " ",
    "a",
    "x.txt",
    "out/",
    "../up.txt",
    "a/../../up.txt",
    ".",
    "./",
    "*",
    "**/*",
    "*.txt",
    "[",
    "?",
    "~/home.txt",
    "C:\\win.txt",
    "\\\\server\\share",
    "\x00",
    "a\x00b",
    "\x07\x1b[31m\r\t\x7f",
    "\ud7ff\ue000\ufeff\u202e",
    "名前/ファイル.txt",
    "💥" * 70,
    "\n\n",
    LONG,
    LONG + "{{ item }}",
    "d/" * 150 + "f.txt",
    "shell",
    "llm",
    "template",
    "fake",
    "openai",
    "offline",
    "json",
    "files",
    "code",
    "system",
    "user",
    "1",
    "true",
    "null",
    *JINJA,
]
NAMES = ["a", "x", "hello", "a@b", "a/b", "", "-", "😀", "x" * 300, "steps", "item", "read", "env"]
KEYS = [
    "version", "name", "description", "workdir", "vars", "dotenv", "providers",
    "default_provider", "steps", "kind", "run", "prompt", "prompt_file", "messages", "system",
    "template", "template_file", "inputs", "outputs", "output", "needs", "foreach", "env", "cwd",
    "stdout", "extract", "schema", "provider", "model", "options", "timeout_s", "always_run",
    "cache", "responses", "echo", "role", "content", "max_retries", "price", "input",
]  # fmt: skip


def _scalar(rng: random.Random, outside: str) -> Any:
    """A hostile scalar: a string of the pool, an absolute path into `outside`, or a number."""
    choice = rng.random()
    if choice < 0.12:
        return rng.choice([0, -1, 1, 2, 10**30, 1.5, -0.0, float("inf"), True, False, None])
    if choice < 0.2:
        return f"{outside}/{rng.choice(['abs.txt', 'dir/', '*.txt'])}"
    if choice < 0.25:
        return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(1, 40)))
    return rng.choice(STRINGS)


def _value(rng: random.Random, outside: str, depth: int = 0) -> Any:
    """A scalar, or now and then a small list or mapping of them."""
    choice = rng.random()
    if depth > 2 or choice < 0.7:
        return _scalar(rng, outside)
    if choice < 0.85:
        return [_value(rng, outside, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): _value(rng, outside, depth + 1) for _ in range(rng.randint(0, 3))}


# --------------------------------------------------------------------------- structural


def _places(doc: Doc, where: Where = ()) -> list[Where]:
    """Every position in the document (the root is `()`)."""
    found = [where]
    children = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for key, child in children:
        found += _places(child, (*where, key))
    return found


def _get(doc: Doc, where: Where) -> Any:
    for key in where:
        doc = doc[key]
    return doc


def _set(doc: Doc, where: Where, value: Any) -> Doc:
    """The document with `value` at `where` (the root itself when `where` is empty)."""
    if not where:
        return value
    _get(doc, where[:-1])[where[-1]] = value
    return doc


def _strings(doc: Doc) -> list[Where]:
    return [w for w in _places(doc) if isinstance(_get(doc, w), str)]


def _step_names(doc: Doc) -> list[str]:
    steps = doc.get("steps") if isinstance(doc, dict) else None
    return list(steps) if isinstance(steps, dict) else []


Structural = Callable[[Doc, random.Random, str], tuple[Doc, str]]


def drop(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    where = rng.choice(_places(doc)[1:] or [()])
    if where:
        del _get(doc, where[:-1])[where[-1]]
    return doc, f"drop {where}"


def duplicate(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    """Copy a value into a new key of its mapping (a new step, say) or at the end of its list."""
    where = rng.choice(_places(doc)[1:] or [()])
    if not where:
        return doc, "duplicate nothing"
    parent, value = _get(doc, where[:-1]), copy.deepcopy(_get(doc, where))
    if isinstance(parent, list):
        parent.append(value)
    else:
        parent[rng.choice([*NAMES, *KEYS, f"{where[-1]}2"])] = value
    return doc, f"duplicate {where}"


def retype(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    where = rng.choice(_places(doc))
    value = _get(doc, where)
    new = rng.choice(
        [None, True, 0, 7, 1.5, [], {}, [value], {"x": value}, str(value), _value(rng, outside)]
    )
    return _set(doc, where, new), f"retype {where} to {type(new).__name__}"


def swap(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    places = _places(doc)[1:]
    first, second = rng.choice(places or [()]), rng.choice(places or [()])
    if first[: len(second)] == second or second[: len(first)] == first:
        return doc, "swap nothing"
    one, other = copy.deepcopy(_get(doc, first)), copy.deepcopy(_get(doc, second))
    return _set(_set(doc, first, other), second, one), f"swap {first} and {second}"


def hostile(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    """A hostile value in place of a string, or anywhere."""
    where = rng.choice(_strings(doc) or _places(doc))
    return _set(doc, where, _value(rng, outside)), f"hostile value at {where}"


def inject(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    """A Jinja fragment or a pool string spliced into a string."""
    strings = _strings(doc)
    if not strings:
        return doc, "inject nowhere"
    where = rng.choice(strings)
    text: str = _get(doc, where)
    cut = rng.randint(0, len(text))
    fragment = rng.choice(JINJA if rng.random() < 0.7 else STRINGS)
    return _set(doc, where, text[:cut] + fragment + text[cut:]), f"inject {fragment!r} at {where}"


def add_key(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    mappings = [w for w in _places(doc) if isinstance(_get(doc, w), dict)]
    if not mappings:
        return doc, "add nowhere"
    where, key = rng.choice(mappings), rng.choice(KEYS)
    _get(doc, where)[key] = _value(rng, outside)
    return doc, f"add {key!r} at {where}"


def nest(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    where = rng.choice(_places(doc))
    value, depth = _get(doc, where), rng.choice([5, 40, 120])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return _set(doc, where, value), f"nest {where} {depth} deep"


def rename_step(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    names = _step_names(doc)
    if not names:
        return doc, "rename nothing"
    old, new = rng.choice(names), rng.choice(NAMES)
    doc["steps"] = {new if name == old else name: step for name, step in doc["steps"].items()}
    return doc, f"rename step {old!r} to {new!r}"


def needs_cycle(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    """A step that needs itself, or a ring of steps that need each other."""
    names = _step_names(doc)
    ring = rng.sample(names, rng.randint(1, min(3, len(names)))) if names else []
    for name, needed in zip(ring, ring[1:] + ring[:1], strict=True):
        if isinstance(doc["steps"][name], dict):
            doc["steps"][name]["needs"] = [needed]
    return doc, f"needs cycle {ring}"


def long_template(doc: Doc, rng: random.Random, outside: str) -> tuple[Doc, str]:
    """A one-line inline template (or run, prompt) longer than 255 bytes."""
    names = [n for n in _step_names(doc) if isinstance(doc["steps"][n], dict)]
    if not names:
        return doc, "long template nowhere"
    name = rng.choice(names)
    field = next((f for f in ("template", "run", "prompt") if f in doc["steps"][name]), "template")
    doc["steps"][name][field] = rng.choice(["page.md ", "t/", "{{ item }} "]) + LONG
    return doc, f"long one-line {field} in {name!r}"


STRUCTURAL: list[Structural] = [
    drop, duplicate, retype, swap, hostile, inject, inject, add_key, nest, rename_step,
    needs_cycle, long_template,
]  # fmt: skip


# --------------------------------------------------------------------------- textual

Textual = Callable[[bytes, random.Random], tuple[bytes, str]]


def _line_bounds(text: bytes, rng: random.Random) -> tuple[int, int]:
    """Start and end (newline excluded) of a random line."""
    starts = [0, *(i + 1 for i, b in enumerate(text) if b == 0x0A and i + 1 < len(text))]
    start = rng.choice(starts)
    end = text.find(b"\n", start)
    return start, len(text) if end < 0 else end


def flip(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(text))
    return text[:at] + bytes([text[at] ^ (1 << rng.randrange(8))]) + text[at + 1 :], f"flip {at}"


def cut(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(text))
    return text[:at], f"cut at {at}"


def indent(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    start, _ = _line_bounds(text, rng)
    if rng.random() < 0.5:
        return text[:start] + b" " * rng.randint(1, 3) + text[start:], f"indent {start}"
    stripped = text[start:].lstrip(b" ")
    return text[:start] + stripped, f"dedent {start}"


def tab(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    start, _ = _line_bounds(text, rng)
    return text[:start] + b"\t" + text[start:].lstrip(b" "), f"tab {start}"


def duplicate_line(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    start, end = _line_bounds(text, rng)
    line = text[start:end]
    return text[:end] + b"\n" + line + text[end:], f"duplicate line {line[:40]!r}"


def anchors(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    """An anchor on one value and an alias (or a merge, or a self-reference) elsewhere."""
    start, end = _line_bounds(text, rng)
    line = text[start:end]
    if b": " not in line:
        return text, "anchor nowhere"
    head, _, tail = line.partition(b": ")
    anchored = head + b": &a " + tail
    other_start, other_end = _line_bounds(text, rng)
    other = text[other_start:other_end]
    if b": " in other and other_start != start:
        use = rng.choice([b"*a", b"[*a, *a]", b"&b [*b]"])
        other = other.partition(b": ")[0] + b": " + use
    else:
        other_start = other_end = end
    pieces = sorted([(start, end, anchored), (other_start, other_end, other)])
    (s1, e1, t1), (s2, e2, t2) = pieces
    if s2 < e1:
        return text[:start] + anchored + text[end:], "anchor"
    return text[:s1] + t1 + text[e1:s2] + t2 + text[e2:], "anchor and alias"


SPLICES = [
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\r\n", b"\x85",
    b"\n---\n", b"\n...\n", b"%YAML 1.1\n", b"!!python/object/apply:os.system ['true'] ",
    b"!!binary ", b"!!set ", b"!!timestamp ", b"!custom ", b"<<: {a: 1}\n", b"? [a, b]\n: c\n",
    b'"\\ud800"', b"{", b"]", b"'", b'"', b"|", b">-\n", b"#", b"&", b"*", b"@", b"`", b"%",
]  # fmt: skip


def splice(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A BOM, invalid UTF-8, a control character, a document marker, a tag... somewhere."""
    piece = rng.choice(SPLICES)
    at = 0 if rng.random() < 0.2 else rng.randint(0, len(text))
    return text[:at] + piece + text[at:], f"splice {piece!r} at {at}"


def crlf(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    return text.replace(b"\n", b"\r\n"), "CRLF"


TEXTUAL: list[Textual] = [flip, cut, indent, tab, duplicate_line, anchors, splice, splice, crlf]


# --------------------------------------------------------------------------- mutants


@functools.cache
def _parsed(text: bytes) -> Doc:
    return YAML(typ="safe", pure=True).load(text)


def dump(doc: Doc) -> bytes:
    """Block-style YAML with JSON scalars (valid YAML, and much faster than ruamel's dumper)."""
    return "".join(f"{line}\n" for line in _block(doc, 0)).encode("utf-8", "surrogatepass")


def _block(value: Doc, depth: int) -> list[str]:
    pad = "  " * depth
    if isinstance(value, dict) and value:
        items = [(f"{pad}{_flow(key)}:", item) for key, item in value.items()]
    elif isinstance(value, list) and value:
        items = [(f"{pad}-", item) for item in value]
    else:
        return [pad + _flow(value)]
    lines = []
    for head, item in items:
        if isinstance(item, dict | list) and item:
            lines += [head, *_block(item, depth + 1)]
        else:
            lines.append(f"{head} {_flow(item)}")
    return lines


def _flow(value: Doc) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value, ensure_ascii=False)


def mutate(seed: Seed, rng: random.Random, outside: str) -> Mutant:
    """One to three mutations of `seed`: structural ones first, then textual ones."""
    count = rng.choice([1, 1, 1, 2, 2, 3])
    structural = sum(rng.random() < 0.7 for _ in range(count))
    text, done = seed.files[seed.pipeline], []
    if structural:
        doc = copy.deepcopy(_parsed(text))
        for _ in range(structural):
            doc, what = rng.choice(STRUCTURAL)(doc, rng, outside)
            done.append(what)
        text = dump(doc)
    for _ in range(count - structural):
        text, what = rng.choice(TEXTUAL)(text or b"\n", rng)
        done.append(what)
    return Mutant(seed, text, tuple(done))
