"""The lock journal: read up to a torn or damaged append, and folded into the lock file by the
next build (a `kill -9` leaving one behind: tests/test_build.py
test_sigkill_loses_only_the_step_in_flight)."""

from __future__ import annotations

import json

from orchestrator.store.journal import HEADER
from orchestrator.store.lockfile import render_entry
from tests.buildkit import Project

JOURNAL = ".orch.lock.journal"

CHAIN = """\
version: 1
steps:
  first:
    inputs: [src.txt]
    cache: false
    run: echo first >> runs.log; cp src.txt first.txt
    output: first.txt
  second:
    inputs: [first.txt]
    cache: false
    run: echo second >> runs.log; cp first.txt second.txt
    output: second.txt
  blocked:
    inputs: [second.txt]
    cache: false
    run: >-
      echo $$ > blocked.pid; echo blocked >> runs.log;
      while [ ! -e go ]; do sleep 0.02; done; cp second.txt blocked.txt
    output: blocked.txt
"""


def statuses(project: Project) -> dict[str, str]:
    """What `orch status --json` says each step would do."""
    result = project.orch("status", "--json")
    assert result.exit_code in (0, 1), result.stderr
    return {step["step"]: step["action"] for step in json.loads(result.stdout)["steps"]}


def test_a_torn_or_damaged_journal_block_and_what_follows_are_ignored(project: Project) -> None:
    project.write("src.txt", "seed\n")
    project.write("go", "")
    project.pipeline(CHAIN)
    assert project.orch("build").exit_code == 0
    entries = project.lock()
    first, second, blocked = (render_entry(n, entries[n]) for n in ("first", "second", "blocked"))
    (project.root / "orch.lock").unlink()

    # A torn last append: `blocked`'s block cut inside its check line.
    project.write(JOURNAL, HEADER + first + second + blocked[:-6])
    assert set(project.lock()) == {"first", "second"}
    assert statuses(project) == {"first": "up-to-date", "second": "up-to-date", "blocked": "run"}
    # A flipped digit in `second`'s block: neither it nor `blocked`'s after it is used.
    damaged = second.replace('key: "', 'key: "0', 1).replace('key: "00', 'key: "01', 1)
    project.write(JOURNAL, HEADER + first + damaged[:-1] + "\n" + blocked)
    assert set(project.lock()) == {"first"}
    # Not a journal at all (no header): nothing in it is used.
    project.write(JOURNAL, first + second + blocked)
    assert project.lock() == {}

    project.write(JOURNAL, HEADER + first + second + blocked[:-6])
    assert project.new_runs() == ["first", "second", "blocked"]
    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["blocked"]
    assert not project.exists(JOURNAL)
    assert set(project.lock()) == {"first", "second", "blocked"}


def test_a_build_that_runs_nothing_folds_a_leftover_journal_into_the_lock(
    project: Project,
) -> None:
    project.write("src.txt", "seed\n")
    project.write("go", "")
    project.pipeline(CHAIN)
    assert project.orch("build").exit_code == 0
    lock = project.read("orch.lock")
    body = lock.split("steps:\n", 1)[1].removesuffix("# end\n")
    project.write(JOURNAL, HEADER + body)
    project.write("orch.lock", "")

    assert project.orch("build").exit_code == 0
    assert project.new_runs() == ["first", "second", "blocked"], "only the first build ran"
    assert project.read("orch.lock") == lock
    assert not project.exists(JOURNAL)
