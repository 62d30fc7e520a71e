"""A careless or hostile template fails with a clear error instead of hanging or eating memory."""

from __future__ import annotations

import pytest

from .buildkit import Project


def test_a_huge_repetition_is_refused_before_it_is_built(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          big:
            run: "echo {{ ([1] * 10**9) | length }}"
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert "repeating list 1000000000 times goes past the limit" in result.stdout


def test_a_huge_repetition_in_structure_is_a_located_error(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          many:
            foreach: "{{ ['a'] * 10**9 }}"
            run: "true"
        """
    )
    result = project.orch("validate")
    assert result.exit_code == 2
    assert "orch.yaml:4:14:" in result.stderr
    assert "ORCH_TEMPLATE_MAX_BYTES" in result.stderr


def test_a_template_that_gives_a_lone_surrogate_fails_its_step(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          page:
            template: '{{ "\\udfff" }}'
            output: page.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert "the template gives '\\udfff', a lone surrogate, not a character" in result.stdout


def test_a_huge_power_is_refused(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        steps:
          power:
            run: "echo {{ 10 ** 1000000 }}"
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert "the exponent 1000000 is too large" in result.stdout


def test_a_rendering_that_runs_too_long_stops(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_TEMPLATE_TIMEOUT_S", "0.2")
    project.pipeline(
        """\
        version: 1
        steps:
          slow:
            run: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert "the template took longer than 0.2 s (ORCH_TEMPLATE_TIMEOUT_S)" in result.stdout


def test_a_rendering_that_produces_too_much_stops(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_TEMPLATE_MAX_BYTES", "1000")
    project.pipeline(
        """\
        version: 1
        steps:
          long:
            template: "{% for i in range(300) %}{{ i }},{% endfor %}"
            output: long.txt
        """
    )
    result = project.orch("build")
    assert result.exit_code == 1
    assert "the template renders more than 1000 characters" in result.stdout
    assert not project.exists("long.txt")


def test_a_bad_limit_setting_is_a_usage_error(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_TEMPLATE_TIMEOUT_S", "soon")
    project.pipeline(
        """\
        version: 1
        steps:
          s:
            run: "echo {{ 1 }}"
        """
    )
    result = project.orch("validate")
    assert result.exit_code == 2
    assert "ORCH_TEMPLATE_TIMEOUT_S must be a positive float, not 'soon'" in result.stderr
