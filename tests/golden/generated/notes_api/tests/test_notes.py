"""API tests, each on a fresh in-memory SQLite database."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from notes_api.main import create_app


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A client of a new app whose lifespan has created the tables."""
    with TestClient(create_app("sqlite://")) as client:
        yield client


def create(client: TestClient, title: str, body: str = "") -> dict[str, Any]:
    """POST a note and return the reply."""
    response = client.post("/notes", json={"title": title, "body": body})
    assert response.status_code == 201
    note: dict[str, Any] = response.json()
    return note


def test_create_returns_the_stored_note(client: TestClient) -> None:
    note = create(client, "Groceries", "milk, bread")
    assert set(note) == {"id", "title", "body", "created_at"}
    assert (note["title"], note["body"]) == ("Groceries", "milk, bread")


def test_list_is_newest_first(client: TestClient) -> None:
    ids = [create(client, f"note {n}")["id"] for n in range(3)]
    response = client.get("/notes")
    assert response.status_code == 200
    assert [note["id"] for note in response.json()] == ids[::-1]


def test_get_returns_the_note(client: TestClient) -> None:
    note = create(client, "Call Ann", "about Sunday")
    response = client.get(f"/notes/{note['id']}")
    assert response.status_code == 200
    assert response.json() == note


def test_get_unknown_note_is_404(client: TestClient) -> None:
    response = client.get("/notes/999")
    assert response.status_code == 404
    assert response.json() == {"detail": "note not found"}


def test_delete_then_get_is_404(client: TestClient) -> None:
    note = create(client, "Temporary")
    response = client.delete(f"/notes/{note['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/notes/{note['id']}").status_code == 404


def test_delete_unknown_note_is_404(client: TestClient) -> None:
    response = client.delete("/notes/999")
    assert response.status_code == 404
    assert response.json() == {"detail": "note not found"}


@pytest.mark.parametrize(
    ("payload", "location", "error"),
    [
        ({"title": "", "body": "x"}, ["body", "title"], "string_too_short"),
        ({"title": "no body"}, ["body", "body"], "missing"),
    ],
    ids=["empty-title", "missing-body"],
)
def test_invalid_note_is_422(
    client: TestClient, payload: dict[str, str], location: list[str], error: str
) -> None:
    response = client.post("/notes", json=payload)
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert (detail["loc"], detail["type"]) == (location, error)
    assert client.get("/notes").json() == []
