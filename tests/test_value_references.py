"""A content template's key takes only the parts of a nested var it reads through constant
chains (`train.n_est`, `train['lr']`, `vars.train.get('lr')`); any other use takes the whole var.

The property: rendering with only the restricted scope gives the text rendering with every var
gives, so a value left out of the key cannot change what the step writes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.errors import TemplateError
from orchestrator.language.content import FullScope, key_material
from orchestrator.language.references import WHOLE, Trie
from orchestrator.language.templating import Renderer

RENDERER = Renderer()


def used(template: str, name: str = "train") -> Trie:
    return RENDERER.references(template).used(name)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ train.n_est }}", {"n_est": WHOLE}),
        ("{{ train['n_est'] }}", {"n_est": WHOLE}),
        ("{{ train.opt.lr }} {{ train.n_est }}", {"opt": {"lr": WHOLE}, "n_est": WHOLE}),
        ("{{ train.opt.lr }} {{ train.opt }}", {"opt": WHOLE}),
        ("{{ train.get('lr', 1) }}", {"lr": WHOLE}),
        ("{{ train[0] }}", {0: WHOLE}),
        ("{{ train.n_est | int + 1 }}", {"n_est": WHOLE}),
        ("{% if train.a is defined %}{{ train.a }}{% endif %}", {"a": WHOLE}),
        ("{% for x in train.layers %}{{ x }}{% endfor %}", {"layers": WHOLE}),
        ("{{ train.opt[key] }}", {"opt": WHOLE}),
    ],
)
def test_constant_chains_keep_only_their_values(template: str, expected: Trie) -> None:
    assert used(template) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ train }}",
        "{{ train | tojson }}",
        "{{ train[key] }}",
        "{{ train.n_est }} {{ train | length }}",
        "{% for k in train %}{{ k }}{% endfor %}",
        "{% for k, v in train.items() %}{{ k }}={{ v }}{% endfor %}",
        "{{ train.keys() | list }}",
        "{{ train.get(key) }}",
        "{% set t = train %}{{ t.n_est }}",
        "{{ train[1:] }}",
        "{{ 'x' in train }}",
    ],
)
def test_any_other_use_takes_the_whole_value(template: str) -> None:
    assert used(template) is WHOLE


def test_chains_under_vars_keep_only_their_values() -> None:
    assert used("{{ vars.train.n_est }} {{ vars['seed'] }}", "vars") == {
        "train": {"n_est": WHOLE},
        "seed": WHOLE,
    }
    assert used("{{ vars.items() | list }}", "vars") is WHOLE


# --------------------------------------------------------------------------- the property

VALUES: dict[str, Any] = {
    "train": {"n_est": 10, "lr": 0.1, "opt": {"lr": 0.5, "name": "adam"}, "layers": [1, 2]},
    "seed": 3,
}
EXPRESSIONS = [
    "train.n_est",
    "train['lr']",
    "train.opt.lr",
    "train.opt['name']",
    "train.get('missing', 'none')",
    "train.layers | join(',')",
    "train.layers[0]",
    "train[which]",
    "train.opt[inner]",
    "train | tojson",
    "train.opt | dictsort | list",
    "train | length",
    "vars.train.opt.name",
    "vars.seed",
    "vars | length",
    "train.opt.keys() | list",
]
BLOCKS = st.one_of(
    st.sampled_from(EXPRESSIONS).map(lambda e: "{{ " + e + " }}"),
    st.sampled_from(EXPRESSIONS).map(lambda e: "{% for x in [" + e + "] %}[{{ x }}]{% endfor %}"),
    st.just("{% for k, v in train.opt.items() %}{{ k }}:{{ v }};{% endfor %}"),
    st.just("{% if train.n_est > 5 %}big{% else %}{{ seed }}{% endif %}"),
    st.just(" "),
)
EDITS = st.sampled_from(
    [
        ("train", "n_est", 20),
        ("train", "lr", 0.2),
        ("opt", "lr", 0.7),
        ("opt", "name", "sgd"),
        ("opt", "beta", 0.9),
        ("train", "layers", [3]),
        ("seed", None, 4),
    ]
)


def _edited(values: dict[str, Any], edit: tuple[str, str | None, Any]) -> dict[str, Any]:
    where, key, value = edit
    train = {**values["train"], "opt": dict(values["train"]["opt"])}
    if where == "seed":
        return {**values, "seed": value}
    (train if where == "train" else train["opt"])[key] = value
    return {**values, "train": train}


def _scope(values: dict[str, Any], refs: Any) -> dict[str, Any]:
    full = FullScope(values, {}, {}, lambda _: [], None, None, (), ())
    return full.restrict(refs)


def _render(template: str, context: dict[str, Any]) -> str:
    try:
        return RENDERER.render(template, context)
    except TemplateError as exc:
        return f"error: {exc}"


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(BLOCKS, min_size=1, max_size=4),
    edits=st.lists(EDITS, max_size=3),
    which=st.sampled_from(["n_est", "lr", "opt"]),
    inner=st.sampled_from(["lr", "name"]),
)
def test_the_restricted_scope_renders_what_every_var_renders(
    blocks: list[str], edits: list[tuple[str, str | None, Any]], which: str, inner: str
) -> None:
    template = "".join(blocks)
    values = {**VALUES, "which": which, "inner": inner}
    for edit in edits:
        values = _edited(values, edit)
    refs = RENDERER.references(template)
    full = {**values, "vars": values}
    assert _render(template, _scope(values, refs)) == _render(template, full)


@settings(max_examples=150, deadline=None)
@given(blocks=st.lists(BLOCKS, min_size=1, max_size=4), edit=EDITS)
def test_an_edit_that_keeps_the_key_keeps_the_text(
    blocks: list[str], edit: tuple[str, str | None, Any]
) -> None:
    template = "".join(blocks)
    before = {**VALUES, "which": "lr", "inner": "name"}
    after = _edited(before, edit)
    refs = RENDERER.references(template)
    if key_material(_scope(before, refs)) == key_material(_scope(after, refs)):
        assert _render(template, {**before, "vars": before}) == _render(
            template, {**after, "vars": after}
        )
