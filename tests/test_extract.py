"""How a model's reply becomes output files: fenced blocks, file paths, code and JSON."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.errors import StepFailed
from orchestrator.steps import extract

REPLY = """Here is the app.

```python app/main.py
print("hello")
```

Some words between.

```README.md
# Notes

```bash
pip install notes
```
```

```text
no path here
```
"""


def test_files_take_the_path_from_the_fence_line_and_keep_nested_blocks() -> None:
    files = extract.files(REPLY, ["out/"])
    assert files == {
        "out/app/main.py": 'print("hello")\n',
        "out/README.md": "# Notes\n\n```bash\npip install notes\n```\n",
    }


@pytest.mark.parametrize(
    ("info", "path"),
    [
        ("python app/main.py", "app/main.py"),
        ("main.py", "main.py"),
        ("python", None),
        ("", None),
        ('python title="src/x.py"', "src/x.py"),
        ("path=a/b.txt", "a/b.txt"),
        ("toml pyproject.toml", "pyproject.toml"),
    ],
)
def test_the_path_on_a_fence_line(info: str, path: str | None) -> None:
    assert extract.path_of(info) == path


def test_a_path_that_already_names_the_output_folder_is_kept() -> None:
    reply = "```python out/app.py\nx = 1\n```\n"
    assert extract.files(reply, ["out/"]) == {"out/app.py": "x = 1\n"}


@pytest.mark.parametrize(
    "named", ["../x.py", "/etc/passwd", "~/x", "a/../../x.py", "C:/x.py", "a/"]
)
def test_paths_outside_the_output_folder_fail_the_whole_reply(named: str) -> None:
    reply = f"```python ok.py\nfine\n```\n```python {named}\nbad\n```\n"
    with pytest.raises(StepFailed) as failure:
        extract.files(reply, ["out/"])
    assert failure.value.kind == "extract"
    assert named in failure.value.message


def test_a_path_another_step_writes_is_refused() -> None:
    reply = "```README.md\n# hi\n```\n"
    with pytest.raises(StepFailed, match="another step writes"):
        extract.files(reply, ["out/"], others=["out/README.md"])


def test_the_later_of_two_blocks_for_one_path_wins() -> None:
    reply = "```a.py\nold\n```\n```a.py\nnew\n```\n"
    assert extract.files(reply, ["out/"]) == {"out/a.py": "new\n"}


def test_a_reply_without_named_files_fails() -> None:
    with pytest.raises(StepFailed, match="names no files"):
        extract.files("```python\nx\n```\n", ["out/"])


def test_a_reply_cut_off_inside_a_block_is_refused() -> None:
    with pytest.raises(StepFailed, match="cut off"):
        extract.files("```python a.py\nprint(", ["out/"])


def test_code_is_the_first_fenced_block() -> None:
    reply = "Intro\n~~~sql\nSELECT 1;\n~~~\n```python\nx\n```\n"
    assert extract.first_code_block(reply) == "SELECT 1;\n"
    with pytest.raises(StepFailed, match="no fenced code block"):
        extract.first_code_block("just prose")


def test_a_longer_fence_holds_shorter_ones() -> None:
    reply = "````markdown doc.md\n```\ninner\n```\n````\n"
    assert extract.files(reply, ["d/"]) == {"d/doc.md": "```\ninner\n```\n"}


SCHEMA = {
    "type": "object",
    "required": ["name", "tags"],
    "properties": {"name": {"type": "string"}, "tags": {"type": "array"}},
}


@pytest.mark.parametrize(
    "reply",
    [
        '{"name": "n", "tags": ["a"]}',
        'Sure:\n```json\n{"name": "n", "tags": ["a"]}\n```\n',
    ],
)
def test_json_is_validated_and_pretty_printed(reply: str) -> None:
    text = extract.json_document(reply, SCHEMA)
    assert text == '{\n  "name": "n",\n  "tags": [\n    "a"\n  ]\n}\n'
    assert json.loads(text) == {"name": "n", "tags": ["a"]}


def test_json_that_does_not_match_the_schema_names_where() -> None:
    with pytest.raises(StepFailed) as failure:
        extract.json_document('{"name": "n", "tags": "a"}', SCHEMA)
    assert failure.value.kind == "extract"
    assert "$.tags" in failure.value.message
    assert "not of type 'array'" in failure.value.message


def test_a_reply_that_is_not_json_fails() -> None:
    with pytest.raises(StepFailed, match="not JSON"):
        extract.json_document("I cannot do that.", None)
