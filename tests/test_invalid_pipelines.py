"""`orch validate` / `orch graph` on invalid pipelines: exit 2, `file:line:` of the culprit,
a message a person can act on, no traceback, and nothing written to disk."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.commands import cli

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

PIPELINE = "pipeline.yaml"


# --------------------------------------------------------------------------- helpers


def _snapshot(root: Path) -> set[Path]:
    """Every path under `root`, hidden ones included, without following symlinks."""
    found: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            found.add((Path(dirpath) / name).relative_to(root))
    return found


def _line_of(text: str, marker: str) -> int:
    """The 1-based number of the only line of `text` that contains `marker`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(hits) == 1, f"marker {marker!r} must be on exactly one line, found {hits}"
    return hits[0]


def _write(folder: Path, text: str, name: str = PIPELINE) -> tuple[Path, str]:
    text = textwrap.dedent(text)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path, text


def _invoke(args: list[str], cwd: Path) -> Result:
    """Run the CLI with `cwd` as the current folder (so a stray `.orch/` would land there)."""
    runner = CliRunner()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, args, catch_exceptions=True)
    finally:
        os.chdir(old)


def _assert_refused(
    result: Result,
    pipeline: Path,
    line: int,
    fragments: tuple[str, ...],
    before: set[Path],
    root: Path,
    absent: tuple[str, ...] = (),
) -> None:
    detail = f"exit={result.exit_code}\nstdout={result.stdout!r}\nstderr={result.stderr!r}"
    # A crash inside orch is caught by CliRunner as result.exception: it must be a plain exit.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{detail}\nexception={result.exception!r}"
    )
    assert result.exit_code == 2, detail
    assert "Traceback" not in result.output, detail
    assert "Traceback" not in result.stderr, detail
    assert f"{pipeline}:{line}:" in result.stderr, f"expected '{pipeline}:{line}:'\n{detail}"
    for fragment in fragments:
        assert fragment in result.stderr, f"expected {fragment!r}\n{detail}"
    for fragment in absent:
        assert fragment not in result.stderr, f"unexpected {fragment!r}\n{detail}"
    assert f"{pipeline}: ok" not in result.stdout, detail
    after = _snapshot(root)
    assert after == before, f"files appeared: {sorted(map(str, after - before))}"
    assert not (root / ".orch").exists()


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    marker: str | None  # text on the line the message must point at; None: line 1
    fragments: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()  # extra files to create first (path, content)
    absent: tuple[str, ...] = ()  # text the message must not contain


def case(
    id: str,
    text: str,
    marker: str | None,
    *fragments: str,
    files: Iterable[tuple[str, str]] = (),
    absent: Iterable[str] = (),
) -> ParameterSet:
    """One row of the table."""
    return pytest.param(Case(id, text, marker, fragments, tuple(files), tuple(absent)), id=id)


# --------------------------------------------------------------------------- the table

