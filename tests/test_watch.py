"""`orch watch` as a real process: one build per batch of changes to what the steps read, none
for what a build writes, an invalid pipeline reported without stopping, and a clean stop (exit
0, no traceback) on SIGINT or SIGTERM, also while a build runs.

Tests wait on run folders and output lines, never on time: to show that no build followed, a
later edit must give exactly one more.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import IO

import pytest

from orchestrator.engine.build import Request
from orchestrator.engine.watchset import WatchSet, watch_set

from .buildkit import Project, live_members, read_events, wait_for

END_TYPES = {"job.succeeded", "job.failed", "job.cancelled"}

COPY = """\
version: 1
steps:
  copy:
    run: cat {inputs} > out/copy.txt; echo copy >> runs.log
    inputs: ["{inputs}"]
    output: out/copy.txt
"""


class Watch:
    """A running `orch watch`, its output read as it comes."""

    def __init__(self, project: Project, *args: str) -> None:
        self.project = project
        self.process = project.spawn("watch", *args)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, lines in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def builds(self) -> list[Path]:
        """The run folders of the builds that ended, oldest first."""
        ended = [run for run in self.project.run_folders() if _ended(run)]
        return sorted(ended, key=lambda run: run.name)

    def ended(self) -> int:
        """How many builds ended: those with a run folder, and those that changed nothing
        (a line in the run history)."""
        return len(self.builds()) + len(self.project.unchanged_builds())

    def wait_for_builds(self, count: int, what: str = "") -> None:
        """Wait until `count` builds have ended (and the process still runs)."""

        def done() -> bool:
            assert self.process.poll() is None, f"orch watch exited: {self.stderr}"
            return self.ended() >= count

        wait_for(done, what=f"build {count} {what}")

    def wait_for_line(self, text: str, *, err: bool = False) -> None:
        lines = self.stderr if err else self.stdout
        wait_for(lambda: any(text in line for line in lines), what=repr(text))

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Send `sig`; the exit code, once the process and its output have ended."""
        self.process.send_signal(sig)
        code = self.process.wait(timeout=10)
        streams = (self.process.stdout, self.process.stderr)
        wait_for(lambda: all(s is None or s.closed for s in streams), what="the output's end")
        return code

    def changed_lines(self) -> list[str]:
        return [line for line in self.stdout if line.startswith("changed: ")]


def _pump(stream: IO[str], lines: list[str]) -> None:
    """Collect a stream's lines until it ends, then close it."""
    for line in stream:
        lines.append(line.rstrip("\n"))
    stream.close()


def _ended(run: Path) -> bool:
    return any(event["type"] in END_TYPES for event in read_events(run))


def test_the_watch_set_holds_what_the_steps_read_and_nothing_a_build_writes(
    project: Project,
) -> None:
    project.write("values.yaml", "who: world\n")
    project.write("src/a.txt", "a\n")
    project.write("notes/n.md", "n\n")
    project.pipeline(
        """\
        version: 1
        vars: [values.yaml]
        steps:
          copy:
            run: cat src/*.txt notes/*.md > out/copy.txt
            inputs: ["src/*.txt", notes/]
            output: out/copy.txt
          again:
            run: cat out/copy.txt > out/again.txt
            inputs: [out/copy.txt]
            output: out/again.txt
        """
    )
    watched = watch_set(Request(Path("orch.yaml")))
    root = project.root.resolve()
    assert project.orch("build").exit_code == 0
    assert watch_set(Request(Path("orch.yaml"))) == watched  # now from the plan the build saved

    assert watched.roots() == [root]
    for path in ("orch.yaml", "values.yaml", "src/a.txt", "src/new.txt", "notes/deep/x"):
        assert watched.covers(str(root / path)), path
    for path in ("out/copy.txt", "out/again.txt", ".orch/stat-cache.json", "orch.lock",
                 ".orch.lock.0123abcd.tmp", "src/a.md", "runs.log"):  # fmt: skip
        assert not watched.covers(str(root / path)), path
    assert WatchSet(root, frozenset(), ("src/*.txt", "notes/")).roots() == [
        root / "notes",
        root / "src",
    ]


def test_an_edited_input_rebuilds_once_and_what_the_build_writes_does_not(
    project: Project,
) -> None:
    project.write("notes.txt", "one\n")  # at the top of the workdir, beside .orch/ and out/
    project.write("orch.yaml", COPY.format(inputs="notes.txt"))
    watch = Watch(project)
    watch.wait_for_builds(1)
    assert project.new_runs() == ["copy"]

    project.write("notes.txt", "two\n")
    watch.wait_for_builds(2, "after the edit")
    assert project.read("out/copy.txt") == "two\n"
    assert project.new_runs() == ["copy"]

    project.write("notes.txt", "three\n")  # the one build that may follow the last
    watch.wait_for_builds(3, "after the second edit")
    assert project.read("out/copy.txt") == "three\n"
    assert project.new_runs() == ["copy"]
    assert len(project.run_folders()) == 3

    assert watch.stop(signal.SIGINT) == 0
    assert watch.changed_lines() == ["changed: notes.txt", "changed: notes.txt"]
    assert "Traceback" not in "\n".join(watch.stderr)


