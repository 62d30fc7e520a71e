"""The pipeline's environment as loading sees it, remembering what was read of it.

A saved plan depends on the environment only through what loading the pipeline read: the
variables looked up by name (`env.HOME`, `env.get('CI')`, a provider's key variable), or all of
them when something went through the whole environment (`env | list`, `env.items()`). The
saved plan keeps a digest of each such value, so that a variable nothing read can change (as CI
changes many on every run) without compiling the pipeline again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class TrackedEnv(Mapping[str, str]):
    """A read-only environment that records the names looked up in it (`names`), and whether
    it was gone through as a whole (`whole`)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.names: set[str] = set()
        self.whole = False

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.names.add(name)
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        self.whole = True
        return iter(self._values)

    def __len__(self) -> int:
        self.whole = True
        return len(self._values)

    def __repr__(self) -> str:
        self.whole = True  # `{{ env }}` shows every variable
        return repr(self._values)
