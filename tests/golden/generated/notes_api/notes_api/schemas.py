"""Request and reply models."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class NoteCreate(BaseModel):
    """The body of `POST /notes`."""

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=10_000)


class NoteRead(BaseModel):
    """A stored note, as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    created_at: datetime
