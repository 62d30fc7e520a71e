"""Invalid glob exclusions, optional inputs and pipeline `env`: exit 2 at `file:line:col`,
a message a person can act on, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_invalid_pipelines import Case, assert_command_refuses
from .test_invalid_pipelines import case as row

CASES = [
    row(
        "exclusion-without-a-glob",
        """\
        version: 1
        steps:
          a:
            inputs: [a.txt, "!b.txt"]
            run: cat a.txt
        """,
        "inputs:",
        "step 'a': the exclusion '!b.txt' has no glob or folder input to exclude from",
        "write './!name'",
        files=[("a.txt", "a")],
    ),
    row(
        "empty-exclusion",
        """\
        version: 1
        steps:
          a:
            inputs:
              - "*.txt"
              - "!"
            run: cat a.txt
        """,
        '- "!"',
        "step 'a': empty path",
        files=[("a.txt", "a")],
    ),
    row(
        "optional-exclusion",
        """\
        version: 1
        steps:
          a:
            inputs:
              - "*.txt"
              - {path: "!b.txt", optional: true}
            run: cat a.txt
        """,
        "optional: true",
        "step 'a': an exclusion ('!b.txt') cannot be optional",
        files=[("a.txt", "a")],
    ),
    row(
        "optional-entry-unknown-key",
        """\
        version: 1
        steps:
          a:
            inputs:
              - {path: b.txt, optinal: true}
            run: cat b.txt
        """,
        "optinal",
        "optinal",
        "did you mean 'optional'",
    ),
    row(
        "optional-entry-without-path",
        """\
        version: 1
        steps:
          a:
            inputs:
              - {optional: true}
            run: cat b.txt
        """,
        "optional: true",
        "path",
    ),
    row(
        "optional-not-a-boolean",
        """\
        version: 1
        steps:
          a:
            inputs:
              - {path: b.txt, optional: maybe}
            run: cat b.txt
        """,
        "maybe",
        "optional",
        "boolean",
    ),
    row(
        "pipeline-env-not-a-string",
        """\
        version: 1
        env:
          N: 3
        steps:
          a:
            run: echo $N
        """,
        "N: 3",
        "field 'env.N': input should be a valid string",
    ),
    row(
        "pipeline-env-undefined-name",
        """\
        version: 1
        env:
          WHO: "{{ nobody }}"
        steps:
          a:
            run: echo $WHO
        """,
        "WHO:",
        "step 'a', pipeline field 'env[WHO]': undefined variable 'nobody'",
    ),
]


@pytest.mark.parametrize("bad", CASES)
def test_build_refuses(tmp_path: Path, bad: Case) -> None:
    assert_command_refuses(tmp_path, bad, "build")
