"""Request options across provider kinds, custom headers, Azure OpenAI, `OLLAMA_HOST` and base
URLs with a query, against the real loopback server of `tests/llm_server.py`: what each request
looked like when it reached the server, and what orch kept of it.

Request bodies are checked against the JSON Schemas in `tests/request_schemas/` (their sources are
named in each file's `$comment`): OpenAI's chat request as its official OpenAPI file gives it,
and closed schemas of each kind's documented fields."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from orchestrator.language.options import COMMON, moved, translate
from orchestrator.language.spec import AzureProvider
from orchestrator.providers.azure import AzureWire
from orchestrator.providers.config import ollama_host
from orchestrator.providers.wire import join

from .buildkit import Build, Project
from .llm_server import LlmServer, status
from .test_providers import llm, ok, provider, write_orch

SCHEMAS = Path(__file__).parent / "request_schemas"
SCHEMA_OF = {
    "openai": "openai_chat.json",
    "azure": "openai_chat.json",
    "anthropic": "anthropic_messages.json",
    "ollama": "ollama_chat.json",
}
COMMON_VALUES: dict[str, Any] = {
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "max_tokens": 64,
    "stop": ["END"],
    "seed": 7,
    "frequency_penalty": 0.1,
    "presence_penalty": 0.2,
    "response_format": {"type": "json_object"},
}
"""A value of every common option."""


OFFICIAL = {"openai": "openai_chat_official.json", "azure": "openai_chat_official.json"}
"""Request schemas taken from a provider's official OpenAPI file, checked on top of the
closed ones above (the official ones let unknown fields through)."""


def valid_body(kind: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """`body`, after checking it against the request schemas of `kind`."""
    assert body is not None
    for name in (SCHEMA_OF[kind], OFFICIAL.get(kind)):
        if name is None:
            continue
        schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
        assert not errors, f"{kind} body {body} is not valid against {name}: {errors}"
    return body


def exit_2(build: Build) -> Build:
    assert build.exit_code == 2, build.stdout + build.stderr
    return build


def every_file_text(root: Path, leaving_out: Path | None = None) -> str:
    """The text of every file orch wrote under `root`: outputs, the lock, runs, events, logs,
    the cache (everything but the pipeline, and but the folder `leaving_out`)."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name != "orch.yaml"
        and (leaving_out is None or not p.is_relative_to(leaving_out))
    ]
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in files)


# --------------------------------------------------------------------------- translation


EXPECTED: dict[str, dict[str, Any]] = {
    "openai": {name: COMMON_VALUES[name] for name in COMMON if name != "top_k"},
    "anthropic": {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 64,
        "stop_sequences": ["END"],
    },
    "ollama": {
        "options": {
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "num_predict": 64,
            "stop": ["END"],
            "seed": 7,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
        }
    },
}
"""The fields each kind's request has for the common options it honours."""
HONOURED = {
    "openai": [name for name in COMMON if name != "top_k"],
    "anthropic": ["temperature", "top_p", "top_k", "max_tokens", "stop"],
    "ollama": [name for name in COMMON if name != "response_format"],
}
"""The common options each kind honours (`top_k` is not an OpenAI field, though compatible
servers take it as it is)."""


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_every_common_option_reaches_the_server_under_the_kinds_name(
    project: Project, llm_server: LlmServer, kind: str
) -> None:
    options = {name: COMMON_VALUES[name] for name in HONOURED[kind]}
    write_orch(
        project, {"a": llm("hi", "a.md", options=options)}, {"p": provider(llm_server, kind)}
    )
    ok(project.orch("build"))

    (request,) = llm_server.requests
    body = valid_body(kind, request.body)
    for field, value in EXPECTED[kind].items():
        assert body[field] == value, field
    assert "max_tokens" not in body.get("options", {})


def test_a_single_stop_text_is_sent_to_anthropic_as_a_list(
    project: Project, llm_server: LlmServer
) -> None:
    options = {"stop": "END"}
    write_orch(
        project, {"a": llm("hi", "a.md", options=options)}, {"p": provider(llm_server, "anthropic")}
    )
    ok(project.orch("build"))
    body = valid_body("anthropic", llm_server.requests[0].body)
    assert body["stop_sequences"] == ["END"] and "stop" not in body


def test_ollama_top_level_fields_stay_at_the_top_and_parameters_go_under_options(
    project: Project, llm_server: LlmServer
) -> None:
    top = {
        "format": "json",
        "keep_alive": "10m",
        "think": False,
        "truncate": True,
        "shift": False,
        "logprobs": True,
        "top_logprobs": 2,
    }
    options = {**top, "num_ctx": 8192, "min_p": 0.05, "temperature": 0}
    write_orch(
        project, {"a": llm("hi", "a.md", options=options)}, {"p": provider(llm_server, "ollama")}
    )
    ok(project.orch("build"))

    body = valid_body("ollama", llm_server.requests[0].body)
    assert {name: body[name] for name in top} == top
    assert body["options"] == {"num_ctx": 8192, "min_p": 0.05, "temperature": 0}
    assert body["stream"] is False


