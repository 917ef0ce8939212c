"""Check a `.pt2` (torch.export) archive so that loading it runs nothing it carries.

`torch.export.load` trusts the archive. Read with torch 2.13's own loader, these parts of it run
model-supplied code: a weight or tensor constant whose config says `use_pickle`, the legacy
`data/weights/<model>.pt` and `data/constants/<model>.pt` files, `custom_obj_*` and `opaque_*`
constants (all unpickled with `weights_only=False`); the sample inputs (a pickle, retried with
`weights_only=False` when the safe unpickler refuses it); AOTInductor members (compiled shared
libraries); `guards_code` (Python source executed by `.module()`), and a string input, which
`.module()` pastes unescaped into the guard code it generates; a symbolic-shape expression
(parsed by `sympy.sympify`, which calls `eval`). A node target is resolved as any attribute path
under `torch`, `operator` or `math` (`torch.os.system` included) and made a call in the graph;
torch's verifier rejected the ones tried here, but it is a check on graph form, not a sandbox.

So, without --trust, `safe_archive` reads the archive once, accepts only the members a
`torch.export.save` file of one program holds, checks every one of the parts above, and returns a
new in-memory archive built from exactly the bytes it checked: the sample inputs are left empty
(gradaudit makes its own inputs from --input-shape), `guards_code` is dropped (it only guards
input shapes), extra files are dropped. Anything it cannot vouch for (a string constant with a
quote or backslash included) is an InputError naming the member and why, one line. A normal
`torch.export.save` of a model made of aten operators passes.
"""

from __future__ import annotations

import io
import json
import keyword
import math
import operator
import re
import zipfile
import zlib
from typing import Any, Iterator

from gradaudit.errors import InputError

PROGRAM = "model"  # torch.export.save stores the one program under this name; torch.export.load reads it
GRAPH = f"models/{PROGRAM}.json"
SAMPLE_INPUTS = f"data/sample_inputs/{PROGRAM}.pt"
WEIGHTS_DIR, CONSTANTS_DIR = "data/weights/", "data/constants/"
WEIGHTS_CONFIG = f"{WEIGHTS_DIR}{PROGRAM}_weights_config.json"
CONSTANTS_CONFIG = f"{CONSTANTS_DIR}{PROGRAM}_constants_config.json"
BOOKKEEPING = frozenset({"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"})
DROPPED_PREFIX = "extra/"  # user strings torch reads as text; not needed to audit

# Operator namespaces whose kernels compute on tensors; within them, the ops that touch files or
# write to the terminal themselves.
TENSOR_NAMESPACES = ("aten", "prims")
UNSAFE_OPS = frozenset({"from_file", "save", "_print", "warn"})
# Higher-order operators that only run subgraphs deserialized from the same (checked) archive.
SAFE_HIGHER_ORDER = frozenset({"cond", "while_loop", "map_impl", "scan", "wrap_with_set_grad_enabled",
                               "wrap_with_autocast"})

# Symbolic-shape expressions, as torch writes them (`s0 + 1`, or sympy's srepr for dynamic shapes:
# `Mul(Integer(2), Symbol('s77', positive=True, integer=True))`): numbers, operators, quoted
# symbol names or numbers, torch's symbol names (s0, u3, zuf1...), and the sympy constructors,
# functions and assumption keywords torch prints. Nothing else reaches sympify, so an expression
# cannot name a builtin, an attribute or a string of its choosing.
_NUMBER = r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
_SYMBOL = re.compile(r"[a-z]+\d+")
_EXPRESSION_TOKEN = re.compile(
    rf"\s*(?:{_NUMBER}|'(?:[a-z]+\d+|-?{_NUMBER})'|(?P<name>[A-Za-z_]\w*)|\*\*|//|[-+*/%(),<>=!&|~^])")
SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Min", "Max", "Mod", "Abs", "floor", "ceiling",
    "sqrt", "Piecewise", "ExprCondPair", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan",
    "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not", "True", "False", "true", "false", "oo",
    "Infinity", "NegativeInfinity", "Half", "One", "Zero", "NegativeOne",
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero", "nonzero", "rational",
    "even", "odd", "commutative", "precision",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
})
# Text torch turns into Python source (node input names become keyword names in the generated
# forward; stack traces become comments in a readable dump): no control characters but \n and \t.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# A string input's guard is generated as `L['x'] == '<value>'` and executed (torch.export._unlift).
_QUOTING = re.compile(r"['\"\\]")


