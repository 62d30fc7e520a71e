"""Big files stream: a `stdout:` capture, an output a command writes, a restore from the cache,
a kept hand edit and `orch cache cat` take about as much memory for a big file as for a small
one; and a file copied while it is checked never lands when its bytes are not the expected ones.

Each memory measurement runs `orch` as the child of a fresh helper process, which reports the
peak resident set size of its children (orch's own, its step processes being far smaller).
ORCH_SOAK_BIG_MB sets the big size (64 MiB by default; 1024 for the figures in
docs/reliability.md) and `pytest -n 0 -s` prints the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.store.cache import Cache, CorruptObject
from orchestrator.store.filestore import DigestMismatch, safe_write_file

SMALL_MB = 8
BIG_MB = int(os.environ.get("ORCH_SOAK_BIG_MB", "64"))
MARGIN_MB = 24
"""How much more memory the big files may take than the small ones."""
MIB = 1 << 20
PHASES = ("no-op", "capture", "cp output", "restore", "keep", "cache cat")
SETTINGS = ("ORCH_", "OPENAI_", "ANTHROPIC_", "OLLAMA_")

PIPELINE = """\
version: 1
steps:
  capture:
    run: head -c {size} /dev/zero
    stdout: big/captured.bin
  copy:
    inputs: [src.bin]
    run: cp src.bin big/copied.bin
    output: big/copied.bin
"""

MEASURE = """\
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    code = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(code, peak / (1 << 20) if sys.platform == "darwin" else peak / 1024)
"""
"""Run a command with its output in a file; print its exit code and peak RSS in MiB."""

Figures = dict[str, float]


def orch_peak(root: Path, *args: str, output: Path | None = None) -> float:
    """Run `orch ARGS` in `root` (its output into `output`); its peak RSS in MiB."""
    output = output or root.parent / "orch.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS)}
    command = [sys.executable, "-c", MEASURE, str(output), sys.executable, "-m", "orchestrator"]
    env |= {"NO_COLOR": "1", "CI": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [*command, *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    code, peak = done.stdout.split()
    assert code == "0", f"orch {' '.join(args)} exited {code}:\n{output.read_text()}"
    return float(peak)


def fill(path: Path, size: int, tail: bytes = b"") -> None:
    """Write `size` zero bytes and `tail` to `path`, a chunk at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for start in range(0, size, MIB):
            out.write(bytes(min(MIB, size - start)))
        out.write(tail)


def digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def zeros_digest(size: int, tail: bytes = b"") -> str:
    hasher = hashlib.sha256()
    for start in range(0, size, MIB):
        hasher.update(bytes(min(MIB, size - start)))
    hasher.update(tail)
    return hasher.hexdigest()


def runs(root: Path) -> set[Path]:
    return set((root / ".orch" / "runs").iterdir())


def new_events(root: Path, before: set[Path], type: str) -> list[dict[str, object]]:
    """The events of `type` of the one run made since `before`."""
    (run,) = runs(root) - before
    lines = (run / "events.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["type"] == type]


def scenario(root: Path, mb: int) -> Figures:
    """Build, restore, keep an edit and cat it back with files of `mb` MiB; the peaks."""
    size = mb * MIB
    root.mkdir()
    (root / "orch.yaml").write_text(PIPELINE.format(size=size))
    fill(root / "src.bin", size, b"src")
    zeros, source = zeros_digest(size), digest(root / "src.bin")
    figures: Figures = {}
    figures["capture"] = orch_peak(root, "build", "capture")
    assert digest(root / "big" / "captured.bin") == zeros
    figures["cp output"] = orch_peak(root, "build", "copy")
    figures["no-op"] = orch_peak(root, "build")
    for name in ("captured.bin", "copied.bin"):
        (root / "big" / name).unlink()
    before = runs(root)
    figures["restore"] = orch_peak(root, "build")
    restored = sorted(str(event["step"]) for event in new_events(root, before, "step.restored"))
    assert restored == ["capture", "copy"]
    assert digest(root / "big" / "copied.bin") == source
    with (root / "big" / "copied.bin").open("r+b") as edit:
        edit.write(b"hand edit")
    before = runs(root)
    figures["keep"] = orch_peak(root, "build")
    (kept,) = [event["data"] for event in new_events(root, before, "file.kept")]
    assert isinstance(kept, dict) and kept["size_bytes"] == size + 3
    assert digest(root / "big" / "copied.bin") == source
    back = root.parent / "kept.bin"
    figures["cache cat"] = orch_peak(root, "cache", "cat", str(kept["sha256"]), output=back)
    assert digest(back) == kept["sha256"]
    return figures


@pytest.fixture(scope="module")
def peaks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Figures, Figures]:
    """The peak RSS (MiB) of each phase with small files, then with big ones."""
    small = scenario(tmp_path_factory.mktemp("small") / "work", SMALL_MB)
    big = scenario(tmp_path_factory.mktemp("big") / "work", BIG_MB)
    print(f"\npeak RSS (MiB) with {SMALL_MB} MiB files | with {BIG_MB} MiB files")
    for phase in PHASES:
        print(f"  {phase:<10} {small[phase]:7.1f} | {big[phase]:7.1f}")
    return small, big


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES[1:])
def test_the_memory_orch_takes_does_not_grow_with_the_file(
    peaks: tuple[Figures, Figures], phase: str
) -> None:
    small, big = peaks
    growth = big[phase] - small[phase]
    assert growth < MARGIN_MB, f"{phase}: {small[phase]:.0f} MiB → {big[phase]:.0f} MiB"


def test_a_copy_whose_bytes_are_not_the_expected_ones_never_lands(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"new bytes")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.bin").write_bytes(b"old bytes")
    other = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(DigestMismatch):
        safe_write_file(tmp_path, "out/a.bin", source, expect_sha256=other)
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"old bytes"
    assert os.listdir(tmp_path / "out") == ["a.bin"], "a temp file was left"


def test_a_file_copied_over_the_same_bytes_is_not_written(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    fill(source, 3 * MIB, b"end")
    first = safe_write_file(tmp_path, "out/a.bin", source)
    assert (first.reason, first.size_bytes) == ("created", 3 * MIB + 3)
    assert first.sha256 == zeros_digest(3 * MIB, b"end") == digest(tmp_path / "out" / "a.bin")
    assert safe_write_file(tmp_path, "out/a.bin", source).reason == "nochange"
    with source.open("r+b") as edit:
        edit.write(b"x")
    assert safe_write_file(tmp_path, "out/a.bin", source).reason == "overwritten"
    assert (tmp_path / "out" / "a.bin").read_bytes()[:2] == b"x\0"


def test_an_object_damaged_after_the_check_is_not_restored_and_is_removed(tmp_path: Path) -> None:
    cache = Cache(tmp_path / ".orch" / "cache")
    (tmp_path / "a.txt").write_text("good")
    good = hashlib.sha256(b"good").hexdigest()
    cache.store("5" * 64, tmp_path, {"a.txt": good}, {})
    action = cache.find("5" * 64).result
    assert action is not None
    cache.check(action)
    (tmp_path / ".orch" / "cache" / "objects" / good[:2] / good[2:]).write_text("bad!")
    (tmp_path / "a.txt").write_text("edited")
    with pytest.raises(CorruptObject, match="does not match its digest"):
        cache.write(action, tmp_path)
    assert (tmp_path / "a.txt").read_text() == "edited"
    assert cache.find("5" * 64).result is None, "the damaged object is still there"
    assert sorted(os.listdir(tmp_path)) == [".orch", "a.txt"], "a temp file was left"
