"""The layers hold: only store modules speak SQL, the interfaces never reach past
`RunQueue`, and runtool's modules import one another without circles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "runtool"
#: The modules that may speak SQL (and import a database driver).
STORE_MODULES = {"queue", "sqlite_schema", "sqlite_tx", "sqlite_reads", "store_common", "pg_store", "pg_tx",
                 "pg_schema", "pg_reads", "pg_connect"}
DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "sqlite_utils"}
#: The interfaces: the command line and the dashboard are thin layers over RunQueue.
INTERFACES = {"cli", "widgets", "widgets_detail", "widgets_table", "dashview", "submitform", "serve", "format", "follow"}
BELOW_RUNQUEUE = {"queue", "lifecycle", "sqlite_schema", "sqlite_tx", "sqlite_reads", "pg_store", "pg_tx", "pg_schema",
                  "pg_reads", "pg_connect", "cleanup", "outcomes", "attempts", "lease"}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in PACKAGE.glob("*.py")}


def _imports(tree: ast.Module) -> set[str]:
    """Every module imported, runtool's own by their short name, outside `if TYPE_CHECKING:`."""
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                found.add(node.module.split(".")[0])
            elif node.level:
                found.update(alias.name for alias in node.names)
            elif node.module:
                found.add(node.module.split(".")[0] if not node.module.startswith("runtool.")
                          else node.module.split(".")[1])
    return found


def test_only_store_modules_import_a_database_driver() -> None:
    speaking = {name for name, tree in _modules().items() if _imports(tree) & DRIVERS}
    assert speaking <= STORE_MODULES, f"SQL outside the stores: {sorted(speaking - STORE_MODULES)}"
    assert "queue" in speaking


def test_interfaces_never_reach_past_runqueue() -> None:
    for name, tree in _modules().items():
        if name not in INTERFACES:
            continue
        reached = _imports(tree) & BELOW_RUNQUEUE
        assert not reached, f"{name} imports {sorted(reached)}"
        stores = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "store"]
        assert not stores, f"{name} uses {stores}"


def test_no_import_circles() -> None:
    modules = _modules()
    graph = {name: _imports(tree) & set(modules) for name, tree in modules.items()}

    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for nxt in sorted(graph[name]):
            assert nxt not in path, "import circle: " + " -> ".join([*path[path.index(nxt):], nxt])
            if nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(name)

    for name in sorted(graph):
        visit(name, [name])


def test_the_checks_above_can_fail() -> None:
    """The import reader sees what the checks rely on (a reader that saw nothing would pass)."""
    tree = ast.parse("import sqlite3\nfrom . import queue\nfrom .api import RunQueue\n"
                     "if TYPE_CHECKING:\n    from .worker import Worker\n")
    assert _imports(tree) == {"sqlite3", "queue", "api"}
    assert "sqlite3" in _imports(_modules()["queue"])
