"""Every module says what it offers: ``__all__`` holds its public names, and the package's
modules import each other's public names only (a helper of one module is nobody else's)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import flask_store
from flask_store import exceptions

PACKAGE = Path(flask_store.__file__).parent
MODULES = [
    flask_store.__name__,
    *sorted(info.name for info in pkgutil.walk_packages(flask_store.__path__, "flask_store.")),
]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_lists_its_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = getattr(module, "__all__", None)
    assert public is not None, f"{name} has no __all__"
    assert len(set(public)) == len(public), f"{name}.__all__ repeats a name"
    hidden = [item for item in public if item.startswith("_")]
    assert not hidden, f"{name}.__all__ lists internal names: {hidden}"
    missing = [item for item in public if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ lists names it does not have: {missing}"


def test_every_exception_is_public() -> None:
    defined = sorted(
        value.__name__
        for value in vars(exceptions).values()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == exceptions.__name__
    )
    assert sorted(exceptions.__all__) == defined


def _module_of(path: Path) -> str:
    parts = [flask_store.__name__, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_from(path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` in ``path`` reads."""
    if node.level == 0:
        return node.module or ""
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _uses_of_others() -> list[tuple[str, int, ModuleType, str]]:
    """Every ``from <flask_store module> import <name>`` in the package, but of modules."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _imported_from(path, node)
            if not source.startswith(flask_store.__name__):
                continue
            module = importlib.import_module(source)
            for alias in node.names:
                if not _is_module(f"{source}.{alias.name}"):
                    where = str(path.relative_to(PACKAGE.parent))
                    found.append((where, node.lineno, module, alias.name))
    return found


def test_modules_import_only_each_others_public_names() -> None:
    private = [
        f"{where}:{line} imports {name} from {module.__name__}"
        for where, line, module, name in _uses_of_others()
        if name not in getattr(module, "__all__", ())
    ]
    assert not private, "add these to __all__, or keep them where they are used:\n" + "\n".join(
        private
    )
