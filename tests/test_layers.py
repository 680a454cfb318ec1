"""The layers stay apart.

Statically: every import of every module of the package (at module level, inside functions and
under TYPE_CHECKING alike, relative ones resolved) goes the way `MAY_IMPORT` allows, and the parts
of the package import each other without a cycle (docs/architecture.md draws the table).

At run time: the provider (hook, operators) never loads the spec or the builder, and the spec layer
— parsing a pipeline file, the `validate` and `render` commands — never loads Airflow or openai.
Each of those checks runs in a fresh interpreter, so nothing imported by other tests can hide a leak.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "pipelines" / "summarize_then_embed.yaml"
PACKAGE = "ovh_ai_dagfactory"

# -- which part of the package may import which ----------------------------------------------------

#: A part is a subpackage (`jobs`) or a module at the top of the package (`compat`); `__init__` is the
#: package's own `__init__.py` (`__version__`, and `load_pipelines` loaded on first access). A part
#: may always import itself. Every part of the package must be listed here.
MAY_IMPORT: dict[str, set[str]] = {
    "compat": set(),  # Airflow 2/3 names, nothing of ours
    "provider_info": {"__init__"},  # __version__; imports nothing else (every Airflow process loads it)
    "calls": {"compat", "provider_info"},  # one call: parameters, answer, errors
    "jobs": {"calls", "compat", "provider_info"},  # the job engine: never the hook that drives it
    "batch_api": {"calls", "compat", "provider_info"},  # Batch API files, errors, polling
    "hooks": {"calls", "jobs", "batch_api", "compat", "provider_info"},
    "triggers": {"hooks", "batch_api", "calls", "compat"},
    "operators": {"hooks", "triggers", "jobs", "batch_api", "calls", "compat", "provider_info"},
    "spec": {"provider_info"},  # plain Python: no Airflow, no openai, no provider
    "factory": {"spec", "operators", "jobs", "calls", "compat", "provider_info", "__init__"},
    "cli": {"spec", "factory", "calls", "__init__"},
    "__init__": {"factory"},  # load_pipelines, imported on first access (PEP 562), never at import
    "__main__": {"cli"},
}
PROVIDER = {"calls", "jobs", "batch_api", "hooks", "triggers", "operators"}
#: Kept for users only (docs/provider.md named these paths): nothing of ours imports them.
USER_PATHS = {f"{PACKAGE}.hooks.errors", f"{PACKAGE}.hooks.results"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py"))}


def _part(module: str) -> str:
    names = module.split(".")
    return "__init__" if len(names) == 1 else names[1]


def _imports(module: str) -> Iterator[tuple[int, str]]:
    """(line, module of ours imported) for every import in `module`, wherever it is written."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..jobs import y
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from package import module` imports that module; `from module import name`, the module.
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):  # once per statement: `from m import a, b` is one import of m
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield node.lineno, target


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(REPO_ROOT)}:{line}"


def _edges() -> dict[tuple[str, str], str]:
    """(importing part, imported part) -> the first import that makes it ("file:line imports module")."""
    found: dict[tuple[str, str], str] = {}
    for module in MODULES:
        for line, target in _imports(module):
            if _part(target) != _part(module):
                found.setdefault((_part(module), _part(target)), f"{_where(module, line)} imports {target}")
    return found


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for following in sorted(graph.get(node, ())):
            cycle = visit(following, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node, []))), None)


def test_every_part_of_the_package_is_in_the_table():
    assert {_part(module) for module in MODULES} == set(MAY_IMPORT)
    assert all(not MAY_IMPORT[part] & {"spec", "factory", "cli"} for part in PROVIDER)


def test_every_import_goes_the_way_the_table_allows():
    forbidden = [
        f"{_where(module, line)}: {module} imports {target}, but {_part(module)} may import "
        + (f"only {', '.join(sorted(MAY_IMPORT[_part(module)]))}" if MAY_IMPORT[_part(module)] else "nothing of ours")
        for module in MODULES
        for line, target in _imports(module)
        if _part(target) != _part(module) and _part(target) not in MAY_IMPORT[_part(module)]
    ]
    assert not forbidden, "forbidden imports (tests/test_layers.py MAY_IMPORT):\n" + "\n".join(forbidden)


def test_the_paths_kept_for_users_are_imported_by_nothing_of_ours():
    users = [
        f"{_where(module, line)}: {module} imports {target}, a path kept for users: import from calls/ instead"
        for module in MODULES
        for line, target in _imports(module)
        if target in USER_PATHS
    ]
    assert not users, "\n".join(users)


def test_the_parts_import_each_other_without_a_cycle():
    # Leaving out the package's __init__: it imports factory only when `load_pipelines` is first
    # read (next test), so importing it for `__version__` loads nothing else and closes no cycle.
    edges = {edge: where for edge, where in _edges().items() if edge[0] != "__init__"}
    cycle = _cycle(set(edges))
    assert cycle is None, f"import cycle between parts: {' -> '.join(cycle)}" + "".join(
        f"\n  {source} -> {target}: {edges[source, target]}" for source, target in zip(cycle, cycle[1:], strict=False)
    )
    declared = {
        (source, target) for source, targets in MAY_IMPORT.items() if source != "__init__" for target in targets
    }
    assert _cycle(declared) is None, "MAY_IMPORT itself allows a cycle"


def test_importing_the_package_itself_loads_nothing_else_of_it():
    tree = ast.parse(MODULES[PACKAGE].read_text(encoding="utf-8"))
    at_import = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(node, ast.ImportFrom) and node.module in {"__future__", "typing"} for node in at_import)


# -- what a fresh interpreter loads ------------------------------------------------------------------

# Prints the top-level package of every module loaded, plus every module of ours.
PROBE = """
import json, sys
{code}
print(json.dumps(sorted(name for name in sys.modules if "." not in name or name.startswith("ovh_ai_dagfactory."))))
"""


def modules_loaded_by(code: str) -> set[str]:
    # The test session's environment: Airflow (when a check may import it) reads the tests' home.
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _ours(modules: set[str], layer: str) -> list[str]:
    return sorted(name for name in modules if name.startswith(f"ovh_ai_dagfactory.{layer}"))


@pytest.mark.parametrize("module", ["ovh_ai_dagfactory.operators.ai_endpoints", "ovh_ai_dagfactory.hooks.ai_endpoints"])
def test_the_provider_loads_neither_the_spec_nor_the_builder(module):
    modules = modules_loaded_by(f"import {module}")
    assert module in modules and "airflow" in modules  # the probe ran and saw the import
    assert _ours(modules, "spec") == [] and _ours(modules, "factory") == []


@pytest.mark.parametrize(
    "code",
    [
        "import ovh_ai_dagfactory.spec",
        f"from ovh_ai_dagfactory.spec.parse import parse_pipeline_file\nparse_pipeline_file({str(EXAMPLE)!r})",
        f"from ovh_ai_dagfactory.cli.main import main\nassert main(['validate', {str(EXAMPLE)!r}]) == 0",
        f"from ovh_ai_dagfactory.cli.main import main\nassert main(['render', {str(EXAMPLE)!r}]) == 0",
    ],
    ids=["import", "parse", "validate", "render"],
)
def test_the_spec_layer_loads_neither_airflow_nor_openai(code):
    modules = modules_loaded_by(code)
    assert "ovh_ai_dagfactory.spec.model" in modules  # the probe ran and saw the spec
    assert "airflow" not in modules and "openai" not in modules