def safe_archive(path: str) -> bytes:
    """A `.pt2` archive torch can load without running anything from it; InputError otherwise."""

    def refuse(why: str) -> InputError:
        return InputError(f"{path}: {why}; gradaudit loads such a .pt2 only with --trust, for a file you trust")

    try:
        with zipfile.ZipFile(path) as archive:
            root, members = _members(archive, refuse)
            contents = {name: archive.read(root + name) for name in members}
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, ValueError, NotImplementedError, EOFError,
            zlib.error) as error:
        raise InputError(f"{path}: not a readable .pt2 archive ({type(error).__name__}: {error})") from None
    for name in contents:
        problem = _member_problem(name)
        if problem:
            raise refuse(f"member {name!r} {problem}")
    referenced = {GRAPH, SAMPLE_INPUTS}
    for config_name, folder, kind in ((WEIGHTS_CONFIG, WEIGHTS_DIR, "weight"),
                                      (CONSTANTS_CONFIG, CONSTANTS_DIR, "constant")):
        if config_name not in contents:
            raise refuse(f"has no {config_name}")
        referenced |= {config_name} | {folder + f for f in _payload_files(contents, config_name, kind, refuse)}
    if GRAPH not in contents:
        raise refuse(f"has no {GRAPH}")
    unused = sorted(n for n in contents if n not in referenced and n not in BOOKKEEPING
                    and not n.startswith(DROPPED_PREFIX))
    if unused:
        raise refuse(f"member {unused[0]!r} is not part of a saved program")
    contents[GRAPH] = _checked_graph(contents[GRAPH], refuse)
    contents[SAMPLE_INPUTS] = b""
    return _rebuilt(root, {n: b for n, b in contents.items() if not n.startswith(DROPPED_PREFIX)})


def _members(archive: zipfile.ZipFile, refuse) -> tuple[str, list[str]]:
    """The archive's folder and its member names below it; one folder, no duplicate names."""
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    if len(set(names)) != len(names):
        raise refuse("holds two members of the same name")
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        raise refuse("is not one folder of members as torch.export.save writes it")
    root = roots.pop() + "/"
    return root, [name[len(root):] for name in names]


def _member_problem(name: str) -> str:
    """Why a member cannot be loaded without running its content ("" when it can be)."""
    if name.startswith("data/aotinductor/"):
        return "is AOTInductor compiled code"
    if name in (f"{WEIGHTS_DIR}{PROGRAM}.pt", f"{CONSTANTS_DIR}{PROGRAM}.pt"):
        return "is a legacy pickled weights file"
    if name.startswith(CONSTANTS_DIR) and name.rsplit("/", 1)[-1].startswith(("custom_obj_", "opaque_")):
        return "is a pickled object"
    if name.startswith("models/") and name != GRAPH:
        return f"is a second program (only {GRAPH!r} is read)"
    return ""


def _payload_files(contents: dict[str, bytes], config_name: str, kind: str, refuse) -> set[str]:
    """The raw tensor files a weights or constants config names; every entry must be a plain
    (never pickled) tensor stored in its own member."""
    folder = WEIGHTS_DIR if kind == "weight" else CONSTANTS_DIR
    try:
        entries = json.loads(contents[config_name])["config"]
        if not isinstance(entries, dict):
            raise TypeError("config is not a table")
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise refuse(f"{config_name} is not a payload config ({type(error).__name__})") from None
    files = set()
    for fqn, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
            raise refuse(f"{kind} {fqn!r} is stored as a pickle (use_pickle)")
        name = entry.get("path_name")
        if not isinstance(name, str) or "/" in name or (kind == "constant" and not name.startswith("tensor_")):
            raise refuse(f"{kind} {fqn!r} is not a plain tensor file ({name!r})")
        if not isinstance(entry.get("tensor_meta"), dict):
            raise refuse(f"{kind} {fqn!r} has no tensor_meta")
        if folder + name not in contents:
            raise refuse(f"{kind} {fqn!r} names the missing member {folder + name!r}")
        files.add(name)
    return files


