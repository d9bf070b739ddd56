"""A notebook's declared parameters (its cell tagged `parameters`) and the checking of values.

The cell is read with `ast`, following papermill's inspection (one assignment per name,
the default's type or an annotation decides the type), without importing papermill or
nbformat: a `submit` then costs milliseconds instead of the ~1 s those imports take here.
"""

from __future__ import annotations

import ast
import io
import json
import os
import stat
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput

#: Declared parameters with these names are filled in by runtool for each run.
RUNTIME_PARAMETERS = ("run_id", "run_dir", "parent_run_id", "parent_run_dir", "parent_run_dirs")
MAX_PARAMETERS_BYTES = 1_000_000
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str  # int, float, str, bool, list, dict or any
    default: Any
    help: str = ""


@dataclass(frozen=True)
class NotebookInfo:
    path: Path
    kernel: str | None
    parameters: dict[str, Parameter]
    has_parameters_cell: bool


def read_notebook(path: str | Path) -> NotebookInfo:
    """Parse the notebook at `path`; InvalidInput names the file and what is wrong with it."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInput(f"bad notebook {_short(path)}: expected a path")
    nb_path = Path(path).expanduser().absolute()
    label = f"notebook {path}"
    try:
        data = json.loads(read_regular_file(nb_path, label, "not a notebook"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"{label}: not valid notebook JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict) or data.get("nbformat") != 4 or not isinstance(data.get("cells"), list):
        raise InvalidInput(f"{label}: not a version 4 Jupyter notebook")
    meta = data.get("metadata")
    spec = meta.get("kernelspec") if isinstance(meta, dict) else None
    name = spec.get("name") if isinstance(spec, dict) else None
    kernel = name if isinstance(name, str) and name else None
    cell = _parameters_cell(data["cells"], label)
    if cell is None:
        return NotebookInfo(nb_path, kernel, {}, False)
    return NotebookInfo(nb_path, kernel, _declared(cell, label), True)


def read_regular_file(path: str | Path, label: str, folder: str = "not a file",
                      missing: str = "not found") -> bytes:
    """The bytes of a regular file; InvalidInput names `label` for anything else.

    Opened without blocking and checked before reading: a FIFO would wait for a writer
    forever, and /dev/zero or /dev/urandom would be read until memory runs out.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidInput(f"{label}: {missing}") from None
    except OSError as exc:
        raise InvalidInput(f"{label}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidInput(f"{label}: is a folder, {folder}")
        if not stat.S_ISREG(mode):
            raise InvalidInput(f"{label}: not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidInput(f"{label}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _parameters_cell(cells: list[Any], label: str) -> str | None:
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata")
        tags = meta.get("tags") if isinstance(meta, dict) else None
        if isinstance(tags, list) and "parameters" in tags:
            source = cell.get("source", "")
            if isinstance(source, list) and all(isinstance(line, str) for line in source):
                return "".join(source)
            if not isinstance(source, str):
                raise InvalidInput(f"{label}: parameters cell source is not text")
            return source
    return None


def _declared(source: str, label: str) -> dict[str, Parameter]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{label}: parameters cell is not valid Python ({_first_line(exc)})") from None
    except (RecursionError, MemoryError):  # nested deeper than the parser can follow
        raise InvalidInput(f"{label}: parameters cell is nested too deeply to read") from None
    comments = _comments(source)
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation, value = node.targets[0], None, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation, value = node.target, node.annotation, node.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default = None
        type_name = _type_name(annotation, default)
        found[target.id] = Parameter(target.id, type_name, default, comments.get(node.lineno, ""))
    return found


def _type_name(annotation: ast.expr | None, default: Any) -> str:
    if isinstance(annotation, ast.Name) and annotation.id in _TYPES:
        return annotation.id
    for name, kind in _TYPES.items():
        if type(default) is kind:
            return name
    return "any"


def _comments(source: str) -> dict[int, str]:
    comments = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return comments


def check_value(param: Parameter, value: Any) -> Any:
    """`value` for `param`, converted where lossless (int -> float); InvalidInput otherwise."""
    expected = param.type_name
    ok = {
        "any": True,
        # papermill passes `-p threshold 0.5` into `threshold = 1` as is: so does runtool
        "int": type(value) in (int, float),
        "float": type(value) in (int, float),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list),
        "dict": isinstance(value, dict),
    }[expected]
    if not ok:
        shown = _short(value)
        hint = ""
        if expected in ("list", "dict") and isinstance(value, str):
            example = "[1, 2]" if expected == "list" else "{a: 1}"
            hint = f"; give lists and dicts as YAML: -y '{param.name}: {example}'"
        raise InvalidInput(
            f"bad value {shown} for parameter {param.name!r}: expected {expected} "
            f"(declared as {param.name} = {_short(param.default)}){hint}"
        )
    if expected == "float":
        try:
            number = float(value)
        except OverflowError:
            raise InvalidInput(f"bad value for parameter {param.name!r}: a number too large for a float") from None
        if type(value) is int and number != value:
            raise InvalidInput(f"bad value {_short(value)} for parameter {param.name!r}: no float holds it exactly")
        value = number
    _check_json(param.name, value)
    return value


def from_cli_text(text: str, param: Parameter | None) -> Any:
    """A `-p NAME VALUE` value: typed as papermill infers it, kept as text for a str parameter."""
    if param is not None and param.type_name == "str":
        return text
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def check_parameters(info: NotebookInfo, given: dict[str, Any]) -> dict[str, Any]:
    """The checked parameters of one run of `info`; InvalidInput names the first bad one."""
    if not isinstance(given, dict):
        raise InvalidInput("parameters must be a mapping of names to values")
    if given and not info.has_parameters_cell:
        raise InvalidInput(
            f"notebook {info.path}: has no cell tagged 'parameters', so it takes no parameters"
        )
    checked = {}
    for name, value in given.items():
        if not isinstance(name, str) or name not in info.parameters:
            known = ", ".join(sorted(info.parameters)) or "none"
            raise InvalidInput(f"unknown parameter {_short(name)} for {info.path.name} (declared: {known})")
        if name in RUNTIME_PARAMETERS:
            raise InvalidInput(f"parameter {name!r} is filled in by runtool and cannot be given")
        checked[name] = check_value(info.parameters[name], value)
    if len(json.dumps(checked, allow_nan=False)) > MAX_PARAMETERS_BYTES:
        raise InvalidInput(f"parameters too large: more than {MAX_PARAMETERS_BYTES} bytes as JSON")
    return checked


def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as exc:
        why = "NaN and infinity are not allowed" if "float" in str(exc) else "a number too large to write"
        raise InvalidInput(f"bad value for parameter {name!r}: {why}") from None
    except (TypeError, RecursionError):
        raise InvalidInput(f"bad value for parameter {name!r}: not representable as JSON") from None


def _short(value: Any, limit: int = 40) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of more than 4300 digits, a deep nest
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
