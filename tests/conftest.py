"""Shared fixtures: paths of the example pipelines and a helper to write pipelines."""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.buildkit import Project
from tests.llm_server import LlmServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

collect_ignore = ["golden"]  # the expected generated app, with tests of its own


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that hold a slow test run first, each kept whole (so a module-scoped fixture is
    built once per worker), in collection order otherwise. xdist's worksteal hands each worker
    a contiguous share and steals from the end of a queue: with the long tests first, a run
    ends on short tests instead of one worker finishing a long one alone."""
    slow = {_module(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _module(item) not in slow)


def _module(item: pytest.Item) -> str:
    return item.nodeid.partition("::")[0]


@pytest.fixture(autouse=True, scope="session")
def _no_worker_marks_in_the_environment() -> None:
    """The pytest a step runs (the example pipeline's `qa`) is a session of its own: it must
    not inherit the marks of the xdist worker running this one."""
    for name in [name for name in os.environ if name.startswith("PYTEST_XDIST_")]:
        del os.environ[name]


@pytest.fixture(autouse=True, scope="session")
def _every_manifest_is_its_replayed_events(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """When the session ends, every run the tests left under this worker's base temp folder has
    the manifest that replaying its events gives (see `manifest_mismatches`)."""
    yield
    mismatches = manifest_mismatches(tmp_path_factory.getbasetemp())
    if mismatches:
        lines = "\n".join(mismatches)
        pytest.fail(f"manifests that their events do not give:\n{lines}", pytrace=False)


def manifest_mismatches(base: Path) -> list[str]:
    """One line per run folder (`.orch/runs/<job>/`) under `base` whose manifest.json differs
    from the fold of its events.jsonl, naming the folder and the fields that differ.

    Every field is compared: none is legitimately absent from the events. A manifest that still
    says `running` (a killed build) is the one written as the run started: it is compared with
    the fold of the events up to `job.started`.
    """
    found = []
    for run in _run_folders(base):
        difference = _replay_difference(run)
        if difference:
            found.append(f"{run}: {difference}")
    return found


def _run_folders(base: Path) -> Iterator[Path]:
    """The run folders with a manifest under `base` (unreadable folders skipped)."""
    for folder, subfolders, _ in os.walk(base):
        if folder.endswith(f"{os.sep}.orch{os.sep}runs"):
            runs = (Path(folder, name) for name in sorted(subfolders))
            yield from (run for run in runs if (run / "manifest.json").exists())
            subfolders.clear()


def _replay_difference(run: Path) -> str:
    """How the run's manifest differs from the fold of its events ('' when it does not)."""
    from orchestrator.record import history
    from orchestrator.record.manifest import Manifest, replay

    try:
        stored = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    events = history.read_events(history.Run(run.name, run))
    if stored.get("status") == "running":
        events = events[: 1 + next((i for i, e in enumerate(events) if _opens(e)), len(events))]
    replayed = json.loads(json.dumps(replay(Manifest(run.name), events).to_json()))
    return "; ".join(_differences(stored, replayed))


def _differences(stored: Any, replayed: Any, where: str = "") -> Iterator[str]:
    """Where two JSON values differ, down to the innermost mappings that do."""
    if not (isinstance(stored, dict) and isinstance(replayed, dict)):
        if stored != replayed:
            yield f"{where or '.'}: manifest {_short(stored)}, events {_short(replayed)}"
        return
    for key in [*stored, *(key for key in replayed if key not in stored)]:
        inner = f"{where}.{key}" if where else str(key)
        yield from _differences(stored.get(key), replayed.get(key), inner)


def _opens(event: dict[str, Any]) -> bool:
    return event.get("type") == "job.started"


def _short(value: Any, width: int = 400) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    """Write a pipeline (dedented) and any extra files into tmp_path; return the pipeline path."""

    def write(text: str, files: dict[str, str] | None = None, name: str = "orch.yaml") -> Path:
        for relative, content in (files or {}).items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        pipeline = tmp_path / name
        pipeline.write_text(textwrap.dedent(text), encoding="utf-8")
        return pipeline

    return write


@pytest.fixture
def llm_server() -> Iterator[LlmServer]:
    """A loopback server speaking the OpenAI, Anthropic and Ollama wire formats."""
    with LlmServer() as server:
        yield server


SETTINGS_PREFIXES = ("ORCH_", "OPENAI_", "AZURE_OPENAI_", "ANTHROPIC_", "OLLAMA_")
"""Environment variables that would change how orch builds: cleared for end-to-end tests."""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """An empty workdir `tmp_path/work` as the current folder, with no orch or provider settings
    in the environment."""
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    for variable in [v for v in os.environ if v.startswith(SETTINGS_PREFIXES)]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("NO_COLOR", "1")
    project = Project(root)
    try:
        yield project
    finally:
        project.cleanup()


@pytest.fixture(scope="session")
def notes_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the flagship pipeline's inputs, built offline once for the whole session.
    Tests that change it work on their own copy."""
    from tests.notes_kit import PIPELINE, copy_inputs, orch

    root = copy_inputs(tmp_path_factory.mktemp("notes-built"))
    done = orch(root, "build", PIPELINE)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh bucket, with the environment pointing orch's remote cache at it."""
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-do-not-leak",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3,
    }.items():
        monkeypatch.setenv(name, value)
    name = f"cache-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket=name)
    monkeypatch.setenv("ORCH_REMOTE_CACHE", f"s3://{name}/team")
    return client, name


def keys(bucket: Any) -> dict[str, bytes]:
    """Every object of the bucket, by name."""
    client, name = bucket
    listed = client.list_objects_v2(Bucket=name).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=name, Key=o["Key"])["Body"].read() for o in listed}
