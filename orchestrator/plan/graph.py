"""The step graph: edges from paths and `needs`, its checks, target selection and drawings.

A step depends on another when one of its inputs may read what the other writes (the same
path, a folder holding it, or a glob reaching it), or when it `needs` it. Two steps writing
one path, a cycle, an unknown `needs` and an input that nothing produces and that does not
exist are errors, reported where the pipeline declares them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from orchestrator.core.errors import Diagnostic, PipelineError
from orchestrator.core.paths import (
    excluded,
    exists,
    is_dir,
    is_glob,
    name_of,
    reads_from,
    unescape,
)
from orchestrator.core.suggest import suggest

if TYPE_CHECKING:
    import networkx as nx

    from orchestrator.language.pipeline import LoadedPipeline, Step

    StepGraph = nx.DiGraph[str]


class OutputIndex:
    """Every declared output, searchable by path, by folder and by prefix.

    Two steps may not declare the same path; a step may write into a folder another declares.
    """

    def __init__(self, steps: Iterable[Step]) -> None:
        self.owner: dict[str, str] = {}
        self.conflicts: list[tuple[Step, str, str]] = []
        self.dirs: set[str] = set()
        for step in steps:
            self.dirs.update(path for path in step.outputs if is_dir(path))
            for output in step.outputs:
                other = self.owner.setdefault(output.rstrip("/"), step.id)
                if other != step.id:
                    self.conflicts.append((step, output, other))
        self.sorted = sorted(self.owner)

    def producers(self, input_path: str, excludes: Iterable[str] = ()) -> set[str]:
        """The steps whose outputs `input_path` may read, but for outputs `excludes` take out
        of a glob or folder input."""
        bare = unescape(input_path).rstrip("/")
        found = set()
        candidates = [bare, *_ancestors(bare)]
        if is_glob(input_path):
            prefix = _fixed_dir(input_path)
            bare_prefix = prefix.rstrip("/")
            candidates = [*_ancestors(bare_prefix), *self._under(prefix)]
            if bare_prefix:
                candidates.append(bare_prefix)
        elif is_dir(input_path):
            candidates.extend(self._under(unescape(input_path)))
        for candidate in candidates:
            owner = self.owner.get(candidate)
            if owner is None:
                continue
            output = candidate + "/" if candidate + "/" in self.dirs else candidate
            if reads_from(input_path, output) and not _taken_out(input_path, excludes, output):
                found.add(owner)
        return found

    def nested(self, step_id: str, outputs: Iterable[str]) -> tuple[str, ...]:
        """Other steps' outputs inside the given output folders of `step_id`."""
        found = {
            path
            for folder in outputs
            if is_dir(folder)
            for path in self._under(folder)
            if self.owner[path] != step_id
        }
        return tuple(sorted(found))

    def _under(self, prefix: str) -> Iterator[str]:
        start = bisect.bisect_left(self.sorted, prefix)
        for path in self.sorted[start:]:
            if not path.startswith(prefix):
                break
            yield path


def _taken_out(input_path: str, excludes: Iterable[str], output: str) -> bool:
    """Whether exclusions take all of `output` out of a glob or folder input: a file they
    match, or a folder inside one they name (a folder only partly excluded keeps its edge)."""
    if not excludes or not (is_glob(input_path) or is_dir(input_path)):
        return False
    if not is_dir(output):
        return excluded(excludes, output)
    return any(
        is_dir(folder) and not is_glob(folder) and output.startswith(unescape(folder))
        for folder in excludes
    )


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _fixed_dir(pattern: str) -> str:
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if is_glob(part):
            break
        fixed.append(unescape(part))
    return "/".join(fixed) + "/" if fixed else ""