CASES = [
    case(
        "yaml-syntax-error",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: a.txt
          b: x: y
        """,
        "b: x: y",
        "invalid YAML",
        "mapping values are not allowed",
    ),
    case(
        "yaml-duplicate-key",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: a.txt
            output: b.txt
        """,
        "output: b.txt",
        "invalid YAML",
        "duplicate key",
    ),
    case(
        "unknown-step-key-with-suggestion",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            ouputs: [a.txt]
        """,
        "ouputs:",
        "unknown key 'ouputs'",
        "step 'a'",
        "did you mean 'outputs'?",
    ),
    case(
        "unknown-top-level-key-with-suggestion",
        """\
        version: 1
        stpes:
          a:
            run: echo hi
        """,
        "stpes:",
        "unknown key 'stpes'",
        "did you mean 'steps'?",
    ),
    case(
        "wrong-type-timeout",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: a.txt
            timeout_s: soon
        """,
        "timeout_s: soon",
        "step 'a', field 'timeout_s'",
        "valid number",
    ),
    case(
        "wrong-type-run-list",
        """\
        version: 1
        steps:
          a:
            output: a.txt
            run: [1]
        """,
        "run: [1]",
        "step 'a', field 'run'",
        "valid string",
    ),
    case(
        "missing-version",
        """\
        steps:
          a:
            run: echo hi
            output: a.txt
        """,
        "steps:",
        "missing 'version'",
        "version: 1",
    ),
    case(
        "unsupported-version",
        """\
        # a comment first
        version: 2
        steps:
          a:
            run: echo hi
        """,
        "version: 2",
        "unsupported version 2",
        "version 1",
    ),
    case(
        "step-without-kind",
        """\
        version: 1
        steps:
          a:
            description: does nothing
            output: a.txt
        """,
        "  a:",
        "step 'a' has no kind",
        "'run'",
        "'prompt'",
    ),
    case(
        "step-without-kind-misspelt-prompt",
        """\
        version: 1
        providers:
          offline: { kind: fake }
        steps:
          ask:
            promt: Say hello.
            output: a.txt
        """,
        "  ask:",
        "step 'ask' has no kind",
        "did you mean 'prompt'?",
    ),
    case(
        "step-with-two-kinds",
        """\
        version: 1
        providers:
          offline: { kind: fake }
        steps:
          a:
            run: echo hi
            prompt: Say hello.
            output: a.txt
        """,
        "  a:",
        "step 'a' has several kinds",
        "'run' (shell)",
        "'prompt' (llm)",
    ),
    case(
        "unknown-explicit-kind",
        """\
        version: 1
        steps:
          a:
            kind: shel
            run: echo hi
        """,
        "kind: shel",
        "unknown kind 'shel'",
        "did you mean 'shell'?",
    ),
    case(
        "cycle",
        """\
        version: 1
        steps:
          a:
            inputs: [b.txt]
            run: cp b.txt a.txt
            output: a.txt
          b:
            inputs: [a.txt]
            run: cp a.txt b.txt
            output: b.txt
        """,
        "  a:",
        "dependency cycle: a -> b -> a",
    ),
    case(
        "cycle-printed-from-first-declared",
        """\
        version: 1
        steps:
          zeta:
            inputs: [alpha.txt]
            run: cp alpha.txt zeta.txt
            output: zeta.txt
          alpha:
            needs: [zeta]
            run: echo hi
            output: alpha.txt
        """,
        "  zeta:",
        "dependency cycle: zeta -> alpha -> zeta",
    ),
    case(
        "cycle-through-needs-three-steps",
        """\
        version: 1
        steps:
          one:
            needs: [three]
            run: echo 1
          two:
            needs: [one]
            run: echo 2
          three:
            needs: [two]
            run: echo 3
        """,
        "  one:",
        "dependency cycle: one -> two -> three -> one",
    ),
    case(
        "step-reads-its-own-output",
        """\
        version: 1
        steps:
          a:
            inputs: [a.txt]
            run: echo hi
            output: a.txt
        """,
        "inputs: [a.txt]",
        "reads its own output 'a.txt'",
        "a -> a",
        absent=("does not exist",),
    ),
    case(
        "needs-itself",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            needs: [a]
        """,
        "needs: [a]",
        "step 'a' needs itself",
    ),
    case(
        "duplicate-output",
        """\
        version: 1
        steps:
          a:
            run: echo a > same.txt
            output: same.txt
          b:
            run: echo b > same.txt
            outputs: [same.txt]
        """,
        "outputs: [same.txt]",
        "steps 'a' and 'b' both write 'same.txt'",
    ),
    case(
        "unknown-needs-with-suggestion",
        """\
        version: 1
        steps:
          build:
            run: echo build
          test:
            run: echo test
            needs: [biuld]
        """,
        "needs: [biuld]",
        "step 'test' needs unknown step 'biuld'",
        "did you mean 'build'?",
    ),
    case(
        "undefined-template-variable",
        """\
        version: 1
        vars:
          app: notes
        steps:
          a:
            run: echo {{ ap }}
            output: a.txt
        """,
        "run: echo",
        "step 'a'",
        "field 'run'",
        "undefined variable 'ap'",
    ),
    case(
        "undefined-variable-in-var",
        """\
        version: 1
        vars:
          app: notes
          out: build/{{ ap }}
        steps:
          a:
            run: echo hi
        """,
        "out: build",
        "var 'out'",
        "undefined variable 'ap'",
    ),
    case(
        "read-undeclared-path",
        """\
        version: 1
        steps:
          a:
            inputs: [in.txt]
            run: "echo {{ read('other.txt') | quote }}"
            output: a.txt
        """,
        "run:",
        "read('other.txt')",
        "not a declared input",
        "step 'a'",
        "field 'run'",
        files=[("in.txt", "x"), ("other.txt", "y")],
    ),
    case(
        "output-absolute",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: /tmp/orch-absolute.txt
        """,
        "output: /tmp",
        "absolute path '/tmp/orch-absolute.txt'",
        "relative to the workdir",
    ),
    case(
        "output-escapes-with-dotdot",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            outputs:
              - ok.txt
              - sub/../../escaped.txt
        """,
        "sub/../../escaped.txt",
        "escapes the workdir",
    ),
    case(
        "input-escapes-with-dotdot",
        """\
        version: 1
        steps:
          a:
            inputs: [../secret.txt]
            run: echo hi
        """,
        "inputs: [../secret.txt]",
        "escapes the workdir",
    ),
    case(
        "foreach-not-a-list",
        """\
        version: 1
        steps:
          a:
            foreach: 5
            run: echo {{ item }}
        """,
        "foreach: 5",
        "step 'a'",
        "foreach",
        "list, a mapping or a glob",
    ),
    case(
        "foreach-template-gives-number",
        """\
        version: 1
        vars:
          n: 5
        steps:
          a:
            foreach: "{{ n }}"
            run: echo {{ item }}
        """,
        "foreach:",
        "step 'a'",
        "foreach must be a list, a mapping or a glob",
    ),
    case(
        "foreach-rows-missing-file",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.jsonl}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "step 'a', field 'foreach'",
        "no such rows file 'data/cases.jsonl'",
    ),
    case(
        "foreach-rows-invalid-json-line",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.jsonl}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "data/cases.jsonl:2:8: invalid JSON: Expecting value",
        files=[("data/cases.jsonl", '{"id": 1}\n{"id": }\n')],
    ),
    case(
        "foreach-rows-invalid-json",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.json}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "data/cases.json:3:1: invalid JSON",
        files=[("data/cases.json", '[\n  {"id": 1},\n]\n')],
    ),
    case(
        "foreach-rows-invalid-yaml",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.yaml}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "data/cases.yaml:3:1: invalid YAML: expected ',' or ']'",
        files=[("data/cases.yaml", "- id: 1\n- id: [2\n")],
    ),
    case(
        "foreach-rows-csv-row-too-long",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.csv}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "data/cases.csv:3:1: this row has 3 fields, the header 2",
        files=[("data/cases.csv", "id,text\n1,a\n2,b,c\n")],
    ),
    case(
        "foreach-rows-not-a-list",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.json}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "a JSON rows file holds a list of rows (mappings), not a mapping",
        files=[("data/cases.json", '{"rows": [{"id": 1}]}')],
    ),
    case(
        "foreach-rows-row-not-a-mapping",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.jsonl}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "data/cases.jsonl:2:1: row 1 is a list, not a mapping",
        files=[("data/cases.jsonl", '{"id": 1}\n[2]\n')],
    ),
    case(
        "foreach-rows-duplicate-key",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.jsonl, key: id}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "rows 0 and 2 of 'data/cases.jsonl' have the same key 'x' (line 3)",
        files=[("data/cases.jsonl", '{"id": "x"}\n{"id": "y"}\n{"id": "x"}\n')],
    ),
    case(
        "foreach-rows-key-missing",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.csv, key: name}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "row 0 of 'data/cases.csv' has no field 'name'",
        files=[("data/cases.csv", "id,text\n1,a\n")],
    ),
    case(
        "foreach-rows-unknown-format",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: data/cases.txt}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "cannot tell the format of 'data/cases.txt'",
        files=[("data/cases.txt", "id\n")],
    ),
    case(
        "foreach-rows-of-an-unknown-step",
        """\
        version: 1
        steps:
          make:
            run: echo '{}' > cases.jsonl
            output: cases.jsonl
          a:
            foreach: {rows: "{{ steps.mkae.output }}"}
            run: echo {{ item.id }}
        """,
        "foreach: {rows",
        "step 'a', field 'foreach.rows'",
        "unknown step 'mkae' in steps.mkae; did you mean 'make'?",
    ),
    case(
        "foreach-rows-not-a-string",
        """\
        version: 1
        steps:
          a:
            foreach: {rows: [a.csv]}
            run: echo {{ item.id }}
        """,
        "foreach:",
        "step 'a', field 'foreach': rows: input should be a valid string",
    ),
    case(
        "foreach-matrix-axis-not-a-list",
        """\
        version: 1
        vars:
          n: 5
        steps:
          a:
            foreach: {matrix: {size: "{{ n }}"}}
            run: echo {{ item.size }}
        """,
        "foreach:",
        "field 'foreach.matrix.size': an axis is a list of values, not int",
    ),
    case(
        "foreach-matrix-empty",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {}}
            run: echo {{ item }}
        """,
        "foreach:",
        "step 'a', field 'foreach': the matrix has no axes",
    ),
    case(
        "foreach-matrix-exclude-unknown-axis",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {os: [linux, mac]}, exclude: [{o: mac}]}
            run: echo {{ item.os }}
        """,
        "foreach:",
        "exclude[0] names unknown axis 'o'; the axes are os",
    ),
    case(
        "foreach-matrix-include-unknown-axis",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {os: [linux]}, include: [{os: bsd, arch: arm}]}
            run: echo {{ item.os }}
        """,
        "foreach:",
        "include[0] names unknown axis 'arch'",
    ),
    case(
        "foreach-matrix-include-partial",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {os: [linux], arch: [x86]}, include: [{os: bsd}]}
            run: echo {{ item.os }}
        """,
        "foreach:",
        "include[0] gives no value for axis 'arch'",
    ),
    case(
        "foreach-matrix-duplicate-ids",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {os: [linux, mac]}, include: [{os: mac}]}
            run: echo {{ item.os }}
        """,
        "foreach:",
        "step 'a': foreach gives 'a@mac' twice",
    ),
    case(
        "foreach-matrix-values-of-unequal-types",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {n: [1, "1"], os: [linux]}}
            run: echo {{ item.n }}
        """,
        "foreach:",
        "step 'a': foreach gives 'a@1,linux' twice",
    ),
    case(
        "foreach-matrix-mapping-and-plain-value",
        """\
        version: 1
        steps:
          a:
            foreach: {matrix: {cfg: [1, {lr: 1}]}}
            run: echo {{ item.cfg }}
        """,
        "foreach:",
        "step 'a': foreach gives 'a@1' twice",
    ),
    case(
        "foreach-files-empty",
        """\
        version: 1
        steps:
          a:
            foreach: {files: []}
            run: echo {{ item }}
        """,
        "foreach:",
        "step 'a', field 'foreach': files: list should have at least 1 item",
    ),
    case(
        "foreach-files-empty-exclusion",
        """\
        version: 1
        steps:
          a:
            foreach: {files: ["*.md", "!"]}
            run: echo {{ item }}
        """,
        "foreach:",
        "step 'a', field 'foreach': files: entry 1 is empty ('!')",
    ),
    case(
        "foreach-files-exclusion-escapes",
        """\
        version: 1
        steps:
          a:
            foreach: {files: ["*.md", "!../*.md"]}
            run: echo {{ item }}
        """,
        "foreach:",
        "step 'a', field 'foreach.files': path '../*.md' escapes the workdir",
    ),
    case(
        "foreach-files-not-text",
        """\
        version: 1
        steps:
          a:
            foreach: {files: [{path: a.md}]}
            run: echo {{ item }}
        """,
        "foreach:",
        "step 'a', field 'foreach': files.0: input should be a valid string",
    ),
    case(
        "empty-file",
        "",
        None,
        "empty pipeline file",
    ),
    case(
        "only-comments",
        """\
        # nothing here yet
        """,
        None,
        "empty pipeline file",
    ),
    case(
        "document-is-a-list",
        """\
        - version: 1
        - steps: {}
        """,
        "- version: 1",
        "a pipeline is a mapping",
        "not a list",
    ),
    case(
        "document-is-a-string",
        """\
        hello
        """,
        "hello",
        "a pipeline is a mapping",
        "not a string",
    ),
    case(
        "input-neither-exists-nor-produced",
        """\
        version: 1
        steps:
          a:
            inputs:
              - present.txt
              - missing.txt
            run: cat present.txt missing.txt
        """,
        "- missing.txt",
        "step 'a': input 'missing.txt' does not exist and no step produces it",
        files=[("present.txt", "here")],
    ),
    case(
        "input-glob-matches-nothing",
        """\
        version: 1
        steps:
          a:
            inputs: ["specs/*.md"]
            run: echo hi
        """,
        "inputs:",
        "input 'specs/*.md' matches no file and no step produces it",
    ),
    case(
        "unknown-provider-kind",
        """\
        version: 1
        providers:
          main:
            kind: opnai
            model: gpt-4o-mini
        steps:
          a:
            prompt: Say hi.
            output: a.txt
        """,
        "kind: opnai",
        "provider 'main'",
        "unknown kind 'opnai'",
        "did you mean 'openai'?",
    ),
    case(
        "provider-without-kind",
        """\
        version: 1
        providers:
          main:
            model: gpt-4o-mini
        steps:
          a:
            prompt: Say hi.
            output: a.txt
        """,
        "  main:",
        "provider 'main' needs a 'kind'",
    ),
    case(
        "default-provider-missing-with-suggestion",
        """\
        version: 1
        providers:
          offline: { kind: fake }
          openai: { kind: openai, model: gpt-4o-mini }
        default_provider: ofline
        steps:
          a:
            prompt: Say hi.
            output: a.txt
        """,
        "default_provider: ofline",
        "default_provider 'ofline' is not among the providers",
        "did you mean 'offline'?",
    ),
    case(
        "step-provider-unknown-with-suggestion",
        """\
        version: 1
        providers:
          offline: { kind: fake }
        steps:
          a:
            prompt: Say hi.
            provider: oflline
            output: a.txt
        """,
        "provider: oflline",
        "unknown provider 'oflline'",
        "did you mean 'offline'?",
    ),
    case(
        "step-name-with-space",
        """\
        version: 1
        steps:
          my step:
            run: echo hi
        """,
        "my step:",
        "invalid name 'my step'",
        "letters, digits",
        absent=("should match pattern",),
    ),
    case(
        "provider-name-with-space",
        """\
        version: 1
        providers:
          my provider:
            kind: fake
        steps:
          a:
            run: echo hi
        """,
        "my provider:",
        "invalid name 'my provider'",
        absent=("should match pattern",),
    ),
    case(
        "var-name-with-space",
        """\
        version: 1
        vars:
          my var: 1
        steps:
          a:
            run: echo hi
        """,
        "my var:",
        "invalid name 'my var'",
    ),
    case(
        "step-is-a-string",
        """\
        version: 1
        steps:
          a: echo hi
        """,
        "a: echo hi",
        "step 'a'",
        "'run'",
        absent=("openai", "anthropic", "ollama", "fake"),
    ),
    case(
        "reserved-var-name",
        """\
        version: 1
        vars:
          env: prod
        steps:
          a:
            run: echo hi
        """,
        "env: prod",
        "var 'env' uses a reserved name",
    ),
    case(
        "output-and-outputs-together",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: a.txt
            outputs: [b.txt]
        """,
        "  a:",
        "either 'output' or 'outputs'",
    ),
    case(
        "outputs-refer-to-each-other",
        """\
        version: 1
        steps:
          a:
            run: echo a
            output: "{{ steps.b.output }}.a"
          b:
            run: echo b
            output: "{{ steps.a.output }}.b"
        """,
        "steps.a.output",
        "steps refer to each other's outputs: a -> b -> a",
    ),
    case(
        "foreach-members-write-the-same-output",
        """\
        version: 1
        steps:
          a:
            foreach: [x, y]
            run: echo {{ item }}
            output: same.txt
        """,
        "output: same.txt",
        "steps 'a@x' and 'a@y' both write 'same.txt'",
    ),
    case(
        "output-empty",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: ""
        """,
        "output:",
        "step 'a': empty path",
    ),
    case(
        "stdout-escapes-with-dotdot",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            stdout: ../log.txt
        """,
        "stdout:",
        "escapes the workdir",
    ),
    case(
        "read-in-vars",
        """\
        version: 1
        vars:
          spec: "{{ read('spec.md') }}"
        steps:
          a:
            run: echo hi
        """,
        "spec:",
        "var 'spec'",
        "read() cannot be used in vars",
        files=[("spec.md", "x")],
    ),
    case(
        "unknown-step-in-template-reference",
        """\
        version: 1
        steps:
          architect:
            run: echo design > design.md
            output: design.md
          builder:
            inputs: ["{{ steps.architcet.output }}"]
            run: echo build
        """,
        "steps.architcet",
        "unknown step 'architcet'",
        "did you mean 'architect'?",
    ),
    case(
        "template-syntax-error",
        """\
        version: 1
        steps:
          a:
            run: echo {{ oops
        """,
        "run: echo",
        "step 'a', field 'run'",
        "template syntax error",
    ),
    case(
        "output-is-a-glob",
        """\
        version: 1
        steps:
          a:
            run: echo hi
            output: "out/*.txt"
        """,
        "output:",
        "is a glob",
        "declare a folder",
    ),
    case(
        "workdir-not-a-folder",
        """\
        version: 1
        workdir: nowhere
        steps:
          a:
            run: echo hi
        """,
        "workdir: nowhere",
        "workdir 'nowhere' is not a folder",
    ),
    case(
        "no-steps",
        """\
        version: 1
        steps: {}
        """,
        "steps: {}",
        "the pipeline has no steps",
    ),
    case(
        "read-of-a-folder",
        """\
        version: 1
        steps:
          a:
            inputs: [src/]
            run: cat {{ read("src/") }}
        """,
        "run: cat",
        "read() takes one file, not a folder or glob",
        files=(("src/x.txt", "x"),),
    ),
    case(
        "llm-without-prompt",
        """\
        version: 1
        providers: { p: { kind: fake } }
        steps:
          a:
            kind: llm
            output: a.md
        """,
        "  a:",
        "give exactly one of prompt, prompt_file or messages",
        absent=("not \n",),
    ),
    case(
        "llm-schema-that-is-not-a-json-schema",
        """\
        version: 1
        providers: { p: { kind: fake, echo: true } }
        steps:
          a:
            prompt: give json
            extract: json
            schema: { type: objekt }
            output: a.json
        """,
        "schema:",
        "'schema' is not a valid JSON Schema",
        "objekt",
    ),
    case(
        "llm-without-a-model",
        """\
        version: 1
        providers: { p: { kind: openai } }
        steps:
          a:
            prompt: hi
            output: a.md
        """,
        "  a:",
        "step 'a' has no model",
        "provider 'p'",
    ),
    case(
        "deep-nesting",
        "version: 1\nsteps:\n  a: { run: x }\nvars:\n  v: " + "[" * 80 + "]" * 80 + "\n",
        "v: [[",
        "nests deeper than 64 levels",
    ),
    case(
        "lone-surrogate",
        'version: 1\nsteps:\n  a:\n    run: echo hi\n    output: "a\\ud800.txt"\n',
        "output:",
        "'\\ud800' is a lone surrogate, not a character",
    ),
    case(
        "unknown-filter-in-content",
        """\
        version: 1
        steps:
          a:
            run: echo {{ 'x' | qoute }}
        """,
        "run:",
        "step 'a', field 'run': template syntax error: No filter named 'qoute'",
    ),
    case(
        "nul-in-a-path",
        'version: 1\nsteps:\n  a:\n    run: echo hi\n    output: "a\\u0000b.txt"\n',
        "output:",
        "path 'a\\x00b.txt' holds a NUL character",
    ),
    case(
        "control-character",
        'version: 1\nsteps:\n  a:\n    run: "echo \x7f"\n',
        "run:",
        "invalid YAML: unacceptable character #x007f",
    ),
]


