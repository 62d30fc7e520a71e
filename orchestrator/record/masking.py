"""Secret values kept out of what orch writes and shows, as CI systems mask them.

A secret is the value of an environment variable whose name matches one of the patterns in
`ORCH_SECRET_PATTERNS` (comma-separated shell globs, default `*_KEY,*_TOKEN,*_SECRET,*PASSWORD*`,
matched without regard to case), or of a variable a provider names in `api_key_env`. Every
occurrence of such a value in events, step logs and error messages becomes `***`. Values shorter
than four characters are left alone: masking `1` or `yes` would garble everything else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

MASK = "***"
PATTERNS_VARIABLE = "ORCH_SECRET_PATTERNS"
DEFAULT_PATTERNS = ("*_KEY", "*_TOKEN", "*_SECRET", "*PASSWORD*")
MIN_LENGTH = 4


def patterns(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The name patterns of secret variables: `ORCH_SECRET_PATTERNS`, else the defaults."""
    given = environ.get(PATTERNS_VARIABLE)
    if given is None:
        return DEFAULT_PATTERNS
    return tuple(part.strip().upper() for part in given.split(",") if part.strip())


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The values of the variables whose names match the secret patterns."""
    globs = patterns(environ)
    return [
        value
        for name, value in environ.items()
        if any(fnmatchcase(name.upper(), glob) for glob in globs)
    ]


class Masker:
    """Replaces every known secret value in text with `***`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Masker:
        """The secrets of an environment (the process's by default)."""
        return cls(secret_values(os.environ if environ is None else environ))

    def add(self, values: Iterable[str]) -> None:
        """Mask these values too (short ones excepted)."""
        new = {value for value in values if len(value) >= MIN_LENGTH} - self._values
        if not new:
            return
        self._values |= new
        ordered = sorted(self._values, key=len, reverse=True)  # a longer secret first
        self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """`text` with every secret replaced."""
        return text if self._pattern is None else self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """Every string inside nested lists and mappings masked."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value

    def file(self, path: Path) -> None:
        """Mask a finished log file in place, line by line (rewritten only if it held one)."""
        if self._pattern is None:
            return
        temp = path.with_name(f".{path.name}.masked")
        changed = False
        try:
            with path.open("rb") as source, temp.open("wb") as target:
                for line in source:
                    text = line.decode("utf-8", errors="surrogateescape")
                    masked = self.text(text)
                    changed = changed or masked != text
                    target.write(masked.encode("utf-8", errors="surrogateescape"))
            if changed:
                os.replace(temp, path)
        except OSError:
            pass
        finally:
            temp.unlink(missing_ok=True)
