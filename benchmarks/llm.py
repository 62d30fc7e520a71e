"""Benchmark N independent llm steps against the loopback server (tests/llm_server.py).

Usage:
    python benchmarks/llm.py [--n 200] [--runs 5] [--quick] [--json]

Starts `tests/llm_server.py --latency 0.1` in its own process and, in a temporary folder, a
pipeline of N independent llm steps on one `openai` provider with `max_concurrency: 50`.
Each run deletes `.orch/runs`, `.orch/cache`, `orch.lock` and `out/` (`.orch/plans`, the
compiled-plan cache, is kept from one warm-up run) and times `orch build orch.yaml -j 50`:
process wall time, the job's `duration_s` (manifest.json), the call phase (first
`llm.request` to last `llm.response` in events.jsonl) and process CPU (user+sys). In the same
rounds, in this process, two peers send the same N POSTs: httpx alone (8 `httpx.AsyncClient`s
round-robin, semaphore 50) and the floor client (plain asyncio streams, 50 keep-alive
connections, no HTTP library). Ideal = N x latency / concurrency. Targets (medians): process
wall <= 1.3 x the floor client's wall, and orch's CPU per call minus the floor client's CPU per
request <= 2 ms. Exits 0 unless the benchmark cannot run (a FAIL is only reported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx

LATENCY_S = 0.1
CONCURRENCY = 50
CLIENTS = 8
DEFAULT_N, QUICK_N = 200, 100
DEFAULT_RUNS, QUICK_RUNS = 5, 2
TARGET_RATIO = 1.3
"""Process wall of the build over the floor client's wall, same N requests, same run."""
TARGET_CPU_MS = 2.0
"""orch's CPU per call beyond what the floor client spends per request."""
TIMEOUT_S = 300.0
SERVER = Path(__file__).resolve().parent.parent / "tests" / "llm_server.py"


class BenchError(Exception):
    """The benchmark cannot go on (server or orch failed, wrong outputs, ...)."""