# --------------------------------------------------------------------------- tests


def assert_command_refuses(tmp_path: Path, bad: Case, command: str) -> None:
    """`orch COMMAND` on the case's pipeline (and files) exits 2 at the marked line, writing
    nothing."""
    for rel, content in bad.files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    pipeline, text = _write(tmp_path, bad.text)
    line = 1 if bad.marker is None else _line_of(text, bad.marker)
    before = _snapshot(tmp_path)

    result = _invoke([command, str(pipeline)], tmp_path)

    _assert_refused(result, pipeline, line, bad.fragments, before, tmp_path, bad.absent)


@pytest.mark.parametrize("bad", CASES)
def test_validate_refuses(tmp_path: Path, bad: Case) -> None:
    assert_command_refuses(tmp_path, bad, "validate")


@pytest.mark.parametrize(
    "bad",
    [c for c in CASES if c.id in {"cycle", "unknown-step-key-with-suggestion"}],
)
def test_graph_refuses(tmp_path: Path, bad: Case) -> None:
    pipeline, text = _write(tmp_path, bad.text)
    assert bad.marker is not None
    line = _line_of(text, bad.marker)
    before = _snapshot(tmp_path)

    result = _invoke(["graph", str(pipeline)], tmp_path)

    _assert_refused(result, pipeline, line, bad.fragments, before, tmp_path)
    assert result.stdout == ""


