"""A YAML mistake a person often makes gets one sentence of advice under the parser's words,
the line and the caret; exit 2, no traceback, nothing written."""

from __future__ import annotations

import pytest

from tests.buildkit import Project

from .test_pipeline_discovery import _files, _orch

HEAD = "version: 1\nsteps:\n  a:\n"

CASES = [
    pytest.param(
        HEAD + "    run: echo hi > out.txt\n    output: {{ name }}.txt\n",
        "orch.yaml:5:23: invalid YAML: expected <block end>, but found '<scalar>'\n"
        "      output: {{ name }}.txt\n"
        "                        ^\n"
        'hint: a value that starts with {{ must be quoted: "{{ … }}"\n',
        id="unquoted-template-with-text-after",
    ),
    pytest.param(
        HEAD + "    run: cat in.txt\n    inputs:\n      - {{ source }}\n",
        "orch.yaml:6:10: invalid YAML: found unhashable key\n"
        "        - {{ source }}\n"
        "           ^\n"
        'hint: a value that starts with {{ must be quoted: "{{ … }}"\n',
        id="unquoted-template-found-unhashable-key",
    ),
    pytest.param(
        HEAD + "    run: {% if x %}a{% endif %}\n",
        "orch.yaml:4:11: invalid YAML: found character '%' that cannot start any token\n"
        "      run: {% if x %}a{% endif %}\n"
        "            ^\n"
        'hint: a value that starts with {% must be quoted: "{% … %}"\n',
        id="unquoted-template-block",
    ),
    pytest.param(
        HEAD + "    run: echo hi\n\toutput: out.txt\n",
        "orch.yaml:5:1: invalid YAML: found character '\\t' that cannot start any token\n"
        "   output: out.txt\n"
        "  ^\n"
        "hint: YAML does not allow tabs for indentation; use spaces\n",
        id="tab-indentation",
    ),
    pytest.param(
        HEAD + "    run: echo hi\n    output\n",
        "orch.yaml:5:5: invalid YAML: could not find expected ':'\n"
        "      output\n"
        "      ^\n"
        "hint: a key needs a colon after it\n",
        id="missing-colon-at-the-end",
    ),
    pytest.param(
        HEAD + "    run echo hi\n    output: out.txt\n",
        "orch.yaml:5:11: invalid YAML: mapping values are not allowed here\n"
        "      output: out.txt\n"
        "            ^\n"
        "hint: a key needs a colon after it; the line above has none (or no space after it)\n",
        id="missing-colon-on-the-line-above",
    ),
    pytest.param(
        HEAD + "    run: echo note: hi\n",
        "orch.yaml:4:19: invalid YAML: mapping values are not allowed here\n"
        "      run: echo note: hi\n"
        "                    ^\n"
        'hint: a value that contains ": " must be quoted: run: "echo note: hi"\n',
        id="colon-in-a-value",
    ),
    pytest.param(
        HEAD + "    run: |\n    echo hi\n",
        "orch.yaml:5:5: invalid YAML: could not find expected ':'\n"
        "      echo hi\n"
        "      ^\n"
        "hint: the lines of a | or > block must be indented more than its key\n",
        id="block-text-not-indented",
    ),
    pytest.param(
        HEAD + "    run: cat *.md\n    inputs: *.md\n",
        "orch.yaml:5:13: invalid YAML: found undefined alias '.md'\n"
        "      inputs: *.md\n"
        "              ^\n"
        'hint: a value that starts with * must be quoted: "*.md"\n',
        id="unquoted-glob",
    ),
    pytest.param(
        HEAD + '    run: "echo hi\n',
        "orch.yaml:4:10: invalid YAML: found unexpected end of stream\n"
        '      run: "echo hi\n'
        "           ^\n"
        "hint: this quote is never closed\n",
        id="unclosed-quote",
    ),
    pytest.param(
        HEAD + '    run: "echo" hi\n',
        "orch.yaml:4:17: invalid YAML: expected <block end>, but found '<scalar>'\n"
        '      run: "echo" hi\n'
        "                  ^\n"
        "hint: text follows a closing quote; quote the whole value\n",
        id="text-after-a-quote",
    ),
    pytest.param(
        HEAD + "    run: echo hi\n   output: out.txt\n",
        "orch.yaml:5:4: invalid YAML: expected <block end>, but found '<block mapping start>'\n"
        "     output: out.txt\n"
        "     ^\n"
        "hint: the keys of one mapping must start in the same column\n",
        id="key-out-of-line",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
@pytest.mark.parametrize("command", ["validate", "build", "status"])
def test_a_common_yaml_mistake_gets_a_hint(
    project: Project, command: str, text: str, expected: str
) -> None:
    project.write("orch.yaml", text)
    result = _orch(command)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", expected)
    assert _files(project.root) == {"orch.yaml"}


def test_a_mistake_without_a_known_cause_gets_no_hint(project: Project) -> None:
    project.write("orch.yaml", HEAD + "    run: echo hi\n    run: echo again\n")
    result = _orch("validate")
    assert (result.exit_code, result.stderr) == (
        2,
        'orch.yaml:5:5: invalid YAML: found duplicate key "run" with value "echo again"'
        ' (original value: "echo hi")\n'
        "      run: echo again\n"
        "      ^\n",
    )


def test_a_values_file_gets_the_same_hints(project: Project) -> None:
    project.write("orch.yaml", "version: 1\nvars: [params.yaml]\nsteps:\n  a: { run: 'true' }\n")
    project.write("params.yaml", "model: {{ name }}\n")
    result = _orch("validate")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "  model: {{ name }}\n"
        "          ^\n"
        'hint: a value that starts with {{ must be quoted: "{{ … }}"\n'
    )


def test_a_quoted_template_is_not_blamed(project: Project) -> None:
    project.write("orch.yaml", HEAD + '    run: "echo a: {{ x }}\n')
    result = _orch("validate")
    assert (result.exit_code, result.stderr) == (
        2,
        "orch.yaml:4:10: invalid YAML: found unexpected end of stream\n"
        '      run: "echo a: {{ x }}\n'
        "           ^\n"
        "hint: this quote is never closed\n",
    )