def test_kind_specific_options_pass_through_under_their_own_names(
    project: Project, llm_server: LlmServer
) -> None:
    anthropic = {
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u"},
    }
    openai = {"logit_bias": {"50256": -100}, "user": "u-1", "n": 1}
    write_orch(
        project,
        {
            "a": llm("hi", "a.md", provider="claude", options=anthropic),
            "b": llm("hi", "b.md", provider="gpt", options=openai),
        },
        {"claude": provider(llm_server, "anthropic"), "gpt": provider(llm_server, "openai")},
    )
    ok(project.orch("build"))

    bodies = {r.path: r.body for r in llm_server.requests}
    claude = valid_body("anthropic", bodies["/v1/messages"])
    assert {name: claude[name] for name in anthropic} == anthropic
    gpt = valid_body("openai", bodies["/v1/chat/completions"])
    assert {name: gpt[name] for name in openai} == openai


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kind", "option", "value", "says"),
    [
        ("anthropic", "seed", 1, "the Messages API has no seed"),
        ("anthropic", "response_format", {"type": "json_object"}, "use 'extract: json'"),
        ("anthropic", "presence_penalty", 0.5, "no presence penalty"),
        ("ollama", "logit_bias", {"1": 2}, "Ollama has no logit bias"),
        ("ollama", "response_format", {"type": "json_object"}, "use Ollama's 'format'"),
    ],
)
def test_an_option_the_kind_cannot_honour_stops_the_plan_at_the_option(
    project: Project, llm_server: LlmServer, kind: str, option: str, value: Any, says: str
) -> None:
    project.pipeline(
        f"""\
        version: 1
        providers:
          p: {{ kind: {kind}, model: m1, base_url: "{llm_server.url}" }}
        steps:
          a:
            prompt: hi
            output: a.md
            options:
              temperature: 0
              {option}: {json.dumps(value)}
        """
    )
    build = exit_2(project.orch("build"))

    where = re.search(
        r"orch\.yaml:(\d+):\d+: step 'a': option '(\w+)' is not supported by (\w+)", build.stderr
    )
    assert where is not None, build.stderr
    assert where.groups() == ("10", option, kind)
    assert says in build.stderr
    assert llm_server.count == 0
    assert not project.exists("a.md") and not project.exists("orch.lock")


def test_a_refused_option_in_the_provider_is_located_in_the_provider(
    project: Project, llm_server: LlmServer
) -> None:
    project.pipeline(
        f"""\
        version: 1
        providers:
          claude:
            kind: anthropic
            base_url: "{llm_server.url}"
            options: {{ seed: 3 }}
        steps:
          a: {{ prompt: hi, output: a.md, model: m1 }}
        """
    )
    build = exit_2(project.orch("validate"))
    assert "orch.yaml:6:5: provider 'claude', field 'options': option 'seed'" in build.stderr
    assert llm_server.count == 0


def test_a_common_option_and_the_kinds_own_name_for_it_are_not_both_accepted(
    project: Project, llm_server: LlmServer
) -> None:
    options = {"max_tokens": 10, "num_predict": 20}
    write_orch(
        project, {"a": llm("hi", "a.md", options=options)}, {"p": provider(llm_server, "ollama")}
    )
    build = exit_2(project.orch("build"))
    assert "'num_predict' is given too; keep one of the two" in build.stderr
    assert llm_server.count == 0


# --------------------------------------------------------------------------- switching