def test_validate_reports_every_pipeline_and_fails_if_one_is_bad(tmp_path: Path) -> None:
    good, _ = _write(tmp_path, "version: 1\nsteps:\n  a:\n    run: echo hi\n", "good.yaml")
    bad, text = _write(tmp_path, "version: 1\nsteps:\n  a:\n    rn: echo hi\n", "bad.yaml")
    before = _snapshot(tmp_path)

    result = _invoke(["validate", str(good), str(bad)], tmp_path)

    _assert_refused(result, bad, _line_of(text, "  a:"), ("has no kind",), before, tmp_path)
    assert f"{good}: ok (1 step)" in result.stdout


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    pipeline, text = _write(
        tmp_path,
        """\
        version: 1
        steps:
          a:
            run: echo hi
            ouput: a.txt
          b:
            run: echo hi
            timeout_s: soon
        """,
    )
    before = _snapshot(tmp_path)

    result = _invoke(["validate", str(pipeline)], tmp_path)

    _assert_refused(
        result, pipeline, _line_of(text, "ouput:"), ("did you mean 'output'?",), before, tmp_path
    )
    assert f"{pipeline}:{_line_of(text, 'timeout_s: soon')}:" in result.stderr


def test_message_shows_source_line_and_caret(tmp_path: Path) -> None:
    pipeline, _ = _write(
        tmp_path,
        """\
        version: 1
        steps:
          a:
            run: echo hi
            ouputs: [a.txt]
        """,
    )
    result = _invoke(["validate", str(pipeline)], tmp_path)
    assert result.exit_code == 2
    assert f"{pipeline}:5:5: unknown key 'ouputs'" in result.stderr
    assert "    ouputs: [a.txt]\n      ^" in result.stderr


