"""Typed values: `--set` reads VALUE as YAML, and a field that is one `{{ expression }}` keeps
the expression's type in vars and provider options.

A template step writes `{{ value | tojson }}`, so each test sees the type a var arrived with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.plan import saved as plancache

from .buildkit import Build, Project
from .llm_server import LlmServer

SHOW_VALUE = """\
    version: 1
    vars: { value: declared }
    steps:
      show: { template: "{{ value | tojson }}", output: value.json }
"""


def ok(build: Build) -> Build:
    assert build.exit_code == 0, build.stdout + build.stderr
    return build


def shown(project: Project, *args: str) -> Any:
    """The value of `value` as the pipeline sees it after `orch build ARGS`."""
    project.pipeline(SHOW_VALUE)
    ok(project.orch("build", *args))
    return json.loads(project.read("value.json"))


# --------------------------------------------------------------------------- --set


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[A, B]", ["A", "B"]),
        ("5", 5),
        ("2.5", 2.5),
        ("true", True),
        ("{a: 1, b: [x]}", {"a": 1, "b": ["x"]}),
        ("hello world", "hello world"),
        ("'5'", "5"),
        ("", ""),
        ("null", None),
        ("#fff", "#fff"),
        ("2024-05-01", "2024-05-01"),
    ],
)
def test_set_reads_its_value_as_yaml(project: Project, text: str, expected: Any) -> None:
    value = shown(project, "--set", f"value={text}")
    assert value == expected
    assert type(value) is type(expected)


def test_a_set_number_is_a_number_in_templates(project: Project) -> None:
    project.pipeline("""\
        version: 1
        vars: { n: 1 }
        steps:
          add: { run: "echo {{ n + 1 }} > sum.txt", output: sum.txt }
    """)
    ok(project.orch("build", "--set", "n=41"))
    assert project.read("sum.txt") == "42\n"


@pytest.mark.parametrize("text", ["[A, B", "{a: 1", "a: b: c", '"open'])
def test_invalid_yaml_in_set_is_a_usage_error(project: Project, text: str) -> None:
    project.pipeline(SHOW_VALUE)
    result = project.orch("build", "--set", f"value={text}")
    assert result.exit_code == 2
    assert result.stderr.startswith("--set value: the value is not valid YAML (")
    assert "Traceback" not in result.stdout + result.stderr
    assert not project.exists("value.json")
    assert not project.exists(".orch/runs")


def test_a_yaml_value_that_is_not_data_is_a_usage_error(project: Project) -> None:
    project.pipeline(SHOW_VALUE)
    result = project.orch("build", "--set", "value=!!binary aGk=")
    assert result.exit_code == 2
    assert "--set value: a YAML bytes cannot be a var" in result.stderr


FOREACH_SAMPLES = """\
    version: 1
    vars: { SAMPLES: [] }
    steps:
      count:
        foreach: "{{ SAMPLES }}"
        run: "echo {{ item }} >> runs.log && echo {{ item }} > {{ item }}.out"
        output: "{{ item }}.out"