SWITCHED_PIPELINE = """\
version: 1
providers:
  openai: {{ kind: openai, model: m1, base_url: "{url}/v1" }}
  anthropic: {{ kind: anthropic, model: m1, base_url: "{url}" }}
  ollama: {{ kind: ollama, model: m1, base_url: "{url}" }}
default_provider: openai
steps:
  a:
    system: Be brief.
    prompt: Say hi.
    output: a.md
    options: {{ temperature: 0.2, top_p: 0.9, max_tokens: 50, stop: ["END"] }}
"""


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_orch_provider_switches_one_pipeline_between_kinds_with_valid_requests(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    project.pipeline(SWITCHED_PIPELINE.format(url=llm_server.url))
    monkeypatch.setenv("ORCH_PROVIDER", kind)
    ok(project.orch("build"))

    (request,) = llm_server.requests
    valid_body(kind, request.body)
    assert project.read("a.md") == "echo: Say hi."


# --------------------------------------------------------------------------- keys


def test_only_options_sent_elsewhere_than_before_record_where_they_go() -> None:
    assert moved("openai", {"temperature": 0, "max_tokens": 5, "stop": ["x"]}) == {}
    assert moved("ollama", {"temperature": 0, "num_ctx": 4096, "keep_alive": "5m"}) == {}
    assert moved("ollama", {"max_tokens": 5, "truncate": True}) == {
        "max_tokens": "options.num_predict",
        "truncate": "truncate",
    }
    assert moved("anthropic", {"max_tokens": 4096, "stop": "x"}) == {"stop": "stop_sequences"}


def test_translation_keeps_openai_options_as_written() -> None:
    assert translate("openai", COMMON_VALUES) == COMMON_VALUES
    assert translate("azure", COMMON_VALUES) == COMMON_VALUES


KEYED_BEFORE = {
    "o1": "4830afdc7fe757df85b1d357dcc692095d744e08a144fa607ccdddf2cd4a61aa",
    "a1": "8fe55c5a97dd1678b5bc2b51f12edc5d7a508586db8adc6a9aa011d34fa3f165",
    "l1": "e7eb4665718c4513f36c5bb788c8ec75bc43909bf9f4e8fb03f706f09bb13685",
    "l2": "b6a3f79eeab90df6e554ceb9c0aab77df6bbbf80f764dc4164f1dca1a3641bec",
}
"""The keys orch gave these steps before options were translated (a change of the key format
changes them all, on purpose)."""


def test_steps_keep_their_keys_unless_an_option_is_sent_elsewhere(
    project: Project, llm_server: LlmServer
) -> None:
    steps = {
        "o1": llm(
            "hi",
            "o1.md",
            provider="o",
            options={"temperature": 0, "max_tokens": 5, "stop": ["x"], "seed": 1},
        ),
        "a1": llm("hi", "a1.md", provider="a", options={"temperature": 0.5, "top_k": 3}),
        "l1": llm(
            "hi",
            "l1.md",
            provider="l",
            options={
                "temperature": 0,
                "num_ctx": 2048,
                "keep_alive": "5m",
                "seed": 3,
                "stop": ["x"],
            },
        ),
        "l2": llm("hi", "l2.md", provider="l", options={"max_tokens": 5}),
    }
    providers = {
        "o": provider(llm_server, "openai"),
        "a": provider(llm_server, "anthropic"),
        "l": provider(llm_server, "ollama"),
    }
    write_orch(project, steps, providers)
    ok(project.orch("build"))

    keys = {name: entry.key for name, entry in project.lock().items()}
    assert {name: keys[name] for name in ("o1", "a1", "l1")} == {
        name: KEYED_BEFORE[name] for name in ("o1", "a1", "l1")
    }
    assert keys["l2"] != KEYED_BEFORE["l2"]  # max_tokens is num_predict now: it runs again


# --------------------------------------------------------------------------- headers


def test_custom_headers_reach_the_server_and_nothing_orch_keeps(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORG_ID_FOR_TESTS", "org-secret-4242")
    headers = {
        "anthropic-beta": "beta-literal-7777",
        "OpenAI-Organization": {"env": "ORG_ID_FOR_TESTS"},
        "X-Unset": {"env": "NOT_SET_ANYWHERE"},
    }
    write_orch(project, {"a": llm("hi", "a.md")}, {"p": provider(llm_server, headers=headers)})
    ok(project.orch("build"))

    (request,) = llm_server.requests
    assert request.headers["anthropic-beta"] == "beta-literal-7777"
    assert request.headers["openai-organization"] == "org-secret-4242"
    assert "x-unset" not in request.headers
    assert project.exists("orch.lock") and project.exists(".orch")
    kept = every_file_text(project.root)
    for value in ("beta-literal-7777", "org-secret-4242"):
        assert value not in kept, value
    # The variable's name, as the pipeline writes it, is only in the saved plan's list of the
    # variables loading read (with a digest of the value, not the value).
    plans = project.root / ".orch" / "plans"
    assert "ORG_ID_FOR_TESTS" not in every_file_text(project.root, leaving_out=plans)


def test_a_header_from_the_environment_is_masked_in_error_messages(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORG_ID_FOR_TESTS", "org-secret-5151")
    llm_server.always(status(400, body={"error": {"message": "bad org org-secret-5151"}}))
    headers = {"OpenAI-Organization": {"env": "ORG_ID_FOR_TESTS"}}
    write_orch(project, {"a": llm("hi", "a.md")}, {"p": provider(llm_server, headers=headers)})
    build = project.orch("build")
    assert build.exit_code == 1
    assert "bad org ***" in build.stdout + json.dumps(build.manifest())
    assert "org-secret-5151" not in build.stdout + build.stderr
    assert "org-secret-5151" not in every_file_text(project.root)


def test_a_header_orch_sets_itself_is_refused(project: Project, llm_server: LlmServer) -> None:
    headers = {"Content-Type": "text/plain"}
    write_orch(project, {"a": llm("hi", "a.md")}, {"p": provider(llm_server, headers=headers)})
    build = exit_2(project.orch("validate"))
    assert "header 'Content-Type' is set by orch itself" in build.stderr


# --------------------------------------------------------------------------- azure


def test_azure_calls_the_deployment_with_the_api_version_and_key(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "az-key-1")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", llm_server.url)
    azure = {"kind": "azure", "model": "gpt4o-prod", "options": {"seed": 1, "max_tokens": 9}}
    write_orch(project, {"a": llm("hi", "a.md")}, {"az": azure})
    ok(project.orch("build"))

    (request,) = llm_server.requests
    assert request.path == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == "az-key-1"
    assert "authorization" not in request.headers
    body = valid_body("azure", request.body)
    assert (body["seed"], body["max_tokens"]) == (1, 9)
    assert project.read("a.md") == "echo: hi"
    assert "az-key-1" not in every_file_text(project.root)


def test_azure_deployment_and_api_version_given_in_the_pipeline(
    project: Project, llm_server: LlmServer
) -> None:
    azure = {
        "kind": "azure",
        "base_url": llm_server.url + "/",
        "model": "gpt-4o",
        "deployment": "team a",
        "api_version": "2025-01-01-preview",
    }
    write_orch(project, {"a": llm("hi", "a.md")}, {"az": azure})
    ok(project.orch("build"))
    path = llm_server.requests[0].path
    assert path == "/openai/deployments/team%20a/chat/completions?api-version=2025-01-01-preview"


def test_azure_without_an_address_is_refused_before_anything_runs(project: Project) -> None:
    write_orch(project, {"a": llm("hi", "a.md")}, {"az": {"kind": "azure", "model": "d"}})
    build = exit_2(project.orch("build"))
    assert "provider 'az' (azure) has no address" in build.stderr
    assert "AZURE_OPENAI_ENDPOINT" in build.stderr


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":1234", "http://127.0.0.1:1234"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:9000", "http://gpu-box:9000"),
        (" '1.2.3.4' ", "http://1.2.3.4:11434"),
        (":66000", "http://127.0.0.1:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::]", "http://[::1]:11434"),
        ("[::1]:1337", "http://[::1]:1337"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://1.2.3.4:4321", "https://1.2.3.4:4321"),
        ("https://example.com/ollama", "https://example.com:443/ollama"),
    ],
)
def test_ollama_host_is_read_as_ollama_reads_it(value: str, address: str) -> None:
    assert ollama_host(value) == address


@pytest.mark.parametrize("form", ["0.0.0.0:{port}", ":{port}"])
def test_ollama_host_without_an_address_reaches_the_loopback_server(
    project: Project, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    port = llm_server.url.rpartition(":")[2]
    monkeypatch.setenv("OLLAMA_HOST", form.format(port=port))
    write_orch(project, {"a": llm("hi", "a.md")}, {"p": {"kind": "ollama", "model": "m1"}})
    ok(project.orch("build"))
    assert llm_server.requests[0].path == "/api/chat"


def test_a_base_url_with_a_query_keeps_it_after_the_path(
    project: Project, llm_server: LlmServer
) -> None:
    gateway = provider(llm_server, base_url=llm_server.openai_url + "/?api-version=1&team=a")
    write_orch(project, {"a": llm("hi", "a.md")}, {"p": gateway})
    ok(project.orch("build"))
    assert llm_server.requests[0].path == "/v1/chat/completions?api-version=1&team=a"


def test_an_unquoted_api_version_is_read_as_written() -> None:
    azure = AzureProvider.model_validate({"kind": "azure", "api_version": date(2025, 1, 1)})
    assert azure.api_version == "2025-01-01"


def test_paths_are_appended_before_the_query_of_a_base_url() -> None:
    assert join("https://x/v1?api-version=1", "/chat/completions") == (
        "https://x/v1/chat/completions?api-version=1"
    )
    assert join("https://x/v1/", "/chat/completions") == "https://x/v1/chat/completions"
    azure = AzureWire("d", "2024-10-21")
    assert azure.url("https://r.example?api-version=2025-01-01&x=1", None) == (
        "https://r.example/openai/deployments/d/chat/completions?api-version=2025-01-01&x=1"
    )
