"""Database settings, engine and declarative base."""

import os

from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import StaticPool

DEFAULT_DATABASE_URL = "sqlite:///./notes.db"


class Base(DeclarativeBase):
    """Base class of the ORM models."""


def get_database_url() -> str:
    """The URL from `NOTES_DATABASE_URL`, else a `notes.db` file in the working folder."""
    return os.environ.get("NOTES_DATABASE_URL", DEFAULT_DATABASE_URL)


def make_engine(url: str) -> Engine:
    """An engine for `url`; it connects lazily, so no database file is created here.

    SQLite connections may be used from FastAPI's worker threads, and an in-memory database
    keeps one shared connection (`StaticPool`), or every connection would see an empty one.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url)
    connect_args = {"check_same_thread": False}
    if parsed.database in (None, "", ":memory:"):
        return create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    return create_engine(url, connect_args=connect_args)
