"""The light paths stay light: a no-op build (saved plan, everything up to date), `orch status`
and `orch --version` import none of the heavy dependencies, read from `python -X importtime`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.buildkit import Project

HEAVY = ("pydantic", "jinja2", "ruamel", "networkx", "httpx", "asyncio")
"""Needed only to compile a plan (pydantic, jinja2, ruamel, networkx) or to run a step (asyncio,
httpx). No exception is needed: when every step is up to date the runner starts no event loop."""

PIPELINE = """\
version: 1
name: light
providers:
  offline: { kind: fake, echo: true }
steps:
  a:
    run: mkdir -p out && echo a > out/a.txt
    output: out/a.txt
  b:
    inputs: [out/a.txt]
    run: cat out/a.txt > out/b.txt
    output: out/b.txt
  c:
    inputs: [out/b.txt]
    run: cat out/b.txt out/b.txt > out/c.txt
    output: out/c.txt
  page:
    inputs: [out/c.txt]
    template: "c says {{ read('out/c.txt') | upper }}"
    output: out/page.txt
  summary:
    inputs: [out/page.txt]
    prompt: "Summarise {{ read('out/page.txt') }}"
    output: out/summary.md
"""


def importers(report: str) -> dict[str, str]:
    """Each top-level package imported, with the chain that imported it first
    (`asyncio <- orchestrator.engine.runner <- orchestrator.engine.build`), from an
    `-X importtime` report.

    The report lists a module after the modules it imports, one level deeper."""
    rows = []
    for line in report.splitlines():
        if line.startswith("import time:") and not line.endswith("| imported package"):
            name = line.rsplit("|", 1)[1]
            rows.append((len(name) - len(name.lstrip()), name.strip()))
    found: dict[str, str] = {}
    for index, (depth, name) in enumerate(rows):
        chain = [name]
        for outer, parent in rows[index + 1 :]:
            if outer < depth:
                chain.append(parent)
                depth = outer
        package = name.split(".", 1)[0]
        if package not in found or name == package:
            found[package] = " <- ".join(chain)
    return found


def orch(project: Project, *args: str) -> tuple[str, dict[str, str]]:
    """Run `python -X importtime -m orchestrator ARGS`; its stdout and what it imported.

    A saved plan is only reused in the same environment: pytest's `PYTEST_CURRENT_TEST`, which
    differs between a fixture and its test, is left out."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", *args],
        cwd=project.root,
        env={**env, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, importers(result.stderr)


def assert_none_of(modules: tuple[str, ...], imported: dict[str, str]) -> None:
    found = [imported[module] for module in modules if module in imported]
    assert not found, "imported " + "; ".join(found)


@pytest.fixture
def built(project: Project) -> Project:
    """The pipeline above, built once, so its plan is saved and its steps are up to date."""
    (project.root / "orch.yaml").write_text(PIPELINE, encoding="utf-8")
    out, imported = orch(project, "build")
    assert "5 ran" in out
    assert "asyncio" in imported  # the probe sees what a build that runs steps imports
    return project


def test_a_noop_build_imports_nothing_heavy(built: Project) -> None:
    out, imported = orch(built, "build")
    assert out.strip() == "all 5 steps up to date"
    assert_none_of(HEAVY, imported)


def test_status_imports_nothing_heavy(built: Project) -> None:
    out, imported = orch(built, "status")
    assert out.splitlines()[-1] == "all 5 steps up to date"
    assert_none_of(HEAVY, imported)


def test_version_imports_nothing_heavy_nor_click(project: Project) -> None:
    out, imported = orch(project, "--version")
    assert out.startswith("orch ")
    assert_none_of((*HEAVY, "click"), imported)


def test_package_inits_import_nothing_heavy() -> None:
    probe = "import orchestrator.providers, orchestrator.steps"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    assert_none_of(HEAVY, importers(result.stderr))


def test_importers_names_the_chain() -> None:
    report = textwrap.dedent("""\
        import time: self [us] | cumulative | imported package
        import time:        10 |         10 |     asyncio.events
        import time:        10 |         20 |   asyncio
        import time:        10 |         30 | orchestrator.engine.runner
        import time:        10 |         10 | json
    """)
    assert importers(report) == {
        "asyncio": "asyncio <- orchestrator.engine.runner",
        "orchestrator": "orchestrator.engine.runner",
        "json": "json",
    }