def test_files_written_together_rebuild_once_and_a_glob_sees_new_files(project: Project) -> None:
    project.write("src/a.txt", "a\n")
    project.write("orch.yaml", COPY.format(inputs="src/*.txt"))
    watch = Watch(project)
    watch.wait_for_builds(1)
    project.new_runs()

    for name in ("a", "b", "c"):  # one edit, two new files matching the glob
        project.write(f"src/{name}.txt", f"{name}{name}\n")
    watch.wait_for_builds(2, "after the burst")
    assert project.read("out/copy.txt") == "aa\nbb\ncc\n"

    project.write("src/d.txt", "dd\n")
    watch.wait_for_builds(3, "after the last file")
    assert project.read("out/copy.txt") == "aa\nbb\ncc\ndd\n"
    assert project.new_runs() == ["copy", "copy"]
    assert len(project.run_folders()) == 3

    assert watch.stop(signal.SIGTERM) == 0
    assert watch.changed_lines() == ["changed: src/a.txt and 2 more", "changed: src/d.txt"]
    assert "Traceback" not in "\n".join(watch.stderr)


def test_an_invalid_pipeline_is_reported_and_watching_goes_on_until_it_is_fixed(
    project: Project,
) -> None:
    project.write("notes.txt", "one\n")
    project.write("orch.yaml", COPY.format(inputs="notes.txt"))
    watch = Watch(project)
    watch.wait_for_builds(1)
    project.new_runs()

    project.write("orch.yaml", COPY.format(inputs="notes.txt").replace("inputs:", "input:"))
    watch.wait_for_line("orch.yaml:5:5: unknown key 'input' in step 'copy'", err=True)
    assert len(project.run_folders()) == 1

    project.write("orch.yaml", COPY.format(inputs="notes.txt").replace("cat", "cat -n"))
    watch.wait_for_builds(2, "after the fix")
    assert project.read("out/copy.txt") == "     1\tone\n"
    assert project.new_runs() == ["copy"]

    assert watch.stop() == 0
    assert watch.changed_lines() == ["changed: orch.yaml", "changed: orch.yaml"]
    assert "Traceback" not in "\n".join(watch.stderr)


def test_a_pipeline_edit_changes_what_is_watched(project: Project) -> None:
    shared = project.root.parent / "shared"  # a fragment outside the workdir
    shared.mkdir()
    (shared / "common.yaml").write_text(COPY.format(inputs="notes.txt").split("\n", 1)[1])
    project.write("notes.txt", "one\n")
    project.write("orch.yaml", "version: 1\ninclude: [../shared/common.yaml]\n")
    watch = Watch(project)
    watch.wait_for_builds(1)

    (shared / "common.yaml").write_text(COPY.format(inputs="notes.txt").split("\n", 1)[1] + "#\n")
    watch.wait_for_builds(2, "after the fragment's edit")
    project.write("orch.yaml", COPY.format(inputs="notes.txt"))  # the fragment no longer
    watch.wait_for_builds(3, "after the pipeline's edit")

    (shared / "common.yaml").write_text("")  # not watched any more
    project.write("notes.txt", "two\n")
    watch.wait_for_builds(4, "after the input's edit")
    assert project.read("out/copy.txt") == "two\n"
    assert watch.ended() == 4
    assert watch.stop() == 0
    assert watch.changed_lines() == [
        "changed: ../shared/common.yaml",
        "changed: orch.yaml",
        "changed: notes.txt",
    ]


def test_changes_during_a_build_give_one_build_after_it(project: Project) -> None:
    project.write("notes.txt", "one\n")
    hold = "while [ -e hold ]; do sleep 0.01; done"  # `hold` is no input: it starts nothing
    run = f"cat notes.txt > out/copy.txt; echo copy >> runs.log; touch started; {hold}"
    project.pipeline(
        f"""\
        version: 1
        steps:
          copy:
            run: {run}
            inputs: [notes.txt]
            output: out/copy.txt
        """
    )
    watch = Watch(project)
    watch.wait_for_builds(1)
    project.new_runs()

    project.write("hold", "")
    (project.root / "started").unlink()
    project.write("notes.txt", "two\n")
    wait_for(lambda: project.exists("started"), what="the second build's step")
    for text in ("three\n", "four\n", "five\n"):
        project.write("notes.txt", text)
    (project.root / "hold").unlink()
    watch.wait_for_builds(3, "after the build the edits were made during")
    assert project.read("out/copy.txt") == "five\n"

    project.write("notes.txt", "six\n")
    watch.wait_for_builds(4, "after a later edit")
    assert project.read("out/copy.txt") == "six\n"
    assert project.new_runs() == ["copy", "copy", "copy"]
    assert len(project.run_folders()) == 4
    assert watch.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_build_cancels_it_and_stops_watching(
    project: Project, sig: signal.Signals
) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          slow:
            run: echo $$ > slow.pid; while [ ! -e go ]; do sleep 0.01; done; echo done > out.txt
            output: out.txt
        """
    )
    watch = Watch(project)
    group = project.step_group("slow.pid")

    assert watch.stop(sig) == 0
    (run,) = watch.builds()
    assert read_events(run)[-1]["type"] == "job.cancelled"
    assert "Traceback" not in "\n".join(watch.stderr)
    assert not project.exists("out.txt")
    wait_for(lambda: not live_members(group), what="the step's processes to end")
