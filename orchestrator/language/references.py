"""What a template can reach, found from its Jinja syntax tree without rendering it.

A content template (a command, a prompt, a template step's text) is rendered only when its step
runs, with the real contents of its inputs. Its key must still cover everything the rendering can
depend on, so the names it may read are found here, on every branch and loop, conservatively:

- free names that are read (``app``, ``item``, ``inputs``): each counts whole (Jinja also
  counts a name set on only some branches as free; it is left out where nothing reads it);
- ``env``, ``vars`` and ``steps`` count member by member when every use names a constant member
  (``env.HOME``, ``env['HOME']``, ``env.get('HOME')``, ``steps.build.output``); any other use
  (``env | list``, ``vars[name]``) counts the whole object;
- ``read('literal')`` calls, so that a path that is not a declared input is refused at plan time.

Every other free name, and ``vars``, also records the constant chains it is read through
(``train.n_est``, ``train['n_est']``, ``vars.train.get('lr')``), so that a step's key can take
only those values of a nested var. Anything else (``train``, ``train[x]``, ``train | tojson``,
``train.items()``, a loop over it) uses the whole value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

WHOLE = None
"""The members of an object used as a whole."""

MEMBERED = ("env", "vars", "steps")
UNCHAINED = frozenset({"env", "steps", "read"})
"""Names whose constant chains are not recorded (env and steps count by `members`)."""
_MAPPING_ATTRIBUTES = frozenset(dir(dict))
"""Attributes Jinja finds on a mapping before its keys: ``x.items`` is the method."""

Trie = dict[Any, "Trie"] | None
"""The parts of a value used: the keys used, each with the parts of its value; None: whole."""
_GUARDS_FILTERS = frozenset({"default", "d"})
_GUARDS_TESTS = frozenset({"defined", "undefined"})


@dataclass
class References:
    """The names a template (or several) may read."""

    names: set[str] = field(default_factory=set)
    """Free names: context names, vars, Jinja globals, and names not defined anywhere."""
    members: dict[str, set[str] | None] = field(default_factory=dict)
    """For `env`, `vars` and `steps`: the constant members used, or WHOLE."""
    reads: set[str] = field(default_factory=set)
    """Constant arguments of `read()` calls."""
    guarded: set[str] = field(default_factory=set)
    """Free names tested with `is defined` or given a `default`: they may be undefined."""
    assigned: set[str] = field(default_factory=set)
    """Free names the template also sets (on some branch): they may be undefined elsewhere."""
    paths: dict[str, Trie] = field(default_factory=dict)
    """For free names but env and steps: the parts of their value used through constant
    chains (``train.n_est``); a name missing here is used whole."""

    def update(self, other: References) -> None:
        """Add what another template reaches."""
        self.names |= other.names
        self.reads |= other.reads
        self.guarded |= other.guarded
        self.assigned |= other.assigned
        for name, used in other.members.items():
            self._add_members(name, used)
        for name, trie in other.paths.items():
            self.paths[name] = _union(self.paths[name], trie) if name in self.paths else trie

    def used(self, name: str) -> Trie:
        """The parts of a name's value the templates use (WHOLE unless only chains read it)."""
        return self.paths.get(name, WHOLE)

    def _add_path(self, name: str, path: tuple[Any, ...]) -> None:
        self.paths[name] = _with_path(self.paths.get(name, {}), path)

    def _add_members(self, name: str, used: set[str] | None) -> None:
        if name in self.members and self.members[name] is WHOLE:
            return
        if used is WHOLE:
            self.members[name] = WHOLE
            return
        known = self.members.setdefault(name, set())
        assert known is not None
        known |= used


def find_references(tree: Any) -> References:
    """The references of a parsed Jinja template (`Environment.parse`)."""
    from jinja2 import meta, nodes

    free = set(meta.find_undeclared_variables(tree))
    loaded = {name.name for name in tree.find_all(nodes.Name) if name.ctx == "load"}
    found = References(names=free & loaded)
    found.assigned = {
        name.name for name in tree.find_all(nodes.Name) if name.ctx != "load"
    } & found.names
    parents: dict[int, Any] = {}
    for node, parent, grandparent in _walk(tree, None, None):
        parents[id(node)] = parent
        _note(found, node, parent, grandparent)
        if _chained(node, found):
            found._add_path(node.name, _chain(node, parents))
    return found


