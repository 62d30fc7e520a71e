"""How llm calls travel: the messages a broken connection, a refused one or a silent server give,
many calls at once on few connections, and the events a follower (or a killed build) finds in
events.jsonl while a call is in flight. Real builds against the loopback server
(`tests/llm_server.py`)."""

from __future__ import annotations

import json
import signal
import socket
from typing import Any

from .buildkit import Project, read_events, wait_for
from .llm_server import DROP, LlmServer, slow


def write_orch(project: Project, steps: dict[str, Any], **provider: Any) -> None:
    """A pipeline of `steps` on one openai provider `p` (settings from `provider`)."""
    providers = {"p": {"kind": "openai", "model": "m1", **provider}}
    project.pipeline(json.dumps({"version": 1, "providers": providers, "steps": steps}))


def llm(prompt: str, output: str) -> dict[str, str]:
    return {"prompt": prompt, "output": output}


def the_failure(project: Project, *args: str) -> dict[str, str]:
    """The one failure a build that must fail records (kind, message)."""
    build = project.orch("build", *args)
    assert build.exit_code == 1, build.stdout + build.stderr
    (found,) = build.manifest()["failures"]
    return {"kind": str(found["kind"]), "message": str(found["message"])}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_dropped_connection_says_the_connection_failed_not_that_it_timed_out(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.always(DROP)
    write_orch(project, {"a": llm("say a", "out/a.md")}, base_url=llm_server.openai_url,
               max_retries=0)  # fmt: skip
    found = the_failure(project)
    assert found["kind"] == "connection"
    where = llm_server.openai_url
    assert found["message"].startswith(f"the connection to {where} failed: Server disconnected")
    assert "within" not in found["message"]


def test_a_refused_connection_says_it_cannot_connect(project: Project) -> None:
    port = closed_port()
    write_orch(project, {"a": llm("say a", "out/a.md")}, base_url=f"http://127.0.0.1:{port}/v1",
               max_retries=0)  # fmt: skip
    found = the_failure(project)
    assert found["kind"] == "connection"
    assert found["message"].startswith(f"cannot connect to http://127.0.0.1:{port}/v1: ")


def test_a_silent_server_times_out_after_timeout_s_and_the_key_stays_out_of_the_message(
    project: Project, llm_server: LlmServer, monkeypatch: Any
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-transport-secret")
    llm_server.always(slow(5))
    base = llm_server.openai_url.replace("http://", "http://user:sk-transport-secret@")
    write_orch(project, {"a": llm("say a", "out/a.md")}, base_url=base, timeout_s=0.3,
               max_retries=0)  # fmt: skip
    found = the_failure(project)
    assert found["kind"] == "timeout"
    assert "within 0.3 s" in found["message"]
    assert "sk-transport-secret" not in json.dumps(found)


def test_many_calls_at_once_all_get_their_own_reply(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.latency = 0.05
    steps = {f"s{i}": llm(f"hello {i}", f"out/{i}.md") for i in range(40)}
    write_orch(project, steps, base_url=llm_server.openai_url, max_concurrency=20)
    build = project.orch("build", "-j", "40")
    assert build.exit_code == 0, build.stdout + build.stderr
    assert [project.read(f"out/{i}.md") for i in range(40)] == [
        f"echo: hello {i}" for i in range(40)
    ]
    assert len(build.events("llm.response")) == 40


def test_a_killed_build_has_written_every_event_of_its_finished_steps_and_the_call_in_flight(
    project: Project, llm_server: LlmServer
) -> None:
    llm_server.script_for("say b", slow(30))
    steps = {"a": llm("say a", "out/a.md"), "b": llm("say b", "out/b.md")}
    write_orch(project, steps, base_url=llm_server.openai_url)
    before = project.run_folders()
    process = project.spawn("build", "-j", "1")
    run = project.wait_for_run(before, process)
    llm_server.wait_for_count(2)  # a is done; b's request is waiting on the server
    project.wait_for_event(run, "llm.request", "b", process)  # flushed while the call waits

    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=15)
    events = read_events(run)
    of_a = [e["type"] for e in events if e["step"] == "a"]
    assert of_a[-1] == "step.succeeded"
    assert {"step.started", "llm.request", "llm.response", "file.written"} <= set(of_a)
    assert [e["type"] for e in events if e["step"] == "b"][-1] == "llm.request"
    assert wait_for(lambda: project.exists("out/a.md"), what="a's output")
