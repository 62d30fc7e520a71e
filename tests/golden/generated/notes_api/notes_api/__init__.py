"""A small FastAPI service that stores short text notes."""
