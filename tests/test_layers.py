"""The package's imports run one way, through the four layers of docs/internals.rst.

Each module of ``flask_store`` belongs to a layer; it may import from its own layer or those
below, never from above, and never from inside a function (an import hidden in a function is
how a cycle is usually dodged). ``TYPE_CHECKING`` imports obey the same rule. A new module
must be given a layer here, so the picture in the docs stays complete.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flask_store"

#: Layer of each module (by dotted name below ``flask_store``); a package's modules inherit
#: its entry unless they have their own.
LAYERS: dict[str, int] = {
    # 1. leaves: no knowledge of stores
    "__init__": 4,  # re-exports the extension
    "exceptions": 1,
    "config": 1,
    "settings": 1,
    "naming": 1,
    "headers": 1,
    "meta": 1,
    "urls": 1,
    "files": 1,
    "key_locks": 1,
    "unnamed_files": 1,
    "spooling": 1,
    "sources": 1,
    "optional": 1,
    "byteranges": 1,
    "values": 1,
    "content_checks": 1,
    "send_buffers": 1,
    # 2. the store contract and its backends
    "stores": 2,
    "file_wrapper": 2,
    # 3. features built on the contract
    "stores.queued": 3,
    "stores.queued_settings": 3,
    "stores.s3_gevent": 3,
    "transfer": 3,
    "transfer.record": 3,
    "transfer.record_files": 3,
    "transfer.records": 3,
    "transfer.intents": 3,
    "transfer.periodic": 3,
    "transfer.attempts": 3,
    "transfer.reconciler": 3,
    "read_cache": 3,
    "sync": 3,
    "caches": 3,
    "prune": 3,
    "sqla": 3,
    "sqla_deletes": 3,
    "sqla_bulk": 3,
    "tus": 3,
    "images": 3,
    # 4. the Flask-facing top
    "registry": 4,
    "serving": 4,
    "fast_path": 4,
    "errors": 4,
    "console": 4,
    "cli": 4,
    "transfer.cli": 4,
    "transfer.jobs": 4,
    "transfer.celery": 4,
    "extension": 4,
    "wtf": 4,
    "tus_views": 4,
}

#: Third-party packages a function may import lazily: optional extras that must not be
#: imported when the feature is unused.
LAZY_THIRD_PARTY = {
    "gevent",
    "rq",
    "redis",
    "celery",
    "PIL",
    "sqlalchemy",
    "myapp",
    "puremagic",
    "wtforms",
}


@dataclass(frozen=True)
class Import:
    module: str  # importing module, dotted below flask_store
    target: str  # imported module, dotted below flask_store ("" for third party)
    line: int
    in_function: bool
    third_party_root: str
    type_only: bool = False  # under ``if TYPE_CHECKING:``: no import at run time


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    name = module
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    raise KeyError(module)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The flask_store modules a relative or absolute ``from`` import names."""
    if node.level == 0:
        if not (node.module or "").startswith("flask_store"):
            return []
        base = (node.module or "").removeprefix("flask_store").lstrip(".")
    else:
        package = module.split(".") if is_package else module.split(".")[:-1]
        if module == "__init__":
            package = []
        up = node.level - 1
        package = package[: len(package) - up] if up else package
        base = ".".join([*package, node.module] if node.module else package)
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        targets.append(candidate if _exists(candidate) else base or "__init__")
    return targets


def _exists(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports() -> Iterator[Import]:
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        yield from _walk(tree, module, is_package, in_function=False, type_only=False)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def _walk(
    node: ast.AST, module: str, is_package: bool, *, in_function: bool, type_only: bool
) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        if isinstance(child, ast.ImportFrom):
            root = (child.module or "").split(".")[0] if child.level == 0 else ""
            for target in _resolve(module, is_package, child):
                yield Import(module, target, child.lineno, in_function, "", type_only)
            if root and root != "flask_store":
                yield Import(module, "", child.lineno, in_function, root, type_only)
        elif isinstance(child, ast.Import):
            for alias in child.names:
                root = alias.name.split(".")[0]
                if root == "flask_store":
                    target = alias.name.removeprefix("flask_store").lstrip(".") or "__init__"
                    yield Import(module, target, child.lineno, in_function, "", type_only)
                else:
                    yield Import(module, "", child.lineno, in_function, root, type_only)
        else:
            yield from _walk(
                child,
                module,
                is_package,
                in_function=nested,
                type_only=type_only or _is_type_checking_block(child),
            )


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for path in PACKAGE.rglob("*.py"):
        try:
            layer_of(module_name(path))
        except KeyError:
            unplaced.append(module_name(path))
    assert not unplaced, f"give these modules a layer in tests/test_layers.py: {unplaced}"


def test_imports_only_go_down() -> None:
    upward = [
        f"{found.module}:{found.line} ({layer_of(found.module)}) imports "
        f"{found.target} ({layer_of(found.target)})"
        for found in imports()
        if found.target and layer_of(found.target) > layer_of(found.module)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_package_import_inside_a_function() -> None:
    hidden = [
        f"{found.module}:{found.line} imports {found.target or found.third_party_root}"
        for found in imports()
        if found.in_function
        and (found.target or found.third_party_root not in LAZY_THIRD_PARTY)
        and not (found.third_party_root and _is_stdlib_or_optional(found.third_party_root))
    ]
    assert not hidden, "imports inside functions:\n" + "\n".join(hidden)


def _is_stdlib_or_optional(root: str) -> bool:
    import sys

    return root in sys.stdlib_module_names or root in LAZY_THIRD_PARTY


def test_no_import_cycle() -> None:
    """No cycle among the imports that run (``TYPE_CHECKING`` ones only name types)."""
    graph: dict[str, set[str]] = {}
    for found in imports():
        if found.target and found.target != found.module and not found.type_only:
            graph.setdefault(found.module, set()).add(found.target)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found:
                return found
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


@pytest.mark.parametrize(
    ("module", "expected"),
    [("exceptions", 1), ("stores.base", 2), ("stores.queued", 3), ("transfer.cli", 4)],
)
def test_layer_table_reads_packages(module: str, expected: int) -> None:
    assert layer_of(module) == expected


def test_internals_page_names_every_layered_module() -> None:
    """docs/internals.rst's table and this test's layers say the same."""
    page = (PACKAGE.parent / "docs" / "internals.rst").read_text(encoding="utf-8")
    rows = dict(re.findall(r"\* - ``([\w.]+)``\n\s+- (\d)", page))
    documented = {module: int(layer) for module, layer in rows.items()}
    expected = {module: layer for module, layer in LAYERS.items() if module != "__init__"}
    expected = {m: layer for m, layer in expected.items() if _exists(m)}
    assert documented == expected
