"""`orch list`: the steps and foreach groups a pipeline declares, with their descriptions; and a
description that stays out of every key."""

from __future__ import annotations

import json

from .buildkit import Project

PIPELINE = """\
version: 1
vars:
  langs: [en, fr]
steps:
  fetch:
    description: Fetch the list of pages.
    inputs: [pages.src.json]
    run: cp pages.src.json pages.json
    output: pages.json
  page:
    description: Render one page.
    foreach: "{{ langs }}"
    template: "{{ item }}"
    output: "out/{{ item }}.txt"
  draft:
    description: Draft each page named in pages.json.
    foreach: { rows: pages.json, key: name }
    run: echo {{ item.name }} > drafts/{{ item.name }}.txt
    output: "drafts/{{ item.name }}.txt"
  publish:
    needs: [page]
    run: "true"
  preview:
    description: Serve the pages.
    default: false
    inputs: [out/en.txt]
    run: "true"
"""


def written(project: Project, pipeline: str = PIPELINE) -> Project:
    """The project with the pipeline and the source of `fetch`."""
    project.write("pages.src.json", '[{"name": "a"}, {"name": "b"}, {"name": "c"}]')
    project.pipeline(pipeline)
    return project


def test_list_prints_steps_and_groups_aligned_in_declaration_order(project: Project) -> None:
    written(project)

    done = project.orch("list")

    assert done.exit_code == 0, done.stderr
    assert done.stdout == (
        "fetch    Fetch the list of pages.\n"
        "page     Render one page. (2 steps)\n"
        "draft    Draft each page named in pages.json. (foreach, planned after fetch)\n"
        "publish\n"
        "preview  Serve the pages. (not built by default)\n"
    )


def test_a_group_planned_from_an_output_names_its_writer_once_planned(project: Project) -> None:
    written(project)
    assert project.orch("build", "fetch").exit_code == 0

    done = project.orch("list")

    assert "draft    Draft each page named in pages.json. (3 steps, planned after fetch)\n" in (
        done.stdout
    )


def test_list_json_gives_each_entry_with_its_kind_default_and_members(project: Project) -> None:
    written(project)

    done = project.orch("list", "--json")

    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == [
        {
            "name": "fetch",
            "kind": "shell",
            "description": "Fetch the list of pages.",
            "default": True,
            "group": False,
        },
        {
            "name": "page",
            "kind": "template",
            "description": "Render one page.",
            "default": True,
            "group": True,
            "members": ["page@en", "page@fr"],
            "planned_after": [],
        },
        {
            "name": "draft",
            "kind": "shell",
            "description": "Draft each page named in pages.json.",
            "default": True,
            "group": True,
            "members": None,
            "planned_after": ["fetch"],
        },
        {"name": "publish", "kind": "shell", "description": None, "default": True, "group": False},
        {
            "name": "preview",
            "kind": "shell",
            "description": "Serve the pages.",
            "default": False,
            "group": False,
        },
    ]


def test_list_of_an_invalid_pipeline_is_a_usage_error(project: Project) -> None:
    project.pipeline("version: 1\nsteps:\n  a:\n    run: 'true'\n    descripton: x\n")

    done = project.orch("list")

    assert done.exit_code == 2
    assert done.stdout == ""
    assert "unknown key 'descripton' in step 'a'; did you mean 'description'?" in done.stderr


def test_changing_only_a_description_keeps_every_key(project: Project) -> None:
    written(project, PIPELINE.replace("Render one page.", "Render a page."))
    assert project.orch("build").exit_code == 0
    keys = {step: entry.key for step, entry in project.lock().items()}

    project.pipeline(PIPELINE.replace("Render one page.", "Render each page, in its language."))
    status = project.orch("status", "--check")

    assert status.exit_code == 0, status.stdout
    assert status.lines[-1] == "all 7 steps up to date"
    assert project.orch("build").stdout == "all 7 steps up to date\n"
    assert {step: entry.key for step, entry in project.lock().items()} == keys


def test_a_step_its_condition_removes_is_listed_as_removed(project: Project) -> None:
    project.pipeline(
        """\
        version: 1
        vars: {deploy: false}
        steps:
          build:
            run: "true"
          deploy:
            if: "{{ deploy }}"
            description: Deploy the site.
            run: "true"
        """
    )

    assert project.orch("list").stdout == (
        "build\ndeploy  Deploy the site. (removed by if: {{ deploy }} is false)\n"
    )
