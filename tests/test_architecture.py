"""docs/ARCHITECTURE.md stays a true map of the package: every module is in its module tree,
every file it names exists, and its exception tree is the one the code defines."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import orchestrator
from orchestrator.core.errors import OrchError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "orchestrator"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
TREE_HEADING = "## Exception tree"

PY_PATH = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.py)(?![\w/])")
"""A Python file named in the text: `orchestrator/store/digest.py`, `tests/x.py`, `cache.py`."""
PACKAGE_FOLDER = re.compile(r"(?<![\w/.-])(orchestrator/(?:\w+/)+)(?![\w.])")
"""A subpackage named by its folder: `orchestrator/store/`."""
TREE_LINE = re.compile(r"^(?P<indent> *)- `(?P<name>\w+)`")
"""One class of the exception tree: `- ``OrchError`` ...`, two spaces more per level."""


# --------------------------------------------------------------------------- the module tree


def module_files() -> list[str]:
    """Every module of the package, by its path from the repository root."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    )


def missing_modules(doc: str, modules: list[str]) -> list[str]:
    """The modules the page does not name; a subpackage's `__init__.py` may go by its folder."""
    named = set(PY_PATH.findall(doc))
    folders = set(PACKAGE_FOLDER.findall(doc))
    missing = []
    for module in modules:
        folder = module.removesuffix("__init__.py")
        if module in named or (module.endswith("/__init__.py") and folder in folders):
            continue
        missing.append(module)
    return missing


def stale_names(doc: str, modules: list[str]) -> list[str]:
    """The Python files and subpackages the page names that do not exist.

    A path with a folder is looked up from the repository root; a bare file name (`cache.py`)
    must be the name of one of the package's modules.
    """
    basenames = {module.rsplit("/", 1)[-1] for module in modules}
    stale = [
        name
        for name in sorted(set(PY_PATH.findall(doc)))
        if not ((ROOT / name).is_file() if "/" in name else name in basenames)
    ]
    stale += [
        folder
        for folder in sorted(set(PACKAGE_FOLDER.findall(doc)))
        if not (ROOT / folder / "__init__.py").is_file()
    ]
    return stale


def test_the_architecture_page_names_every_module_of_the_package() -> None:
    missing = missing_modules(DOC.read_text(encoding="utf-8"), module_files())
    assert not missing, f"docs/ARCHITECTURE.md does not name these modules: {', '.join(missing)}"


def test_every_module_the_architecture_page_names_exists() -> None:
    stale = stale_names(DOC.read_text(encoding="utf-8"), module_files())
    assert not stale, f"docs/ARCHITECTURE.md names files that do not exist: {', '.join(stale)}"


def test_a_module_left_out_or_a_stale_name_is_reported() -> None:
    modules = ["orchestrator/store/__init__.py", "orchestrator/store/digest.py"]
    doc = "`orchestrator/store/`: `orchestrator/store/digest.py`, `orchestrator/store/gone.py`"
    assert missing_modules(doc, modules) == []
    assert missing_modules("`orchestrator/store/digest.py`", modules) == [
        "orchestrator/store/__init__.py"
    ]
    assert missing_modules("`orchestrator/store/`", modules) == ["orchestrator/store/digest.py"]
    assert stale_names(doc + ", `plancache.py`", module_files()) == [
        "orchestrator/store/gone.py",
        "plancache.py",
    ]


# --------------------------------------------------------------------------- the exception tree


def import_every_module() -> None:
    for info in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
        importlib.import_module(info.name)


def real_parents() -> dict[str, str | None]:
    """Each `OrchError` subclass the package defines → the name of its parent in the tree."""
    import_every_module()
    parents: dict[str, str | None] = {OrchError.__name__: None}
    pending: list[type[OrchError]] = [OrchError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if not sub.__module__.startswith("orchestrator."):
                continue  # a class a test defines
            parents[sub.__name__] = cls.__name__
            pending.append(sub)
    return parents


def documented_parents(doc: str) -> tuple[dict[str, str | None], list[str]]:
    """The tree in the page's exception tree section, and the lines that cannot be read."""
    start = doc.index(TREE_HEADING) + len(TREE_HEADING)
    end = doc.find("\n## ", start)
    section = doc[start : end if end >= 0 else len(doc)]
    parents: dict[str, str | None] = {}
    path: list[str] = []
    problems = []
    for line in section.splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        name, indent = match["name"], len(match["indent"])
        depth = indent // 2
        if indent % 2 or depth > len(path) or (depth == 0 and path):
            problems.append(f"cannot place '{name}' in the tree (indent {indent})")
            continue
        if name in parents:
            problems.append(f"'{name}' is listed twice")
        del path[depth:]
        parents[name] = path[-1] if path else None
        path.append(name)
    return parents, problems


def tree_problems(doc: str, real: dict[str, str | None]) -> list[str]:
    """How the page's exception tree differs from the classes the code defines."""
    documented, problems = documented_parents(doc)
    for name, parent in sorted(real.items()):
        if name not in documented:
            problems.append(f"'{name}' (a subclass of '{parent}') is missing")
        elif documented[name] != parent:
            problems.append(f"'{name}' is shown under '{documented[name]}', its base is '{parent}'")
    unknown = [name for name in documented if name not in real]
    problems += [f"'{name}' is not a subclass of OrchError" for name in unknown]
    return problems


def test_the_exception_tree_shows_every_orch_error_under_its_base() -> None:
    problems = tree_problems(DOC.read_text(encoding="utf-8"), real_parents())
    assert not problems, "the exception tree of docs/ARCHITECTURE.md is wrong:\n" + "\n".join(
        problems
    )


def test_a_wrong_exception_tree_is_reported() -> None:
    real: dict[str, str | None] = {
        "OrchError": None,
        "StepFailed": "OrchError",
        "ProviderError": "StepFailed",
        "UsageError": "OrchError",
    }
    doc = (
        f"{TREE_HEADING}\n\n- `OrchError`: the root\n  - `StepFailed`\n  - `ProviderError`\n"
        "    - `Extra`\n\n## Next section\n\n- `UsageError`\n"
    )
    assert tree_problems(doc, real) == [
        "'ProviderError' is shown under 'OrchError', its base is 'StepFailed'",
        "'UsageError' (a subclass of 'OrchError') is missing",
        "'Extra' is not a subclass of OrchError",
    ]