def build(pipeline: LoadedPipeline, *, check_inputs: bool = True) -> StepGraph:
    """The DiGraph of a pipeline's steps (node attribute ``step``), or PipelineError.

    Missing inputs are not checked while a group waits for another step's output: the steps
    it will add may write them."""
    import networkx as nx

    check_inputs = check_inputs and not pipeline.deferred

    graph: StepGraph = nx.DiGraph()
    for step in pipeline.steps.values():
        graph.add_node(step.id, step=step)
    index = OutputIndex(pipeline.steps.values())
    diagnostics = [_conflict(pipeline, step, path, other) for step, path, other in index.conflicts]
    for step in pipeline.steps.values():
        diagnostics.extend(_add_path_edges(pipeline, graph, index, step, check_inputs))
        diagnostics.extend(_add_need_edges(pipeline, graph, step))
        _add_expansion_edges(graph, index, step)
    if diagnostics:
        raise PipelineError(diagnostics)
    _check_acyclic(pipeline, graph)
    return graph


def _conflict(pipeline: LoadedPipeline, step: Step, path: str, other: str) -> Diagnostic:
    return Diagnostic(
        f"steps '{other}' and '{step.id}' both write '{path}'",
        pipeline.source.locate(step.field_of(path)),
    )


def _add_path_edges(
    pipeline: LoadedPipeline, graph: StepGraph, index: OutputIndex, step: Step, check: bool
) -> list[Diagnostic]:
    problems = []
    for input_path in step.inputs:
        producers = index.producers(input_path, step.excludes)
        reads_own_output = step.id in producers
        if reads_own_output:
            problems.append(
                Diagnostic(
                    f"step '{step.id}' reads its own output '{name_of(input_path)}'"
                    f" (cycle: {step.id} -> {step.id})",
                    pipeline.source.locate(step.field_of(input_path)),
                )
            )
            producers.discard(step.id)
        for producer in producers:
            graph.add_edge(producer, step.id)
        if (
            check
            and input_path not in step.optional
            and not reads_own_output
            and not producers
            and not exists(pipeline.workdir, input_path)
        ):
            problems.append(
                Diagnostic(
                    f"step '{step.id}': input '{name_of(input_path)}' "
                    + ("matches no file" if is_glob(input_path) else "does not exist")
                    + " and no step produces it"
                    + _empty_needs(pipeline, step),
                    pipeline.source.locate(step.field_of(input_path)),
                )
            )
    return problems


def _empty_needs(pipeline: LoadedPipeline, step: Step) -> str:
    """Why an input may have no producer: a group the step needs gives no steps."""
    empty = [need for need in step.needs if pipeline.members(need) == ()]
    if not empty:
        return ""
    return (
        f" (the group '{empty[0]}' it needs gives no steps; mark the input `optional: true`"
        " if that can happen)"
    )


def _add_need_edges(pipeline: LoadedPipeline, graph: StepGraph, step: Step) -> list[Diagnostic]:
    problems = []
    for index, need in enumerate(step.needs):
        members = pipeline.members(need)
        problem = None
        if need in pipeline.removed:
            problem = (
                f"step '{step.id}' needs step '{need}', which is removed by its condition"
                f" ({pipeline.removed[need]})"
            )
        elif members is None:
            names = pipeline.names()
            problem = f"step '{step.id}' needs unknown step '{need}'{suggest(need, names)}"
        elif step.id in members:
            problem = f"step '{step.id}' needs itself"
        if problem is not None:  # locating takes the slower parse: only for errors
            where = pipeline.source.locate(("steps", step.group, "needs", index))
            problems.append(Diagnostic(problem, where))
        for member in members or ():
            if member != step.id:
                graph.add_edge(member, step.id)
    return problems


def _add_expansion_edges(graph: StepGraph, index: OutputIndex, step: Step) -> None:
    """A step planned from another step's output comes after it (its key does not hold that
    file: only what planning took from it)."""
    for path, _ in step.expands:
        for producer in index.producers(path) - {step.id}:
            graph.add_edge(producer, step.id)


def _check_acyclic(pipeline: LoadedPipeline, graph: StepGraph) -> None:
    import networkx as nx

    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    order = {name: i for i, name in enumerate(pipeline.steps)}
    names = [edge[0] for edge in cycle]
    start = min(range(len(names)), key=lambda i: order[names[i]])
    names = names[start:] + names[:start]
    first = pipeline.steps[names[0]]
    raise PipelineError.at(
        f"dependency cycle: {' -> '.join([*names, names[0]])}",
        pipeline.source.locate(first.field_of(""), key=True),
    )