@contextlib.contextmanager
def llm_server(latency: float) -> Iterator[str]:
    """Run the loopback server in a child process; yield its base URL; always terminate it."""
    cmd = [sys.executable, str(SERVER), "--latency", str(latency)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if not select.select([proc.stdout], [], [], 30)[0]:
            raise BenchError("the llm server printed no URL within 30 s")
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise BenchError(f"the llm server printed {url!r} (exit code {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_pipeline(folder: Path, url: str, n: int) -> None:
    """`orch.yaml`: N independent llm steps `s0..s{n-1}` on one openai provider."""
    provider = f'kind: openai, model: bench, base_url: "{url}/v1", max_concurrency: {CONCURRENCY}'
    lines = ["version: 1", "name: bench_llm", "providers:", f"  local: {{ {provider} }}"]
    lines.append("steps:")
    lines += [f'  s{i}: {{ prompt: "hello {i}", output: out/{i}.md }}' for i in range(n)]
    (folder / "orch.yaml").write_text("\n".join(lines) + "\n")


def ts(value: str) -> float:
    """Seconds since the epoch of an events.jsonl `ts` (ISO-8601 UTC with Z)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_orch(folder: Path, n: int, env: dict[str, str]) -> dict[str, float]:
    """One clean `orch build -j 50`: wall, job duration, call phase (s) and CPU (s)."""
    for name in (".orch/runs", ".orch/cache", "out"):
        shutil.rmtree(folder / name, ignore_errors=True)
    (folder / "orch.lock").unlink(missing_ok=True)
    (folder / "out").mkdir()
    cmd = [str(Path(sys.executable).parent / "orch"), "build", "orch.yaml", "-j", str(CONCURRENCY)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"orch build took more than {TIMEOUT_S:g} s") from exc
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise BenchError(f"orch build exited with {proc.returncode}:\n{tail}")
    wrong = [i for i in range(n) if not (folder / "out" / f"{i}.md").is_file()]
    if wrong:
        raise BenchError(f"{len(wrong)} of {n} outputs missing (first: out/{wrong[0]}.md)")
    (job,) = (folder / ".orch" / "runs").iterdir()
    manifest = json.loads((job / "manifest.json").read_text())
    events = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    requests = [ts(e["ts"]) for e in events if e["type"] == "llm.request"]
    responses = [ts(e["ts"]) for e in events if e["type"] == "llm.response"]
    if len(requests) != n or len(responses) != n:
        raise BenchError(f"expected {n} llm calls, got {len(requests)}/{len(responses)} events")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    calls = max(responses) - min(requests)
    return {"wall": wall, "job": float(manifest["duration_s"]), "calls": calls, "cpu": cpu}


async def _peer(url: str, n: int) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)
    clients = [httpx.AsyncClient() for _ in range(CLIENTS)]

    async def call(i: int) -> None:
        body = {"model": "bench", "messages": [{"role": "user", "content": f"hello {i}"}]}
        async with slots:
            reply = await clients[i % CLIENTS].post(f"{url}/v1/chat/completions", json=body)
        reply.raise_for_status()
        if reply.json()["choices"][0]["message"]["content"] != f"echo: hello {i}":
            raise BenchError(f"peer: unexpected reply {reply.text[:200]!r}")

    try:
        await asyncio.gather(*(call(i) for i in range(n)))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


def _request(host: str, i: int) -> bytes:
    """The raw HTTP/1.1 request of call `i`: the same JSON body the steps send."""
    body = json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": f"hello {i}"}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    """The body of one HTTP/1.1 reply with a Content-Length (BenchError for another status)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split(" ", 2)[1] != "200":
        raise BenchError(f"floor: unexpected status line {lines[0]!r}")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    return await reader.readexactly(length)


async def _floor(url: str, n: int) -> None:
    """N POSTs over CONCURRENCY keep-alive connections, plain asyncio streams, no HTTP library."""
    host = url.removeprefix("http://")
    address, port = host.rsplit(":", 1)
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        todo.put_nowait(i)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(address, int(port))
        try:
            while not todo.empty():
                i = todo.get_nowait()
                writer.write(_request(host, i))
                reply = json.loads(await _read_reply(reader))
                if reply["choices"][0]["message"]["content"] != f"echo: hello {i}":
                    raise BenchError(f"floor: unexpected reply {reply!r:.200}")
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(min(CONCURRENCY, n))))


def _timed(coroutine: Any) -> dict[str, float]:
    """Wall and CPU (s) of running `coroutine` in this process."""
    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(coroutine)
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def run_peer(url: str, n: int) -> dict[str, float]:
    """httpx alone, in this process: wall and CPU (s) for the same N calls."""
    return _timed(_peer(url, n))


def run_floor(url: str, n: int) -> dict[str, float]:
    """The floor client, in this process: wall and CPU (s) for the same N calls."""
    return _timed(_floor(url, n))


