"""SIGINT and SIGTERM at each moment of a build: start-up and planning, the synchronous
restore pass, a running step, steps waiting for their lock entry to be written.

Each ends with exit 130, no traceback, no temp file, a readable lock file and, when the run
folder exists, `job.cancelled` and a manifest saying `cancelled`; the next build resumes.
Builds run as real processes and get real signals; tests wait on events and files, never sleep.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine.build import Request, open_plan
from orchestrator.engine.lockwriter import LockWriter
from orchestrator.engine.state import Workspace

from .buildkit import Project, live_members, read_events, wait_for
from .signalkit import ended, resumes, wait_until_handled

SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


def foreach(name: str, count: int, body: str) -> str:
    """A foreach step over range(count), its fields in `body` (YAML, indented 4)."""
    return f'  {name}:\n    foreach: "{{{{ range({count}) | list }}}}"\n{body}'


def first_event(run: Path, type: str) -> dict[str, object] | None:
    found = [event for event in read_events(run) if event["type"] == type]
    return found[0] if found else None


def lock_written(project: Project) -> bool:
    """Whether the lock writer wrote, or is writing, the lock file or its journal."""
    return (
        project.exists("orch.lock")
        or project.exists(".orch.lock.journal")
        or any(project.root.glob(".orch.lock.*.tmp"))
    )


# --------------------------------------------------------------------------- start-up


@SIGNALS
def test_a_signal_while_orch_starts_and_plans_exits_130_and_leaves_nothing(
    project: Project, sig: signal.Signals
) -> None:
    steps = "".join(
        f"  s{i}:\n    template: 's{i} {{{{ vars | length }}}}'\n    output: out/s{i}.txt\n"
        for i in range(400)
    )
    project.write("orch.yaml", f"version: 1\nsteps:\n{steps}")
    process = project.spawn("build")
    wait_until_handled(process)

    process.send_signal(sig)
    ending = ended(project, process, set(), may_finish=False)
    assert "interrupted" in ending.stderr
    assert not project.exists("out")


# --------------------------------------------------------------------------- a running step


@SIGNALS
def test_a_signal_while_a_step_runs_ends_its_processes_and_closes_the_run(
    project: Project, sig: signal.Signals
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          first:
            run: echo first >> runs.log; echo 1 > first.txt
            output: first.txt
          slow:
            inputs: [first.txt]
            run: echo $$ > slow.pid; while [ ! -e go ]; do sleep 0.01; done; cp first.txt slow.txt
            output: slow.txt
        """
    )
    process = project.spawn("build", "-j", "1")
    run = project.wait_for_run(set(), process)
    project.wait_for_event(run, "step.started", "slow", process)
    group = project.step_group("slow.pid")

    process.send_signal(sig)
    ending = ended(project, process, set(), may_finish=False)
    assert ending.run == run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["steps"]["slow"]["status"] == "cancelled"
    assert manifest["pending_steps"] == ["slow"]
    assert sorted(project.lock()) == ["first"]
    wait_for(lambda: not live_members(group), timeout=10, what="the step's processes to end")
    project.write("go", "")
    resumes(project)


# --------------------------------------------------------------------------- the lock writer


@SIGNALS
def test_a_signal_while_steps_wait_for_their_lock_entry_cancels_cleanly(
    project: Project, sig: signal.Signals
) -> None:
    """Short parallel steps with dependents: each waits for its entry to be on disk."""
    project.write(
        "orch.yaml",
        "version: 1\nsteps:\n"
        + foreach("wave", 24, "    template: 'w{{ item }}'\n    output: 'w{{ item }}.txt'\n")
        + foreach(
            "next",
            24,
            "    inputs: ['w{{ item }}.txt']\n    template: \"{{ read('w' ~ item ~ '.txt') }}\"\n"
            "    output: 'n{{ item }}.txt'\n",
        ),
    )
    process = project.spawn("build", "-j", "24")
    # The first lock write: the steps that finished meanwhile wait for the next one.
    wait_for(lambda: lock_written(project), what="the first lock write")

    process.send_signal(sig)
    ending = ended(project, process, set(), may_finish=False)
    assert ending.run is not None
    manifest = json.loads((ending.run / "manifest.json").read_text())
    ran = {step for step, record in manifest["steps"].items() if record["status"] == "ran"}
    assert ran <= set(project.lock()), "a step that ran is not in the lock file"
    resumes(project)


def test_a_step_cancelled_while_waiting_for_the_lock_writer_does_not_cancel_the_write(
    project: Project,
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          a:
            template: a
            output: a.txt
        """
    )
    assert project.orch("build").exit_code == 0
    entry = project.lock()["a"]
    (project.root / "orch.lock").unlink()
    request = Request(project.root / "orch.yaml")
    writer = LockWriter(Workspace(open_plan(request)[0], request.options))

    async def cancel_a_waiter() -> None:
        writer.in_loop = True
        number = writer.record("a", entry)
        waiter = asyncio.ensure_future(writer.written(number))
        await asyncio.sleep(0)  # the waiter now awaits the write
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await writer.flush()

    asyncio.run(cancel_a_waiter())
    assert project.lock() == {"a": entry}


# --------------------------------------------------------------------------- restores

RESTORED = 300


@pytest.mark.slow
@SIGNALS
def test_a_signal_during_a_long_restore_pass_keeps_what_was_restored(
    project: Project, sig: signal.Signals
) -> None:
    project.write(
        "orch.yaml",
        "version: 1\nsteps:\n"
        + foreach(
            "page", RESTORED, "    template: 'page {{ item }}'\n    output: 'out/{{ item }}.txt'\n"
        ),
    )
    assert project.orch("build", "-j", "8").exit_code == 0
    (project.root / "orch.lock").unlink()
    for page in (project.root / "out").iterdir():
        page.unlink()
    before = project.run_folders()
    process = project.spawn("build")
    run = project.wait_for_run(before, process)
    wait_for(lambda: first_event(run, "step.restored"), what="a restored step")

    process.send_signal(sig)
    ending = ended(project, process, before, may_finish=False)
    assert ending.run == run
    manifest = json.loads((run / "manifest.json").read_text())
    restored = {s for s, record in manifest["steps"].items() if record["status"] == "restored"}
    assert 0 < len(restored) < RESTORED
    assert set(project.lock()) == restored
    assert not any(e["type"] == "step.started" for e in read_events(run))
    resumes(project)


# --------------------------------------------------------------------------- dropped raises

DROPPED = """\
import os, signal, weakref
from orchestrator.core import interrupt

interrupt.take_over()

class Thing:
    pass

def callback(_):
    os.kill(os.getpid(), signal.SIGTERM)  # Interrupted is raised in the callback: Python drops it

thing = Thing()
ref = weakref.ref(thing, callback)
try:
    del thing
    while True:
        pass
except interrupt.Interrupted:
    print("interrupted")
"""


def test_an_interrupt_python_drops_in_a_callback_is_raised_again_outside_it(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", DROPPED], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "interrupted\n", "")
