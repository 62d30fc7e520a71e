"""Benchmark a fresh clone restoring N one-file outputs from the remote cache.

Usage:
    python benchmarks/remote.py [--n 1000] [--runs 5] [--json]

Starts an S3 server on 127.0.0.1 (moto in server mode), builds N one-file copy steps once in a
first workdir with `ORCH_REMOTE_CACHE` set (filling the bucket), then, alternating, `--runs`
times each: `orch build` in a fresh clone (sources only: every step is restored from the
remote), and the peer, obstore alone downloading the same N objects and N action records into
a folder, one after another. Target: the clone's median at most 3 times the peer's (ratio <= 3).

Wall time is `time.perf_counter` around the whole `orch build` process and around the peer's
loop. Exits 1 if a build fails or a clone runs a step instead of restoring it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TARGET_RATIO = 3.0


def orch_executable() -> list[str]:
    """The console script next to this interpreter (not a pyenv shim from PATH)."""
    script = Path(sys.executable).parent / "orch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orchestrator"]


def write_checkout(folder: Path, n: int) -> None:
    """The pipeline and its N sources."""
    (folder / "src").mkdir(parents=True)
    (folder / "out").mkdir()
    lines = ["version: 1", "name: remote_bench", "steps:"]
    for i in range(n):
        (folder / "src" / f"{i}.txt").write_text(f"file {i}\n" * 20)
        lines += [
            f"  s{i}:",
            f"    inputs: [src/{i}.txt]",
            f"    output: out/{i}.txt",
            f"    run: cp src/{i}.txt out/{i}.txt",
        ]
    (folder / "orch.yaml").write_text("\n".join(lines) + "\n")


def timed_build(orch: list[str], folder: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [*orch, "build"], cwd=folder, capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"orch build failed in {folder}:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout


def peer_copy(url: str, target: Path) -> float:
    """obstore alone: list the bucket's objects and records and download each into `target`."""
    import obstore
    from obstore.store import from_url

    store = from_url(url, client_options={"allow_http": True})
    started = time.perf_counter()
    for batch in obstore.list(store):
        for entry in batch:
            path = target / entry["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(obstore.get(store, entry["path"]).bytes()))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    credentials = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    os.environ.update(credentials)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(credentials, NO_COLOR="1", ORCH_REMOTE_CACHE=url)
    orch = orch_executable()
    clones: list[float] = []
    peers: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="orch-remote-") as tmp:
            first = Path(tmp, "first")
            write_checkout(first, args.n)
            first_s, _ = timed_build(orch, first, env)
            for run in range(args.runs):
                clone = Path(tmp, f"clone{run}")
                write_checkout(clone, args.n)
                elapsed, output = timed_build(orch, clone, env)
                if " run " in output or f"{args.n} restored" not in output:
                    sys.exit(f"the clone did not restore every step:\n{output[-2000:]}")
                clones.append(elapsed)
                copy = Path(tmp, f"peer{run}")
                peers.append(peer_copy(url, copy))
                shutil.rmtree(clone)
                shutil.rmtree(copy)
    finally:
        server.stop()
    ratio = statistics.median(clones) / statistics.median(peers)
    result = {
        "steps": args.n,
        "runs": args.runs,
        "first_build_s": round(first_s, 3),
        "clone_median_s": round(statistics.median(clones), 3),
        "peer_median_s": round(statistics.median(peers), 3),
        "clone_samples_s": [round(t, 3) for t in clones],
        "peer_samples_s": [round(t, 3) for t in peers],
        "ratio": round(ratio, 2),
        "target": TARGET_RATIO,
        "result": "PASS" if ratio <= TARGET_RATIO else "FAIL",
        "load": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.n} steps, {args.runs} runs each, alternating (load {os.getloadavg()})")
        print(f"  fresh clone restoring from the remote: median {result['clone_median_s']} s")
        print(f"  obstore alone, same objects:           median {result['peer_median_s']} s")
        print(f"  ratio {ratio:.2f} (target <= {TARGET_RATIO}): {result['result']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