def _sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help=f"llm steps (default {DEFAULT_N}; --quick {QUICK_N})")
    parser.add_argument("--runs", type=int, help=f"measured runs (default {DEFAULT_RUNS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs, N={QUICK_N}")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n: int = args.n or (QUICK_N if args.quick else DEFAULT_N)
    runs: int = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    if n < 1 or runs < 1:
        parser.error("--n and --runs must be at least 1")
    signal.signal(signal.SIGTERM, _sigterm)
    ideal = n * LATENCY_S / CONCURRENCY
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "OPENAI_"))}
    samples: dict[str, list[float]] = {}
    try:
        with llm_server(LATENCY_S) as url, tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_pipeline(folder, url, n)
            run_orch(folder, n, env)  # warm-up: compiles the plan into .orch/plans
            run_peer(url, n)
            run_floor(url, n)
            for index in range(runs):
                print(f"run {index + 1}/{runs}", file=sys.stderr)
                measured = {f"orch.{k}": v for k, v in run_orch(folder, n, env).items()}
                measured |= {f"peer.{k}": v for k, v in run_peer(url, n).items()}
                measured |= {f"floor.{k}": v for k, v in run_floor(url, n).items()}
                for key, value in measured.items():
                    samples.setdefault(key, []).append(value)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    per_call = 1000.0 / n
    orch_wall, floor_wall = samples["orch.wall"], samples["floor.wall"]
    orch_cpu, peer_cpu, floor_cpu = samples["orch.cpu"], samples["peer.cpu"], samples["floor.cpu"]
    rows: list[tuple[str, str, str, list[float]]] = [
        ("orch.wall_s", "orch build: process wall", "s", orch_wall),
        ("orch.job_s", "orch build: job duration_s", "s", samples["orch.job"]),
        ("orch.calls_s", "orch build: first request..last response", "s", samples["orch.calls"]),
        ("peer.wall_s", "httpx alone: wall", "s", samples["peer.wall"]),
        ("floor.wall_s", "floor client: wall", "s", floor_wall),
        ("orch.floor_ratio", "process wall / floor wall", "x",
         [o / f for o, f in zip(orch_wall, floor_wall, strict=True)]),
        ("orch.wall_ratio", "process wall / ideal", "x", [v / ideal for v in orch_wall]),
        ("orch.job_ratio", "job duration / ideal", "x", [v / ideal for v in samples["orch.job"]]),
        ("peer.ratio", "httpx alone wall / ideal", "x", [v / ideal for v in samples["peer.wall"]]),
        ("floor.ratio", "floor client wall / ideal", "x", [v / ideal for v in floor_wall]),
        ("orch.cpu_ms", "orch CPU (user+sys) per call", "ms", [v * per_call for v in orch_cpu]),
        ("peer.cpu_ms", "httpx alone CPU per call", "ms", [v * per_call for v in peer_cpu]),
        ("floor.cpu_ms", "floor client CPU per call", "ms", [v * per_call for v in floor_cpu]),
        ("orch.outside_http_ms", "orch CPU per call - floor CPU per call", "ms",
         [(o - f) * per_call for o, f in zip(orch_cpu, floor_cpu, strict=True)]),
        ("orch.outside_httpx_ms", "orch CPU per call - httpx alone CPU per call", "ms",
         [(o - p) * per_call for o, p in zip(orch_cpu, peer_cpu, strict=True)]),
    ]  # fmt: skip
    medians = {key: statistics.median(values) for key, _, _, values in rows}
    floor_ratio, outside = medians["orch.floor_ratio"], medians["orch.outside_http_ms"]
    passed = floor_ratio <= TARGET_RATIO and outside <= TARGET_CPU_MS
    verdict = "PASS" if passed else "FAIL"
    if args.json:
        figures: dict[str, Any] = {
            key: {"unit": unit, "median": round(statistics.median(values), 4),
                  "min": round(min(values), 4), "max": round(max(values), 4)}
            for key, _, unit, values in rows
        }  # fmt: skip
        info: dict[str, Any] = {"n": n, "latency_s": LATENCY_S, "concurrency": CONCURRENCY}
        info |= {"ideal_s": ideal, "runs": runs, "target_ratio": TARGET_RATIO}
        info |= {"target_cpu_ms": TARGET_CPU_MS, "result": verdict}
        print(json.dumps(info | {"figures": figures}, indent=2))
        return 0
    print(f"python: {sys.executable} ({sys.version.split()[0]}), cpus: {os.cpu_count()}")
    print(f"N={n} llm steps, server latency {LATENCY_S * 1000:.0f} ms, -j {CONCURRENCY}, ", end="")
    print(f"max_concurrency {CONCURRENCY}: ideal = N x latency / concurrency = {ideal:.3f} s")
    print(f"{runs} runs after 1 warm-up; each wipes .orch/runs, .orch/cache, orch.lock, out/")
    print("and keeps .orch/plans (the compiled plan from the warm-up), so every run compiles alike")
    print()
    header = f"{'':<50} {'median':>8} {'min':>8} {'max':>8}"
    print(header + "\n" + "-" * len(header))
    for _, label, unit, values in rows:
        cells = " ".join(f"{f(values):>8.3f}" for f in (statistics.median, min, max))
        print(f"{label + ' (' + unit + ')':<46} {cells}")
    print()
    print(f"targets: process wall <= {TARGET_RATIO} x floor client (median {floor_ratio:.2f} x),")
    print(
        f"CPU per call beyond the floor's <= {TARGET_CPU_MS:g} ms (median {outside:.2f} ms): ",
        end="",
    )
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
