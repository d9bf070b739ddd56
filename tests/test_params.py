"""A notebook's parameters cell and the checking of values: plain functions, no kernel."""

from __future__ import annotations

import json
import math
import os

import hypothesis.strategies as st
import pytest
from helpers import notebook
from hypothesis import given

from runtool.errors import InvalidInput
from runtool.params import (
    MAX_PARAMETERS_BYTES,
    Parameter,
    check_parameters,
    check_value,
    from_cli_text,
    read_notebook,
    read_regular_file,
)

CELL = '''\
n = 1  # how many
x: float = 2  # the annotation decides
threshold = 0.5
label = "a"
flag = False
sizes = [1, 2]
options = {"k": 1}
nothing = None
computed = len("abc")
a = b = 3
first, second = 1, 2
import os
run_id = 0
run_dir = ""
'''


@pytest.fixture
def info(tmp_path):
    return read_notebook(notebook(tmp_path / "nb.ipynb", parameters=CELL, body=["print(n)"]))


def test_declared_parameters_types_defaults_and_help(info):
    found = {name: (p.type_name, p.default, p.help) for name, p in info.parameters.items()}
    assert found == {
        "n": ("int", 1, "how many"), "x": ("float", 2, "the annotation decides"),
        "threshold": ("float", 0.5, ""), "label": ("str", "a", ""), "flag": ("bool", False, ""),
        "sizes": ("list", [1, 2], ""), "options": ("dict", {"k": 1}, ""), "nothing": ("any", None, ""),
        "computed": ("any", None, ""), "run_id": ("int", 0, ""), "run_dir": ("str", "", ""),
    }  # `a = b = 3` and `first, second = ...` declare nothing, as in papermill
    assert info.has_parameters_cell and info.kernel == "python3"
    assert info.path.is_absolute() and info.path.name == "nb.ipynb"


def test_source_as_a_list_of_lines_and_no_kernelspec(tmp_path):
    path = notebook(tmp_path / "lines.ipynb", parameters=["n = 1\n", "y = 'b'\n"], kernel=None)
    info = read_notebook(path)
    assert {n: p.default for n, p in info.parameters.items()} == {"n": 1, "y": "b"}
    assert info.kernel is None


def test_a_notebook_without_parameters_cell(tmp_path):
    info = read_notebook(notebook(tmp_path / "plain.ipynb", parameters=None, body=["print(1)"]))
    assert (info.has_parameters_cell, info.parameters) == (False, {})
    assert check_parameters(info, {}) == {}
    with pytest.raises(InvalidInput, match="has no cell tagged 'parameters', so it takes no parameters"):
        check_parameters(info, {"n": 1})


@pytest.mark.parametrize("content, says", [
    ('{"cells": [', "not valid notebook JSON"),
    ('{"nbformat": 3, "worksheets": []}', "not a version 4 Jupyter notebook"),
    ('{"nbformat": 4, "cells": {}}', "not a version 4 Jupyter notebook"),
    ("[]", "not a version 4 Jupyter notebook"),
    (b"\xff\xfe", "not valid notebook JSON"),
])
def test_unreadable_notebooks(tmp_path, content, says):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InvalidInput) as refused:
        read_notebook(path)
    assert str(refused.value).startswith(f"notebook {path}: {says}")


@pytest.mark.parametrize("source, says", [
    ("n = (1,", "parameters cell is not valid Python"),
    ("x = " + "-" * 200_000 + "1", "parameters cell"),
    (5, "parameters cell source is not text"),
])
def test_bad_parameters_cells(tmp_path, source, says):
    path = notebook(tmp_path / "cell.ipynb", parameters=source)
    with pytest.raises(InvalidInput, match=says):
        read_notebook(path)


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "f").write_bytes(b"ok")
    assert read_regular_file(tmp_path / "f", "thing") == b"ok"
    for path, says in ((fifo, "thing: not a regular file"), (tmp_path, "thing: is a folder, not a file"),
                       (tmp_path / "missing", "thing: not found"), ("/dev/zero", "thing: not a regular file")):
        with pytest.raises(InvalidInput) as refused:
            read_regular_file(path, "thing")
        assert str(refused.value) == says
    with pytest.raises(InvalidInput, match="bad notebook 5: expected a path"):
        read_notebook(5)  # type: ignore[arg-type]