"""


def test_foreach_over_a_set_list_gives_a_step_per_item(project: Project) -> None:
    project.pipeline(FOREACH_SAMPLES)
    first = ok(project.orch("build", "--set", "SAMPLES=[A, B]"))
    assert sorted(first.started()) == ["count@A", "count@B"]
    assert project.read("A.out") == "A\n"
    assert project.read("B.out") == "B\n"
    assert sorted(project.new_runs()) == ["A", "B"]

    ok(project.orch("build", "--set", "SAMPLES=[A, B, C]"))
    assert project.new_runs() == ["C"]
    assert ok(project.orch("status", "--check", "--set", "SAMPLES=[A, B, C]")).lines[-1] == (
        "all 3 steps up to date"
    )


def test_the_saved_plan_identity_follows_set_values_not_their_spelling(project: Project) -> None:
    project.pipeline(SHOW_VALUE)
    ok(project.orch("build", "--set", "value={b: 1, a: [x, y]}"))
    pipeline = Path("orch.yaml")
    reordered, identity = plancache.load(pipeline, {"value": {"a": ["x", "y"], "b": 1}}, None)
    assert reordered is not None, "a mapping in another order reuses the saved plan"
    _, again = plancache.load(pipeline, {"value": {"b": 1, "a": ["x", "y"]}}, None)
    assert again == identity
    _, as_text = plancache.load(pipeline, {"value": "{b: 1, a: [x, y]}"}, None)
    assert as_text != identity


# --------------------------------------------------------------------------- native vars


def test_a_var_that_is_one_expression_keeps_its_type(project: Project) -> None:
    project.pipeline("""\
        version: 1
        vars:
          n: 4
          double: "{{ n * 2 }}"
          items: "{{ [n, 'x'] }}"
          flags: "{{ {'on': n > 1} }}"
          label: "n={{ n }}"
          spaced: "  {{ n }}  "
          copied: ["{{ n }}", "{{ n }}!"]
        steps:
          show:
            template: "{{ [double + 1, items, flags, label, spaced, copied] | tojson }}"
            output: vars.json
    """)
    ok(project.orch("build"))
    assert json.loads(project.read("vars.json")) == [9, [4, "x"], {"on": True}, "n=4", 4, [4, "4!"]]


def test_foreach_over_a_computed_list_var(project: Project) -> None:
    project.pipeline(FOREACH_SAMPLES.replace("SAMPLES: []", "SAMPLES: \"{{ ['p', 'q'] }}\""))
    assert sorted(ok(project.orch("build")).started()) == ["count@p", "count@q"]


def test_a_set_value_replaces_a_computed_var_and_later_vars_see_its_type(project: Project) -> None:
    project.pipeline("""\
        version: 1
        vars: { n: "{{ 1 + 1 }}", next: "{{ n + 1 }}" }
        steps:
          show: { template: "{{ [n, next] | tojson }}", output: vars.json }
    """)
    ok(project.orch("build"))
    assert json.loads(project.read("vars.json")) == [2, 3]
    ok(project.orch("build", "--set", "n=10"))
    assert json.loads(project.read("vars.json")) == [10, 11]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("{{ range(3) }}", "var 'bad': the expression gives a range;"),
        ("{{ [missing] }}", "var 'bad': undefined variable 'missing'"),
    ],
)
def test_a_var_expression_that_gives_no_data_is_an_error(
    project: Project, expression: str, message: str
) -> None:
    project.pipeline(f"""\
        version: 1
        vars: {{ bad: "{expression}" }}
        steps:
          show: {{ template: "{{{{ bad }}}}", output: bad.txt }}
    """)
    result = project.orch("build")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not project.exists("bad.txt")


# --------------------------------------------------------------------------- provider options


def test_provider_options_from_vars_reach_the_server_as_json_numbers(
    project: Project, llm_server: LlmServer
) -> None:
    pipeline = {
        "version": 1,
        "vars": {"n": 64, "t": 0.5, "stop": ["END"]},
        "providers": {
            "local": {
                "kind": "openai",
                "model": "m1",
                "base_url": llm_server.openai_url,
                "max_retries": 0,
                "options": {
                    "max_tokens": "{{ n }}",
                    "temperature": "{{ t }}",
                    "stop": "{{ stop }}",
                    "user": "run-{{ n }}",
                },
            }
        },
        "steps": {"ask": {"prompt": "hello", "output": "reply.txt"}},
    }
    project.pipeline(json.dumps(pipeline))
    ok(project.orch("build"))
    ok(project.orch("build", "--set", "n=128"))
    first, second = llm_server.requests
    assert first.body is not None and second.body is not None
    assert (first.body["max_tokens"], first.body["temperature"]) == (64, 0.5)
    assert first.body["stop"] == ["END"]
    assert first.body["user"] == "run-64"
    assert second.body["max_tokens"] == 128
    assert type(second.body["max_tokens"]) is int


def test_step_options_and_model_from_vars_keep_their_types(
    project: Project, llm_server: LlmServer
) -> None:
    pipeline = {
        "version": 1,
        "vars": {"n": 32, "seed": 7},
        "providers": {
            "local": {"kind": "openai", "base_url": llm_server.openai_url, "max_retries": 0}
        },
        "steps": {
            "ask": {
                "prompt": "hello",
                "model": "m-{{ n }}",
                "options": {"max_tokens": "{{ n }}", "seed": "{{ seed }}"},
                "output": "reply.txt",
            }
        },
    }
    project.pipeline(json.dumps(pipeline))
    ok(project.orch("build"))
    (request,) = llm_server.requests
    assert request.body is not None
    assert (request.body["model"], request.body["max_tokens"], request.body["seed"]) == (
        "m-32",
        32,
        7,
    )
