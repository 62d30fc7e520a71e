"""Advice on common YAML mistakes: one sentence for a parser error whose words do not say what
to change (an unquoted `{{ … }}`, a tab, a missing colon, an unquoted `: ` in a value, …)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNQUOTED_JINJA = re.compile(r"(?:^\s*(?:-\s+)?|:\s+|[\[,]\s*)(\{[{%])")
_KEY_COLON = re.compile(r":(?:\s|$)")
_BLOCK_SCALAR = re.compile(r":\s*[|>][-+0-9]*\s*(?:#.*)?$")
_CANNOT_START = re.compile(r"found character '(.)' that cannot start any token")
_TOKEN_END = re.compile(r"[\s,\]}]")
_CLOSING = {"{{": "}}", "{%": "%}"}


def at_context(found: YamlProblem) -> bool:
    """Whether the context mark shows the mistake better than the problem mark: the key that
    has no colon, or the quote that is never closed (rather than the end of the file)."""
    if found.context_line is None:
        return False
    missing_colon = "could not find expected ':'" in found.problem
    return missing_colon or _unclosed_quote([], "", found) is not None


@dataclass(frozen=True)
class YamlProblem:
    """What the YAML parser said, and where (0-based lines and columns; None when unknown)."""

    problem: str
    line: int | None
    column: int | None
    context: str = ""
    context_line: int | None = None
    context_column: int | None = None


def hint(text: str, found: YamlProblem) -> str | None:
    """One sentence on how to fix the mistake behind `found` in `text`, if it is a known one."""
    lines = text.splitlines()
    here = _line(lines, found.line)
    for rule in (
        _jinja,
        _tab,
        _missing_colon,
        _mapping_value,
        _quote_first,
        _unclosed_quote,
        _block_end,
    ):
        advice = rule(lines, here, found)
        if advice is not None:
            return advice
    return None


def _line(lines: list[str], number: int | None) -> str:
    return lines[number] if number is not None and 0 <= number < len(lines) else ""


def _jinja(lines: list[str], here: str, found: YamlProblem) -> str | None:
    """`output: {{ name }}.txt`: YAML reads `{` as the start of a mapping."""
    for line in (here, _line(lines, found.context_line)):
        match = _UNQUOTED_JINJA.search(line)
        if match and not _inside_quotes(line, match.start(1)):
            opening = match[1]
            return (
                f"a value that starts with {opening} must be quoted:"
                f' "{opening} … {_CLOSING[opening]}"'
            )
    return None


def _inside_quotes(line: str, column: int) -> bool:
    """Whether `column` of `line` stands inside a quoted value that opened before it."""
    before = line[:column]
    return before.count('"') % 2 == 1 or before.count("'") % 2 == 1


def _tab(lines: list[str], here: str, found: YamlProblem) -> str | None:
    if "'\\t'" not in found.problem:
        return None
    indentation = here[: len(here) - len(here.lstrip())]
    if "\t" in indentation:
        return "YAML does not allow tabs for indentation; use spaces"
    return "YAML does not allow a tab here; use spaces"


def _missing_colon(lines: list[str], here: str, found: YamlProblem) -> str | None:
    """`could not find expected ':'`: a key without its colon, or the text of a `|` block
    that is not indented under its key (YAML then reads it as a key)."""
    if "could not find expected ':'" not in found.problem:
        return None
    before = _line(lines, found.context_line - 1) if found.context_line else ""
    if _BLOCK_SCALAR.search(before):
        return "the lines of a | or > block must be indented more than its key"
    return "a key needs a colon after it"


def _mapping_value(lines: list[str], here: str, found: YamlProblem) -> str | None:
    """`mapping values are not allowed here`: a second `: ` on a line, or a line that goes on
    the one above because that one has no colon."""
    if "mapping values are not allowed" not in found.problem or found.column is None:
        return None
    colon = _KEY_COLON.search(here[: found.column])
    if colon is None:
        return "a key needs a colon after it; the line above has none (or no space after it)"
    key, value = here[: colon.start()].strip(), here[colon.end() :].strip()
    example = f'{key}: "{value}"' if '"' not in value else 'key: "text: more text"'
    return f'a value that contains ": " must be quoted: {example}'


def _quote_first(lines: list[str], here: str, found: YamlProblem) -> str | None:
    """A value starting with a character YAML reserves: `*` (an alias), `!` (a tag), `@`, `` ` ``
    or `%`."""
    if found.problem.startswith("found undefined alias") and found.column is not None:
        token = _TOKEN_END.split(here[found.column :], maxsplit=1)[0]
        return f'a value that starts with * must be quoted: "{token}"'
    if found.problem.startswith("could not determine a constructor for the tag"):
        return "a value that starts with ! must be quoted"
    match = _CANNOT_START.search(found.problem)
    if match:
        return f"a value that starts with {match[1]} must be quoted"
    return None


def _unclosed_quote(lines: list[str], here: str, found: YamlProblem) -> str | None:
    if "end of stream" in found.problem and "quoted scalar" in found.context:
        return "this quote is never closed"
    return None


def _block_end(lines: list[str], here: str, found: YamlProblem) -> str | None:
    """`expected <block end>`: a key indented unlike its neighbours, or text after a quote."""
    if not found.problem.startswith("expected <block end>") or found.column is None:
        return None
    if "<block mapping start>" in found.problem:
        return "the keys of one mapping must start in the same column"
    if "<scalar>" in found.problem and here[: found.column].rstrip().endswith(("'", '"')):
        return "text follows a closing quote; quote the whole value"
    return None
