"""JSON Schemas generated from the pydantic models, and the files they are kept in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PIPELINE_SCHEMA_FILE = Path("schemas/pipeline.schema.json")
EVENT_SCHEMA_FILE = Path("schemas/event.schema.json")


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file."""
    from orchestrator.steps import language

    schema = language().pipeline.model_json_schema(by_alias=True)
    return {"$schema": SCHEMA_DIALECT, **schema}


def event_schema() -> dict[str, Any]:
    """The JSON Schema of one line of a run's `events.jsonl`."""
    from orchestrator.record.eventtypes import EventModel

    return {"$schema": SCHEMA_DIALECT, **EventModel.model_json_schema()}


def schema_files() -> dict[Path, str]:
    """Each schema file's path (relative to the project root) and its exact text."""
    schemas = {PIPELINE_SCHEMA_FILE: pipeline_schema(), EVENT_SCHEMA_FILE: event_schema()}
    return {
        path: json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for path, schema in schemas.items()
    }


def write_schemas(root: Path) -> list[Path]:
    """Write every schema file under `root`; return the files whose content changed."""
    changed = []
    for relative, text in schema_files().items():
        path = root / relative
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed
