"""`orch report`: one build as a self-contained HTML page, checked through the CLI and opened in
a real headless Chromium (screenshot, DOM, and a proxy that counts network requests)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from .buildkit import Project
from .conftest import SETTINGS_PREFIXES

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

# A step that runs, an llm step on a priced fake provider, one up to date, one restored from the
# cache, one that fails (its log holds markup) and one it blocks.
PIPELINE = """\
version: 1
providers:
  fake: { kind: fake, echo: true, price: { input: 1000, output: 3000 } }
steps:
  source:
    inputs: [input.txt]
    run: tr a-z A-Z < input.txt
    stdout: build/source.txt
  ask:
    inputs: [build/source.txt]
    prompt: "Summarise {{ read('build/source.txt') }}"
    output: build/ask.md
  steady:
    run: echo steady
    stdout: build/steady.txt
  kept:
    run: echo kept
    stdout: build/kept.txt
  broken:
    inputs: [build/source.txt]
    run: "echo 'first <line>'; seq 1 30; echo '<script>alert(1)</script> & done'; exit 3"
  after:
    needs: [broken]
    run: echo after
    stdout: build/after.txt
"""
STATUSES = {
    "source": "ran",
    "ask": "ran",
    "steady": "up-to-date",
    "kept": "restored",
    "broken": "failed",
    "after": "blocked",
}


def orch(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`orch ARGS` as a process in `root`, without orch or provider settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=root,
        env={**env, "CI": "1", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def build_run(root: Path) -> dict[str, Any]:
    """Two builds with `-k`; the second has every status. Its manifest."""
    (root / "orch.yaml").write_text(PIPELINE)
    (root / "input.txt").write_text("hello\n")
    assert orch(root, "build", "-k").returncode == 1
    (root / "input.txt").write_text("goodbye\n")
    (root / "build" / "kept.txt").unlink()
    assert orch(root, "build", "-k").returncode == 1
    manifests = [
        json.loads((run / "manifest.json").read_text())
        for run in (root / ".orch" / "runs").iterdir()
    ]
    manifest: dict[str, Any] = max(manifests, key=lambda m: m["started"])
    assert {s: r["status"] for s, r in manifest["steps"].items()} == STATUSES
    return manifest


@dataclass
class Built:
    root: Path
    manifest: dict[str, Any]
    page: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("report")
    manifest = build_run(root)
    result = orch(root, "report")
    assert (result.returncode, result.stdout) == (
        0,
        f"wrote report.html (run {manifest['job_id']})\n",
    )
    return Built(root, manifest, root / "report.html")


# --------------------------------------------------------------------------- the command


def test_report_writes_report_html_and_says_where(built: Built) -> None:
    job_id = built.manifest["job_id"]
    again = orch(built.root, "report", job_id[:-2], "-o", "out/run.html")
    assert (again.returncode, again.stderr) == (
        2,
        "cannot write out/run.html: No such file or directory\n",
    )
    (built.root / "out").mkdir()
    again = orch(built.root, "report", job_id[:-2], "-o", "out/run.html")
    assert again.stdout == f"wrote out/run.html (run {job_id})\n"
    assert (built.root / "out" / "run.html").read_text() == built.page.read_text()


def test_report_replaces_an_earlier_report_but_never_another_file(built: Built) -> None:
    earlier = built.page.read_text()
    assert orch(built.root, "report").stdout.startswith("wrote report.html (run ")
    assert built.page.read_text() == earlier
    mine = built.root / "notes.html"
    mine.write_text("<p>my notes</p>")
    refused = orch(built.root, "report", "-o", "notes.html")
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        2,
        "",
        "notes.html exists and is not an orch report; remove it or choose another -o\n",
    )
    assert mine.read_text() == "<p>my notes</p>"


def test_report_to_stdout_prints_the_page_and_nothing_else(built: Built) -> None:
    printed = orch(built.root, "report", "-o", "-")
    assert printed.returncode == 0
    assert printed.stdout == built.page.read_text()
    assert printed.stdout.startswith("<!DOCTYPE html>")


def test_a_bad_run_exits_as_orch_show_does_and_writes_nothing(built: Built) -> None:
    for ref in ("nope", ""):
        shown = orch(built.root, "show", ref)
        reported = orch(built.root, "report", ref, "-o", "bad.html")
        assert reported.returncode == shown.returncode == 2
        assert reported.stderr == shown.stderr
        assert reported.stdout == ""
    assert not (built.root / "bad.html").exists()


def test_a_workdir_without_runs_exits_as_orch_show_does(tmp_path: Path) -> None:
    shown, reported = orch(tmp_path, "show"), orch(tmp_path, "report")
    assert (reported.returncode, reported.stderr) == (shown.returncode, shown.stderr)
    assert not (tmp_path / "report.html").exists()


def test_the_page_names_no_url(built: Built) -> None:
    page = built.page.read_text()
    linked = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)|url\(([^)]*)\)""", page, re.I)
    assert not [link for pair in linked for link in pair if re.search("https?:", link)]
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.replace("&lt;script", "")


# `slow` and `quick` run side by side; `join` waits for both, so the path is slow -> join.
PARALLEL = """\
version: 1
steps:
  slow:
    run: sleep 0.5; echo slow
    stdout: build/slow.txt
  quick:
    run: echo quick
    stdout: build/quick.txt
  join:
    inputs: [build/slow.txt, build/quick.txt]
    run: cat build/slow.txt build/quick.txt
    stdout: build/join.txt
"""


def timeline_of(page: str) -> tuple[dict[str, set[str]], int]:
    """Each bar's classes by step, and the number of lanes, from a page's timeline."""
    parsed = Elements()
    parsed.feed(page)
    tags = parsed.inside("timeline")
    tags = tags[: next(i for i, (tag, _) in enumerate(tags) if tag == "section")]
    bars = {a["data-step"]: set(a["class"].split()) for _, a in tags if "data-step" in a}
    return bars, sum(a.get("class") == "lane" for _, a in tags)


def test_the_critical_path_follows_the_step_that_kept_the_build_waiting(
    project: Project,
) -> None:
    project.pipeline(PARALLEL)
    assert project.orch("build", "-j", "2").exit_code == 0
    page = project.orch("report", "-o", "-").stdout
    bars, lanes = timeline_of(page)
    assert {step: "critical" in found for step, found in bars.items()} == {
        "slow": True,
        "quick": False,
        "join": True,
    }
    assert lanes == 2
    assert "Critical path, from the step graph: slow → join" in page
    assert 'class="edge critical"' in page and '<svg id="graph"' in page


def test_without_a_saved_plan_the_critical_path_comes_from_the_events(project: Project) -> None:
    project.pipeline(PARALLEL)
    assert project.orch("build", "-j", "2").exit_code == 0
    shutil.rmtree(project.root / ".orch" / "plans")
    page = project.orch("report", "-o", "-").stdout
    bars, _ = timeline_of(page)
    assert {step for step, found in bars.items() if "critical" in found} == {"slow", "join"}
    assert "Critical path, from the events alone (no saved plan): slow → join" in page
    assert "The step graph is not known" in page and '<svg id="graph"' not in page


def test_step_ids_and_names_with_markup_are_text(project: Project) -> None:
    step = 'echo@<b>"x" & y</b>'
    project.pipeline("""\
        version: 1
        name: <i>mine</i>
        steps:
          echo:
            foreach: ['<b>"x" & y</b>']
            run: echo hi
        """)
    assert project.orch("build").exit_code == 0
    page = project.orch("report", "-o", "-").stdout
    parsed = Elements()
    parsed.feed(page)
    assert {a["data-step"] for _, a in parsed.tags if "data-step" in a} == {step}
    assert not {"b", "i"} & {tag for tag, _ in parsed.tags}
    assert "<i>mine</i>" in parsed.text and f"{step}: ran" in parsed.text


# --------------------------------------------------------------------------- in a browser


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


class Elements(HTMLParser):
    """Every start tag of a DOM with its attributes, its text, and the text of each element
    with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, str] = {}
        self.text = ""
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.tags.append((tag, found))
        self._open.append(found.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in filter(None, self._open):
            self.texts[element] = self.texts.get(element, "") + data
        self.text += data

    def inside(self, element_id: str) -> list[tuple[str, dict[str, str]]]:
        """The tags from the element with this id to the end of the document."""
        start = next(i for i, (_, a) in enumerate(self.tags) if a.get("id") == element_id)
        return self.tags[start:]


@needs_chromium
@pytest.mark.slow
def test_chromium_draws_a_page_that_is_not_blank(built: Built, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    opened = chromium(f"--screenshot={shot}", "--window-size=1200,900", built.page.as_uri())
    assert shot.is_file(), opened.stderr.decode()
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 900)
    assert len(set(pixels)) > 16, "the screenshot is (nearly) one colour"


@needs_chromium
def test_the_dom_has_one_bar_per_step_with_its_status_and_the_manifest_cost(
    built: Built,
) -> None:
    dom = chromium("--dump-dom", built.page.as_uri()).stdout.decode()
    bars, _ = timeline_of(dom)
    assert {step: found - {"bar", "critical"} for step, found in bars.items()} == {
        step: {status} for step, status in STATUSES.items()
    }
    assert {step for step, found in bars.items() if "critical" in found} >= {"source"}
    assert not {"steady", "kept", "after"} & {s for s, found in bars.items() if "critical" in found}
    parsed = Elements()
    parsed.feed(dom)
    runs_cost = orch(built.root, "runs", "--limit", "1").stdout.splitlines()[1].split()[-1]
    assert parsed.texts["total-cost"] == parsed.texts["usage-total"] == runs_cost
    assert float(runs_cost) == built.manifest["usage"]["cost"] > 0
    assert "29\n30\n<script>alert(1)</script> & done" in parsed.text
    assert "first <line>" not in parsed.text  # more than 20 lines before the end
    assert "script" not in [tag for tag, _ in parsed.tags]


BROWSER_SERVICES = re.compile(r"(^|[ /.])(google\.com|googleapis\.com|gvt1\.com)[:/]")
"""Chromium's own traffic (component updates, network time, accounts): the Debian package asks
them even with --disable-background-networking; no page makes these requests."""
LEAKY_PAGE = """<!DOCTYPE html><html><head><style>
@font-face { font-family: f; src: url(http://fonts.report.test/f.woff2); }
body { font-family: f; background: url(https://images.report.test/bg.png); }
</style></head><body>x<img src="http://images.report.test/a.png"></body></html>"""


def page_requests(page: Path) -> list[str]:
    """The requests a proxy on 127.0.0.1 saw while chromium loaded `page`, less the browser's
    own."""
    with counting_proxy() as seen:
        chromium(
            f"--proxy-server=http://127.0.0.1:{seen.port}",
            "--proxy-bypass-list=<-loopback>",
            "--disable-background-networking",
            "--dump-dom",
            page.as_uri(),
        )
    return [line for line in seen.requests if not BROWSER_SERVICES.search(line)]


@needs_chromium
@pytest.mark.slow
def test_opening_the_page_sends_no_request(built: Built, tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.html"
    leaky.write_text(LEAKY_PAGE)
    assert any("images.report.test" in line for line in page_requests(leaky))
    assert page_requests(built.page) == []


# --------------------------------------------------------------------------- helpers


@dataclass
class Seen:
    port: int
    requests: list[str]


@contextmanager
def counting_proxy() -> Iterator[Seen]:
    """A proxy on 127.0.0.1 that answers 502 and records every request line."""
    seen = Seen(0, [])

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.requests.append(self.requestline)
            self.send_error(502)

        do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = do_OPTIONS = _any

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    seen.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the pixels of an 8-bit RGB or RGBA PNG, unfiltered (standard
    library only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    at = 8
    idat = b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if kind == b"IDAT":
            idat += body
        chunks.setdefault(kind, body)
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    size = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * size
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        unfilter(kind, line, previous, size)
        rows.append(line)
        previous = line
    pixels = [bytes(row[i : i + size]) for row in rows for i in range(0, stride, size)]
    return width, height, pixels


def unfilter(kind: int, line: bytearray, previous: bytearray, size: int) -> None:
    """Undo one PNG filter in place (None, Sub, Up, Average, Paeth)."""
    for i in range(len(line)):
        left = line[i - size] if i >= size else 0
        up = previous[i]
        corner = previous[i - size] if i >= size else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            guess = left + up - corner
            pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
            best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + best) & 0xFF
