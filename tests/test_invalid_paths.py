"""Invalid glob exclusions, optional inputs and pipeline `env`: exit 2 at `file:line:col`,
a message a person can act on, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_invalid_pipelines import Case, _assert_refused, _invoke, _line_of, _snapshot, _write
from .test_invalid_pipelines import case as row

CASES = [
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
def test_validate_refuses(tmp_path: Path, bad: Case) -> None:
    for rel, content in bad.files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    pipeline, text = _write(tmp_path, bad.text)
    line = 1 if bad.marker is None else _line_of(text, bad.marker)
    before = _snapshot(tmp_path)

    result = _invoke(["build", str(pipeline)], tmp_path)

    _assert_refused(result, pipeline, line, bad.fragments, before, tmp_path, bad.absent)