def _checked_graph(raw: bytes, refuse) -> bytes:
    """The program's JSON once every operator, expression and name in it is checked, without
    its guards code; re-serialised so torch reads exactly what was checked."""
    try:
        program = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise refuse(f"{GRAPH} is not JSON ({type(error).__name__})") from None
    if not isinstance(program, dict):
        raise refuse(f"{GRAPH} is not an exported program")
    program.pop("guards_code", None)
    for value in _walk(program):
        if isinstance(value, str):
            if _CONTROL.search(value):
                raise refuse(f"{GRAPH} holds a string with control characters")
            continue
        if {"target", "inputs", "outputs"} <= value.keys():
            _check_node(value, refuse)
        expression = value.get("expr_str")
        if expression is not None and not _safe_expression(expression):
            raise refuse(f"{GRAPH} holds a symbolic expression that is not plain arithmetic: {str(expression)[:60]!r}")
        for text in _string_constants(value):
            if not isinstance(text, str) or _QUOTING.search(text):
                raise refuse(f"{GRAPH} holds a string constant with quotes or backslashes: {str(text)[:60]!r}")
    try:
        return json.dumps(program).encode()
    except RecursionError:
        raise refuse(f"{GRAPH} is nested too deeply") from None


def _string_constants(value: dict) -> list:
    """The string constants of a graph argument (`as_string`, `as_strings`)."""
    found = [value["as_string"]] if "as_string" in value else []
    several = value.get("as_strings", [])
    return found + (several if isinstance(several, list) else [several])


def _walk(value: Any) -> Iterator[Any]:
    """Every dict and string inside a JSON value (keys included), iteratively: no depth limit."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            yield item


def _check_node(node: dict, refuse) -> None:
    target = node["target"]
    if not isinstance(target, str) or not _safe_target(target):
        raise refuse(f"its graph calls {str(target)[:80]!r}, not one of the tensor operators gradaudit runs untrusted")
    for argument in node["inputs"] if isinstance(node["inputs"], list) else [None]:
        name = argument.get("name", "") if isinstance(argument, dict) else None
        if not isinstance(name, str) or (name and (not name.isidentifier() or keyword.iskeyword(name))):
            raise refuse(f"an input of {target!r} has the name {name!r}, which is not an identifier")


def _safe_target(target: str) -> bool:
    """An aten/prims operator other than the file and print ones, a higher-order operator that
    only runs subgraphs, or one of the symbolic-size operators of torch's own table; resolved as
    torch's deserializer does (attribute lookups from `torch`, `_operator` or `math`), dunders
    excluded."""
    import torch
    from torch._export.serde.serialize import _SYM_OPS

    head, _, rest = target.partition(".")
    module = {"_operator": operator, "math": math, "torch": torch}.get(head)
    parts = rest.split(".")
    if module is None or not all(part.isidentifier() and not part.startswith("__") for part in parts):
        return False
    resolved: Any = module
    try:
        for part in parts:
            resolved = getattr(resolved, part, None)
        if isinstance(resolved, torch._ops.OpOverload):
            return resolved.namespace in TENSOR_NAMESPACES and resolved._opname not in UNSAFE_OPS
        if isinstance(resolved, torch._ops.HigherOrderOperator):
            return resolved.name() in SAFE_HIGHER_ORDER
        return resolved in _SYM_OPS
    except Exception:  # a lazy torch submodule that fails to import, an unhashable attribute: not an operator
        return False


def _safe_expression(expression: Any) -> bool:
    if not isinstance(expression, str):
        return False
    position = 0
    while position < len(expression):
        token = _EXPRESSION_TOKEN.match(expression, position)
        if token is None or token.end() == position:
            return not expression[position:].strip()
        name = token["name"]
        if name is not None and name not in SYMPY_NAMES and not _SYMBOL.fullmatch(name):
            return False
        position = token.end()
    return True


def _rebuilt(root: str, contents: dict[str, bytes]) -> bytes:
    """A fresh zip of the checked members (stored, in one folder), as torch's reader expects."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in contents.items():
            archive.writestr(root + name, data)
    return buffer.getvalue()
