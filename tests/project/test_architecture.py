"""The floors of ARCHITECTURE.md hold: no module imports from a floor above its own, and
the apps of one floor do not import each other. The floors are read from the document
itself, so the check and the description cannot drift apart."""

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ("project", "tasks", "annotation", "qc", "exports", "chat")


def floors() -> dict[str, int]:
    """Module prefix → floor, from the table in ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        row = re.match(r"\|\s*(\d)\b[^|]*\|([^|]*)\|", line)
        if row:
            for module in re.findall(r"`([\w.]+)`", row.group(2)):
                table[module] = int(row.group(1))
    return table


FLOORS = floors()
ROOF = max(FLOORS.values())


def home(module: str) -> str | None:
    """The longest prefix of ``module`` that the table names (its unit: an app, or one
    module of ``project``); None for code that is not ours (Django, the standard library)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in FLOORS:
            return prefix
    return None


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None if it may."""
    mine, theirs = home(importer), home(imported)
    if theirs is None or mine is None or mine == theirs:
        return None
    if FLOORS[mine] == ROOF:
        return None
    if FLOORS[theirs] > FLOORS[mine]:
        return f"floor {FLOORS[mine]} ({mine}) imports floor {FLOORS[theirs]} ({theirs})"
    # Two apps of one floor stay apart; the modules of project/ are one unit.
    same_unit = mine.startswith("project.") and theirs.startswith("project.")
    if FLOORS[theirs] == FLOORS[mine] and not same_unit:
        return f"{mine} and {theirs} share floor {FLOORS[mine]} and must not import each other"
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """Every import in the file, function-local ones included, as (line, module)."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from tasks import audit` imports the module tasks.audit
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_the_document_names_every_app_and_project_module():
    assert {"tasks", "annotation", "qc", "exports"} <= set(FLOORS)
    project_modules = {
        module_name(p)
        for p in (ROOT / "project").glob("*")
        if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())
    } - {"project"}
    unplaced = sorted(m for m in project_modules if home(m) in (None, "project"))
    assert not unplaced, f"ARCHITECTURE.md gives these no floor: {unplaced}"


def test_no_import_runs_from_a_lower_floor_to_a_higher_one():
    problems = []
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            module = module_name(path)
            for line, imported in imports_of(path, module):
                why = violation(module, imported)
                if why:
                    problems.append(f"{path.relative_to(ROOT)}:{line} imports {imported}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("tasks.views", "annotation.workspace"),
        ("tasks.models.jobs", "exports.models"),
        ("annotation.services", "qc.report"),
        ("exports.pairs", "qc.report"),
        ("qc.services", "exports.services"),
        ("project.celery", "tasks.models"),
        ("project.settings", "tasks.schema"),
        ("tasks.demo", "project.demo.study"),
    ],
)
def test_the_check_refuses_an_upward_import(importer, imported):
    assert violation(importer, imported)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("annotation.views", "tasks.decorators"),
        ("exports.services", "annotation.models"),
        ("project.api_urls", "qc.api.views"),
        ("project.demo.study", "exports.services"),
        ("tasks.jobs", "project.celery"),
        ("project.settings", "project.embedded"),
        ("qc.views", "django.http"),
    ],
)
def test_the_check_allows_a_downward_import(importer, imported):
    assert violation(importer, imported) is None


def test_the_product_imports_no_test_only_package():
    """`make run` and the containers install the main dependencies only (pyproject.toml's
    ``test`` extra is for `make test`): an import of a test-only package from the product
    fails there, not in the suite (openai 3's client is httpx2; httpx is the tests')."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    test_only = {
        re.split(r"[<>=\[;, ]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        for requirement in extra["test"]
    }
    # Import names that differ from the distribution's, and what the test extra brings along.
    test_only |= {"pytest_django", "factory", "llama_cpp", "scipy"}
    main = {
        re.split(r"[<>=\[;, ]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "dependencies"
        ]
    }
    found = []
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for line, imported in imports_of(path, module_name(path)):
                name = imported.split(".")[0].lower()
                if name in test_only - main:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not found, found
