"""The notes HTTP API."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from notes_api.database import Base, get_database_url, make_engine
from notes_api.models import Note
from notes_api.schemas import NoteCreate, NoteRead

router = APIRouter(prefix="/notes", tags=["notes"])


def get_session(request: Request) -> Iterator[Session]:
    """One database session per request, closed when the request is done."""
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_note_or_404(session: Session, note_id: int) -> Note:
    """The note with this id, or a 404 reply."""
    note = session.get(Note, note_id)
    if note is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="note not found")
    return note


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NoteRead)
def create_note(payload: NoteCreate, session: SessionDep) -> Note:
    """Store a new note."""
    note = Note(**payload.model_dump())
    session.add(note)
    session.commit()
    session.refresh(note)
    return note


@router.get("", response_model=list[NoteRead])
def list_notes(session: SessionDep) -> list[Note]:
    """All notes, newest first."""
    query = select(Note).order_by(Note.created_at.desc(), Note.id.desc())
    return list(session.scalars(query))


@router.get("/{note_id}", response_model=NoteRead)
def read_note(note_id: int, session: SessionDep) -> Note:
    """One note."""
    return get_note_or_404(session, note_id)


@router.delete("/{note_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_note(note_id: int, session: SessionDep) -> None:
    """Delete a note."""
    session.delete(get_note_or_404(session, note_id))
    session.commit()


def create_app(database_url: str | None = None) -> FastAPI:
    """The app, on `database_url` if given, else on `NOTES_DATABASE_URL`."""
    engine = make_engine(database_url or get_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        Base.metadata.create_all(engine)
        yield
        engine.dispose()

    app = FastAPI(title="Notes API", version="0.1.0", lifespan=lifespan)
    app.state.sessions = sessionmaker(engine)
    app.include_router(router)
    return app


app = create_app()