# -- values ---------------------------------------------------------------------------------

ACCEPTED = [
    ("int", 1, 7, 7), ("float", 0.5, 3, 3.0), ("float", 0.5, 2.5, 2.5), ("str", "a", "b", "b"),
    ("bool", False, True, True), ("list", [], [1, "x"], [1, "x"]), ("dict", {}, {"a": [1]}, {"a": [1]}),
    ("any", None, {"k": None}, {"k": None}),
]


@pytest.mark.parametrize("type_name, default, value, stored", ACCEPTED)
def test_accepted_values(type_name, default, value, stored):
    result = check_value(Parameter("p", type_name, default), value)
    assert result == stored and type(result) is type(stored)


REFUSED = [
    ("int", 1, "3", "bad value '3' for parameter 'p': expected int (declared as p = 1)"),
    ("int", 1, True, "expected int"), ("float", 0.5, "x", "expected float"), ("float", 0.5, True, "expected float"),
    ("bool", False, 1, "expected bool"), ("str", "a", 1, "expected str"), ("list", [], (1,), "expected list"),
    ("dict", {}, [], "expected dict"), ("float", 0.5, math.nan, "NaN and infinity are not allowed"),
    ("float", 0.5, math.inf, "NaN and infinity are not allowed"), ("float", 0.5, 10**400, "too large for a float"),
    ("float", 0.5, 2**63 + 1, "bad value 9223372036854775809 for parameter 'p': no float holds it exactly"),
    ("any", None, {1, 2}, "not representable as JSON"), ("list", [], [math.nan], "NaN and infinity"),
    ("int", 1, "x" * 100, "bad value '" + "x" * 36 + "... for parameter 'p'"),  # shortened
]


@pytest.mark.parametrize("type_name, default, value, says", REFUSED)
def test_refused_values(type_name, default, value, says):
    with pytest.raises(InvalidInput) as refused:
        check_value(Parameter("p", type_name, default), value)
    assert says in str(refused.value)


def test_an_int_for_a_float_parameter_becomes_that_float():
    assert check_value(Parameter("p", "float", 0.5), 2**53) == 2.0**53
    assert type(check_value(Parameter("p", "float", 0.5), 3)) is float


def test_a_float_for_an_int_parameter_is_accepted():
    """DESIGN 5: threshold = 1, then -p threshold 0.5 (as papermill passes it)."""
    assert check_value(Parameter("threshold", "int", 1), 0.5) == 0.5


def test_check_parameters_names_the_first_bad_one(info):
    assert check_parameters(info, {"n": 2, "x": 1, "label": "z"}) == {"n": 2, "x": 1.0, "label": "z"}
    with pytest.raises(InvalidInput, match=r"^unknown parameter 'nope' for nb.ipynb \(declared: computed, flag, "):
        check_parameters(info, {"nope": 1})
    with pytest.raises(InvalidInput, match="parameter 'run_id' is filled in by runtool and cannot be given"):
        check_parameters(info, {"run_id": 3})
    with pytest.raises(InvalidInput, match="parameters must be a mapping"):
        check_parameters(info, [("n", 1)])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=f"parameters too large: more than {MAX_PARAMETERS_BYTES} bytes"):
        check_parameters(info, {"label": "x" * MAX_PARAMETERS_BYTES})


# -- -p NAME VALUE, typed as papermill types it --------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("True", True), ("False", False), ("None", None), ("3", 3), ("-3", -3), ("3.5", 3.5), ("1e3", 1000.0),
    ("abc", "abc"), ("true", "true"), ("", ""), ("[1, 2]", "[1, 2]"),
])
def test_cli_text_is_typed_like_papermill(text, value):
    typed = from_cli_text(text, None)
    assert typed == value and type(typed) is type(value)


def test_cli_text_stays_text_for_a_str_parameter():
    assert from_cli_text("7", Parameter("label", "str", "a")) == "7"
    assert from_cli_text("7", Parameter("n", "int", 1)) == 7


@given(st.integers())
def test_cli_text_round_trips_integers(number):
    assert from_cli_text(str(number), None) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_cli_text_round_trips_floats(number):
    typed = from_cli_text(repr(number), None)
    assert typed == number
    assert json.loads(json.dumps(typed)) == number