def test_missing_pipeline_file(tmp_path: Path) -> None:
    before = _snapshot(tmp_path)
    missing = tmp_path / "nope.yaml"
    result = _invoke(["validate", str(missing)], tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{missing}: no such pipeline file" in result.stderr
    assert _snapshot(tmp_path) == before


def test_output_through_symlink_outside_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    outside = tmp_path / "elsewhere"
    workdir.mkdir()
    outside.mkdir()
    (workdir / "out").symlink_to(outside, target_is_directory=True)
    pipeline, text = _write(
        workdir,
        """\
        version: 1
        steps:
          a:
            run: echo hi > out/result.txt
            output: out/result.txt
        """,
    )
    before_work = _snapshot(workdir)
    before_outside = _snapshot(outside)

    result = _invoke(["validate", str(pipeline)], workdir)

    _assert_refused(
        result,
        pipeline,
        _line_of(text, "output: out/result.txt"),
        ("step 'a'", "out/result.txt", "outside the workdir"),
        before_work,
        workdir,
    )
    assert _snapshot(outside) == before_outside


def test_valid_pipeline_is_ok(tmp_path: Path) -> None:
    (tmp_path / "spec.md").write_text("# spec\n", encoding="utf-8")
    pipeline, _ = _write(
        tmp_path,
        """\
        version: 1
        name: demo
        vars:
          out: build
        providers:
          offline: { kind: fake, echo: true }
        steps:
          design:
            inputs: [spec.md]
            prompt: "Design this: {{ read('spec.md') }}"
            output: "{{ out }}/design.md"
          code:
            foreach: [x, y]
            inputs: ["{{ steps.design.output }}"]
            run: cp {{ inputs[0] | quote }} {{ outputs[0] | quote }}
            output: "{{ out }}/{{ item }}.txt"
          check:
            needs: [code]
            inputs: ["{{ out }}/*.txt"]
            run: cat {{ out }}/*.txt
        """,
    )
    before = _snapshot(tmp_path)

    result = _invoke(["validate", str(pipeline)], tmp_path)

    assert result.exit_code == 0, f"{result.stdout!r} {result.stderr!r} {result.exception!r}"
    assert f"{pipeline}: ok (4 steps)" in result.stdout
    assert result.stderr == ""
    assert _snapshot(tmp_path) == before

    graph = _invoke(["graph", str(pipeline)], tmp_path)
    assert graph.exit_code == 0, graph.output
    assert "check" in graph.stdout and "code@x" in graph.stdout
    assert _snapshot(tmp_path) == before


ALIAS_BOMB = (
    "version: 1\n"
    + "".join(
        f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9) if n else ', '.join(['lol'] * 9)}]\n"
        for n in range(8)
    )
    + "steps:\n  a: { run: x }\n"
)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (ALIAS_BOMB, "YAML aliases expand to more than"),
        # libyaml parses it, then the depth check refuses it; the pure parser cannot parse it
        ("version: 1\nv: " + "[" * 5000 + "]" * 5000 + "\n", "the document nests"),
    ],
    ids=["alias-bomb", "deeper-than-the-parser"],
)
def test_hostile_documents_are_refused_quickly(tmp_path: Path, text: str, fragment: str) -> None:
    pipeline, _ = _write(tmp_path, text)
    before = _snapshot(tmp_path)
    result = _invoke(["validate", str(pipeline)], tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{pipeline}") and fragment in result.stderr
    assert "Traceback" not in result.output
    assert _snapshot(tmp_path) == before


def test_invalid_utf8_is_refused_at_its_line_and_column(tmp_path: Path) -> None:
    pipeline = tmp_path / PIPELINE
    pipeline.write_bytes(b"version: 1\nsteps:\n  a:\n    run: echo \xc3( hi\n")
    before = _snapshot(tmp_path)
    result = _invoke(["validate", str(pipeline)], tmp_path)
    assert result.exit_code == 2, result.output
    assert f"{pipeline}:4:15: the pipeline is not UTF-8 text: byte 0xc3" in result.stderr
    assert "Traceback" not in result.output
    assert _snapshot(tmp_path) == before
