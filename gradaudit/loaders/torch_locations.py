"""Where in the user's source a torch layer is defined, so SARIF can point at a file and line.

A layer's name is its module path (`blocks.3.linear`). The line that defines it is the assignment
`self.linear = ...` in the class of its parent module; when the parent is a torch container
(`nn.Sequential`, `nn.ModuleList`), the container's own assignment one level up stands for it.
A model assembled inside the factory function (`nn.Sequential(*layers)`) has no such line: the
factory's `def` line stands for its layers then. Read with `inspect` + `ast`, never by running
anything; a name that is not a submodule (an fx `add`) or whose source cannot be found gets no
location.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import os
from pathlib import Path
from typing import Iterable

import torch

from gradaudit.loaders import is_factory_spec

TORCH_DIR = Path(torch.__file__).resolve().parent


def layer_locations(module: torch.nn.Module, layers: Iterable[str], source: str) -> dict[str, dict[str, object]]:
    """{layer: {"uri", "line"}} for the layers whose defining line is found."""
    found: dict[str, dict[str, object]] = {}
    for layer in layers:
        if not _is_submodule(module, layer):
            continue
        place = _assignment(module, layer) or _factory_definition(source)
        if place is not None:
            found[layer] = {"uri": _display_path(place[0]), "line": place[1]}
    return found


def _is_submodule(module: torch.nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return bool(name)


def _assignment(module: torch.nn.Module, layer: str) -> tuple[str, int] | None:
    """The `self.<attr> = ...` line defining the layer or its nearest container, deepest first."""
    parts = layer.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        owner = module.get_submodule(".".join(parts[:depth]))
        place = _attribute_line(type(owner), parts[depth])
        if place is not None:
            return place
    return None


@functools.lru_cache(maxsize=256)
def _attribute_line(cls: type, attr: str) -> tuple[str, int] | None:
    """First `self.<attr> =` in a user-defined class (or its user-defined bases)."""
    for klass in cls.__mro__:
        found = _class_node(klass)
        if found is None:
            continue
        path, class_node = found
        for node in ast.walk(class_node):
            assigned = node.targets if isinstance(node, ast.Assign) else []
            assigned = [node.target] if isinstance(node, ast.AnnAssign) else assigned
            if any(_is_self_attribute(target, attr) for target in assigned):
                return path, node.lineno
    return None


def _class_node(klass: type) -> tuple[str, ast.ClassDef] | None:
    """The class statement of a user-defined class, found through its methods' code objects.

    Code objects carry their file and first line even when the module was loaded from a path
    and never entered sys.modules (where `inspect.getsource` of a class would look).
    """
    codes = [value.__code__ for value in vars(klass).values() if inspect.isfunction(value)]
    if not codes or not _is_user_file(codes[0].co_filename):
        return None
    tree = _parsed(codes[0].co_filename)
    first_lines = {code.co_firstlineno for code in codes}
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.ClassDef) and node.name == klass.__name__ and any(
            min([item.lineno] + [d.lineno for d in item.decorator_list]) in first_lines
            for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        ):
            return codes[0].co_filename, node
    return None


def _is_self_attribute(target: ast.expr, attr: str) -> bool:
    """Is `target` the expression `self.<attr>`?"""
    return (isinstance(target, ast.Attribute) and target.attr == attr
            and isinstance(target.value, ast.Name) and target.value.id == "self")


def _is_user_file(path: str) -> bool:
    """A real file outside torch's own code."""
    resolved = Path(path).resolve()
    return resolved.is_file() and not resolved.is_relative_to(TORCH_DIR)


@functools.lru_cache(maxsize=64)
def _parsed(path: str) -> ast.Module | None:
    try:
        return ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _factory_definition(source: str) -> tuple[str, int] | None:
    """The `def` line of a factory spec's function, found without importing anything new."""
    if not is_factory_spec(source):
        return None
    target, _, attrs = source.rpartition(":")
    name = attrs.split(".")[0]  # `Class.method` is found at its class
    path = Path(target) if target.endswith(".py") else _module_file(target)
    tree = _parsed(str(path)) if path is not None else None
    for node in tree.body if tree is not None else ():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return str(path.resolve()), node.lineno
    return None


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _display_path(path: str) -> str:
    """Relative to the working directory when inside it (as code-scanning tools expect), else absolute."""
    absolute = Path(path)
    try:
        return absolute.relative_to(Path(os.getcwd()).resolve()).as_posix()
    except ValueError:
        return absolute.as_posix()
