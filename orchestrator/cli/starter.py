"""`orch init`: a commented starter pipeline, `.orch/` ignored by git, and a CI workflow."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.errors import UsageError

PIPELINE = "orch.yaml"
WORKFLOW = ".github/workflows/orch.yml"
IGNORED = ".orch/"

STARTER = """\
# A starter pipeline: `orch build` brings its outputs up to date, `orch list` lists its steps,
# `orch status` says what a build would do and why. Each step has a key made of its definition
# and the content of its inputs; it runs again only when that key changes.
version: 1
name: starter

vars:                                   # usable in every template: {{ topic }}
  topic: pipelines

providers:
  # `fake` needs no key and no network: with `echo: true` it replies with the prompt.
  offline: { kind: fake, echo: true }
  # A real model, chosen with ORCH_PROVIDER=openai and OPENAI_API_KEY in the environment:
  # openai: { kind: openai, model: gpt-4o-mini, options: { temperature: 0 } }
default_provider: "{{ env.ORCH_PROVIDER | default('offline') }}"

steps:
  topic:                                # a shell step: it has `run`
    description: Write the topic to a file.
    run: echo "{{ topic }}"
    stdout: build/topic.txt             # captured, written atomically on success

  page:                                 # a template step: it has `template`
    description: Render a page about the topic.
    inputs: [build/topic.txt]           # read from `topic`'s output: runs after it
    template: |
      # Notes on {{ read('build/topic.txt') | trim }}

      A page rendered by orch.
    output: build/page.md

  summary:                              # an llm step: it has `prompt`
    description: Ask the model for a one-line summary of the page.
    inputs: [build/page.md]
    prompt: "Summarise in one line: {{ read('build/page.md') }}"
    output: build/summary.md
"""

CI_WORKFLOW = """\
# Builds the pipeline on every push and pull request.
name: orch

on: [push, pull_request]

jobs:
  build:
    runs-on: ubuntu-latest
    # A remote cache shared by CI jobs and machines restores what any of them built
    # (see orch's docs/remote-cache.md):
    # env:
    #   ORCH_REMOTE_CACHE: s3://my-bucket/orch-cache
    #   AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}
    #   AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - run: pip install orch
      # Fails when an input changed but its outputs and orch.lock were not rebuilt and
      # committed; leave it out if the outputs are not committed.
      - run: orch status --check
      - run: orch build
"""


def write_starter(folder: Path, *, force: bool = False) -> list[str]:
    """Write the starter files into `folder`; a line per file written or changed.

    An existing orch.yaml (or workflow) is a UsageError, with nothing written, unless `force`.
    """
    from orchestrator.store.filestore import atomic_write

    pipeline, workflow = folder / PIPELINE, folder / WORKFLOW
    if not force:
        for path in (pipeline, workflow):
            if path.exists():
                raise UsageError(f"{path} exists; pass --force to overwrite it")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    done = []
    try:
        workflow.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(pipeline, STARTER.encode("utf-8"))
        done.append(f"wrote {pipeline}")
        ignore = _ignore_state(folder / ".gitignore")
        if ignore:
            done.append(ignore)
        atomic_write(workflow, CI_WORKFLOW.encode("utf-8"))
        done.append(f"wrote {workflow}")
    except OSError as exc:
        raise UsageError(f"cannot write in {folder}: {exc.strerror or exc}") from exc
    return done


def _ignore_state(gitignore: Path) -> str | None:
    """Add `.orch/` to the .gitignore (made if missing) unless it is there; what was done."""
    from orchestrator.store.filestore import atomic_write

    if not gitignore.exists():
        atomic_write(gitignore, f"{IGNORED}\n".encode())
        return f"wrote {gitignore}"
    text = gitignore.read_text(encoding="utf-8", errors="surrogateescape")
    lines = {line.strip() for line in text.splitlines()}
    if lines & {".orch", ".orch/", "/.orch", "/.orch/"}:
        return None
    ending = "" if not text or text.endswith("\n") else "\n"
    updated = f"{text}{ending}{IGNORED}\n".encode("utf-8", errors="surrogateescape")
    atomic_write(gitignore, updated)
    return f"added {IGNORED} to {gitignore}"