# --------------------------------------------------------------------------- targets


def ordered(pipeline: LoadedPipeline, graph: StepGraph) -> list[str]:
    """Step ids in dependency order, ties broken by declaration order."""
    import networkx as nx

    position = {name: i for i, name in enumerate(pipeline.steps)}
    return list(nx.lexicographical_topological_sort(graph, key=lambda name: position[name]))


# --------------------------------------------------------------------------- drawings


def render(pipeline: LoadedPipeline, graph: StepGraph, fmt: str) -> str:
    """The graph as ``text``, ``mermaid``, ``dot`` or ``json``; a group not planned yet is one node
    `group@*`, after the steps whose outputs it expands from (a dashed edge)."""
    order = ordered(pipeline, graph)
    edges = [(dep, name) for name in order for dep in _sorted_preds(graph, name, order)]
    later = _later(pipeline)
    if fmt == "mermaid":
        return _mermaid(order, edges, later)
    if fmt == "dot":
        return _dot(pipeline.name, order, edges, later)
    if fmt == "json":
        return _json(pipeline, graph, order, later)
    return _text(graph, order, later)


def _json(pipeline: LoadedPipeline, graph: StepGraph, order: list[str], later: Later) -> str:
    """`{"pipeline", "steps": [{"id", "kind", "needs"}], "later": [{"group", "after"}]}`, the
    steps in dependency order, each with the steps it waits for."""
    import json

    steps = [
        {"id": name, "kind": pipeline.steps[name].kind, "needs": _sorted_preds(graph, name, order)}
        for name in order
    ]
    groups = [{"group": group, "after": after} for group, after in later]
    data = {"pipeline": pipeline.name, "steps": steps, "later": groups}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


Later = list[tuple[str, list[str]]]
"""Each group not planned yet, as the node `group@*`, and the steps it expands after."""


def _later(pipeline: LoadedPipeline) -> Later:
    index = OutputIndex(pipeline.steps.values())
    return [
        (f"{group}@*", sorted({p for path in paths for p in index.producers(path)}))
        for group, paths in pipeline.deferred.items()
    ]


def _sorted_preds(graph: StepGraph, name: str, order: list[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(order)}
    return sorted(graph.predecessors(name), key=rank.__getitem__)


def _text(graph: StepGraph, order: list[str], later: Later) -> str:
    width = max((len(name) for name in [*order, *(node for node, _ in later)]), default=0)
    lines = []
    for name in order:
        deps = _sorted_preds(graph, name, order)
        lines.append(f"{name:<{width}}  <- {', '.join(deps)}" if deps else name)
    for node, after in later:
        lines.append(f"{node:<{width}}  <- {', '.join(after)} (expands after them)")
    return "\n".join(lines) + "\n"


def _mermaid(order: list[str], edges: list[tuple[str, str]], later: Later) -> str:
    ids = {name: f"s{i}" for i, name in enumerate([*order, *(node for node, _ in later)])}
    lines = ["flowchart LR"]
    lines += [f'    {ids[name]}["{_mermaid_label(name)}"]' for name in ids]
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in edges]
    lines += [f"    {ids[a]} -.-> {ids[node]}" for node, after in later for a in after]
    return "\n".join(lines) + "\n"


def _mermaid_label(name: str) -> str:
    return (
        name.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def _dot(title: str, order: list[str], edges: list[tuple[str, str]], later: Later) -> str:
    lines = [f"digraph {_dot_id(title)} {{", "    rankdir=LR;", "    node [shape=box];"]
    lines += [f"    {_dot_id(name)};" for name in order]
    lines += [f"    {_dot_id(node)} [style=dashed];" for node, _ in later]
    lines += [f"    {_dot_id(a)} -> {_dot_id(b)};" for a, b in edges]
    lines += [
        f"    {_dot_id(a)} -> {_dot_id(node)} [style=dashed];"
        for node, after in later
        for a in after
    ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