def _chained(node: Any, found: References) -> bool:
    """Whether `node` reads a name whose constant chains are recorded."""
    from jinja2 import nodes

    return (
        isinstance(node, nodes.Name)
        and node.ctx == "load"
        and node.name in found.names
        and node.name not in UNCHAINED
    )


def _chain(node: Any, parents: dict[int, Any]) -> tuple[Any, ...]:
    """The constant keys a name is read through: ``train.n_est`` → ('n_est',)."""
    from jinja2 import nodes

    path: list[Any] = []
    current = node
    while True:
        parent = parents.get(id(current))
        if isinstance(parent, nodes.Getattr) and parent.node is current:
            if parent.attr in _MAPPING_ATTRIBUTES:
                if parent.attr == "get":
                    argument = _constant_argument(parent, parents.get(id(parent)))
                    path.extend(() if argument is None else (argument,))
                return tuple(path)
            path.append(parent.attr)
        elif isinstance(parent, nodes.Getitem) and parent.node is current:
            key = parent.arg
            if not isinstance(key, nodes.Const) or type(key.value) not in (str, int):
                return tuple(path)
            path.append(key.value)
        else:
            return tuple(path)
        current = parent


def _with_path(trie: Trie, path: tuple[Any, ...]) -> Trie:
    if trie is WHOLE or not path:
        return WHOLE
    head, rest = path[0], path[1:]
    return {**trie, head: _with_path(trie.get(head, {}), rest)}


def _union(one: Trie, other: Trie) -> Trie:
    if one is WHOLE or other is WHOLE:
        return WHOLE
    keys = {**one, **other}
    return {k: _union(one[k], other[k]) if k in one and k in other else keys[k] for k in keys}


def _walk(node: Any, parent: Any, grandparent: Any) -> Iterator[tuple[Any, Any, Any]]:
    yield node, parent, grandparent
    for child in node.iter_child_nodes():
        yield from _walk(child, node, parent)


def _note(found: References, node: Any, parent: Any, grandparent: Any) -> None:
    from jinja2 import nodes

    if not isinstance(node, nodes.Name) or node.ctx != "load" or node.name not in found.names:
        return
    if _is_guard(node, parent):
        found.guarded.add(node.name)
    if node.name == "read" and isinstance(parent, nodes.Call) and parent.node is node:
        argument = parent.args[0] if parent.args else None
        if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
            found.reads.add(argument.value)
    if node.name in MEMBERED:
        member = _constant_member(node, parent, grandparent)
        found._add_members(node.name, WHOLE if member is None else {member})


def _is_guard(node: Any, parent: Any) -> bool:
    from jinja2 import nodes

    if isinstance(parent, nodes.Filter) and parent.node is node:
        return parent.name in _GUARDS_FILTERS
    if isinstance(parent, nodes.Test) and parent.node is node:
        return parent.name in _GUARDS_TESTS
    return False


def _constant_member(node: Any, parent: Any, grandparent: Any) -> str | None:
    """`x.name`, `x['name']` and `x.get('name')`: the member name; else None."""
    from jinja2 import nodes

    if isinstance(parent, nodes.Getattr) and parent.node is node:
        if parent.attr == "get" and getattr(node, "name", None) != "steps":
            return _constant_argument(parent, grandparent)
        return str(parent.attr)
    if isinstance(parent, nodes.Getitem) and parent.node is node:
        argument = parent.arg
        if isinstance(argument, nodes.Const) and isinstance(argument.value, str | int):
            return str(argument.value)
    return None


def _constant_argument(method: Any, call: Any) -> str | None:
    """The constant first argument of ``x.get('name', ...)``; None when it is not one."""
    from jinja2 import nodes

    if not isinstance(call, nodes.Call) or call.node is not method or not call.args:
        return None
    argument = call.args[0]
    return (
        argument.value
        if isinstance(argument, nodes.Const) and isinstance(argument.value, str)
        else None
    )
