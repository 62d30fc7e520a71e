"""The flagship pipeline, built offline in a copy of the repository, writes exactly the files in
`tests/golden/`, and the notes service it generates works.

After a deliberate change to the pipeline, its prompts or its sample replies, refresh the golden
files with `ORCH_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .notes_kit import GOLDEN, OUTPUTS, generated


@pytest.fixture
def built(notes_built: Path) -> Path:
    """The offline build of the pipeline (shared; these tests only read it)."""
    return notes_built


def test_the_offline_build_writes_exactly_the_golden_files(built: Path) -> None:
    if os.environ.get("ORCH_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name in OUTPUTS:
            shutil.copytree(built / name, GOLDEN / name)
    expected, actual = generated(GOLDEN), generated(built)
    assert sorted(actual) == sorted(expected)
    for path, data in expected.items():
        assert actual[path] == data, f"{path} differs from tests/golden/{path}"


def test_qa_ran_the_generated_tests_and_they_passed(built: Path) -> None:
    report = (built / "build" / "notes_api" / "qa.txt").read_text(encoding="utf-8")
    assert report.count("\nPASSED ") == 8
    assert "FAILED" not in report and "error" not in report.lower()


@pytest.fixture
def client(built: Path, tmp_path: Path) -> Iterator[Any]:
    """A TestClient on the generated app, with its database in a temporary folder."""
    from fastapi.testclient import TestClient

    project = built / "generated" / "notes_api"
    sys.path.insert(0, str(project))
    sys.dont_write_bytecode, before = True, sys.dont_write_bytecode
    try:
        from notes_api.main import create_app

        app = create_app(f"sqlite:///{tmp_path / 'notes.db'}")
        with TestClient(app) as client:
            yield client
    finally:
        sys.dont_write_bytecode = before
        sys.path.remove(str(project))
        for name in [m for m in sys.modules if m == "notes_api" or m.startswith("notes_api.")]:
            del sys.modules[name]


def test_the_generated_service_handles_every_endpoint(client: Any) -> None:
    first = client.post("/notes", json={"title": "Groceries", "body": "milk, bread"})
    assert first.status_code == 201
    note = first.json()
    assert {"id", "title", "body", "created_at"} <= set(note)
    assert (note["title"], note["body"]) == ("Groceries", "milk, bread")
    second = client.post("/notes", json={"title": "Call Ann", "body": "about Sunday"}).json()

    listed = client.get("/notes")
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()] == [second["id"], note["id"]]  # newest first

    assert client.get(f"/notes/{note['id']}").json() == note
    missing = client.get("/notes/999999")
    assert (missing.status_code, missing.json()) == (404, {"detail": "note not found"})

    assert client.delete(f"/notes/{note['id']}").status_code == 204
    assert client.get(f"/notes/{note['id']}").status_code == 404
    assert client.delete(f"/notes/{note['id']}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"title": "", "body": "x"}, {"title": "x" * 201, "body": "x"}, {"title": "no body"}],
    ids=["empty-title", "title-too-long", "missing-body"],
)
def test_the_generated_service_rejects_invalid_notes_with_422(
    client: Any, body: dict[str, str]
) -> None:
    reply = client.post("/notes", json=body)
    assert reply.status_code == 422
    assert reply.json()["detail"]
    assert client.get("/notes").json() == []


def test_the_committed_outputs_are_the_golden_files() -> None:
    from .conftest import ROOT

    assert generated(ROOT) == generated(GOLDEN)
