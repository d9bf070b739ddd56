"""Fault campaign, hostile input: run ids, durations, times, queue names, parameters,
notebook files and runtool.toml, fuzzed with hypothesis through the command line (in
process, for speed; a few through real processes) and the Python API.

Every refusal is one line on stderr and exit 2 (exit 1 only for a well-formed run id that
does not exist), never a traceback or an internal error, and never a partial write: the
database and the runs folder are exactly as before.
"""

from __future__ import annotations

import ast
import json
import math
import os
import string
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import psutil
import pytest
from fault_checks import state
import yaml
from helpers import JOB_PARAMETERS, Result, cli, notebook, runtool, write_config
from hypothesis import HealthCheck, example, given, settings

from runtool import Run, RunQueue, outcomes
from runtool.durations import parse_duration, parse_time
from runtool.errors import InvalidInput, RuntoolError
from runtool.models import Claimant
from runtool.params import RUNTIME_PARAMETERS

pytestmark = pytest.mark.both_stores

#: Examples per fuzz test: 80 in `make test`; `make test-fast` asks for fewer (RUNTOOL_FUZZ_EXAMPLES).
FUZZ = settings(max_examples=int(os.environ.get("RUNTOOL_FUZZ_EXAMPLES", "80")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
#: Text as a hostile user types it: any code point, lone surrogates (undecodable argv
#: bytes arrive as those), control characters, and the usual suspects.
NASTY = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(blacklist_categories=())),
    st.sampled_from(["", " ", "-1", "0", "1e3", "0x10", "..", "../1", "1/../2", " 1", "9" * 30,
                     "NaN", "inf", "-inf", "\x00", "\n", "٣", "１", "1_000", "\udcff", "'; DROP TABLE runs; --",
                     "__import__('os').system('id')", "${HOME}", "$(id)", "a" * 5000]),
)


def refused(result: Result, code: int = 2) -> str:
    """The result is a refusal with this exit code and exactly one line on stderr."""
    assert result.code == code, result
    assert result.err.startswith("runtool: ") and result.err.count("\n") == 1 and result.err.endswith("\n"), result
    assert "Traceback" not in result.err and "internal error" not in result.err, result
    assert result.out == "", result
    return result.err


def submitted_or_refused(home: Path, result: Result, before: tuple, accept: bool | None = None,
                         check: Callable[[Run], None] | None = None) -> None:
    """`accept` (the test's own oracle), if given, says whether the submission must be
    accepted or refused. An accepted one passes `check` (which asserts) and is deleted
    again; a refused one changed nothing."""
    if accept is not None:
        assert (result.code == 0) is accept, (accept, result)
    if result.code == 0:
        with RunQueue(home) as q:
            run = q.get(int(result.out))
            if check is not None:
                check(run)
            q.delete(run.id)
        return
    refused(result)
    assert state(home) == before


def parses(function: Callable[[str], Any], text: str) -> Any:
    """`function(text)`, or None where it refuses the text (InvalidInput)."""
    try:
        return function(text)
    except InvalidInput:
        return None


@pytest.fixture
def fuzz_home(tmp_path, database_url):
    """A home whose run 1 is processing, held by this process as a worker would hold it:
    no hostile id that reaches it may cancel, delete or retry it."""
    home = tmp_path / "home"
    job = notebook(tmp_path / "job.ipynb")
    with RunQueue(home) as q:
        q.submit(job, {"n": 1})
        assert q.store.claim([], Claimant("fuzz", os.getpid(), psutil.Process().create_time(), "test")).id == 1
    return home, job


# -- regression cases (each was a traceback or a hang before the campaign's fixes) ----------

HOSTILE = [
    # (arguments after --home, exit code, what the one line says)
    (["submit", "{job}", "--after", "1" + "0" * 30], 2, "bad --after"),
    (["list", "--limit", "1" + "0" * 30], 2, "bad --limit"),
    (["list", "--offset", "1" + "0" * 30], 2, "bad --offset"),
    (["submit", "{job}", "-p", "label", "\udcff"], 2, "not valid UTF-8"),
    (["submit", "{job}", "--tag", "k=\udcff"], 2, "not valid UTF-8"),
    (["cancel", "{waiting}", "--reason", "\udcff"], 2, "not valid UTF-8"),
    (["list", "--kind", "\udcff"], 2, "not valid UTF-8"),
    (["submit", "{job}", "--at", "0001-01-01T00:00"], 2, "bad time"),
    (["submit", "{job}", "--at", "9999-12-31T23:59:59-12:00"], 2, "bad time"),
    (["submit", "/dev/zero"], 2, "not a regular file"),
    (["submit", "{fifo}"], 2, "not a regular file"),
    (["submit", "{job}", "-f", "/dev/zero"], 2, "not a regular file"),
    (["submit", "{badsource}"], 2, "parameters cell"),
    (["submit", "{deep}"], 2, "parameters cell"),
    (["submit", "{deepannotation}"], 2, "parameters cell"),
    (["submit", "{job}", "--kind", "\udcff"], 2, "bad kind"),
    (["show", "1" + "0" * 30], 2, "bad run id"),
    (["submit", "no\nsuch.ipynb"], 2, "not found"),
]


@pytest.fixture
def hostile_files(tmp_path):
    fifo = tmp_path / "fifo.ipynb"
    os.mkfifo(fifo)
    def cell_nb(name: str, source) -> Path:
        return notebook(tmp_path / name, parameters=source, body=[])
    return {
        "fifo": fifo,
        "badsource": cell_nb("badsource.ipynb", [1, None]),
        "deep": cell_nb("deep.ipynb", "x = " + "-" * 200_000 + "1"),
        "deepannotation": cell_nb("deepannotation.ipynb", "x = " + "a." * 100_000 + "b"),
    }


@pytest.mark.parametrize(("args", "code", "says"), HOSTILE, ids=[" ".join(a)[:40] for a, _, _ in HOSTILE])
def test_hostile_command_line(fuzz_home, hostile_files, args, code, says):
    home, job = fuzz_home
    names = {"job": str(job), **{k: str(v) for k, v in hostile_files.items()}}
    if "{waiting}" in args:
        with RunQueue(home) as q:
            names["waiting"] = str(q.submit(job).id)
    before = state(home)
    line = refused(cli(home, *[a.format(**names) if a.startswith("{") else a for a in args]), code)
    assert says in line, line
    assert state(home) == before


def test_hostile_input_through_a_real_process(fuzz_home, hostile_files):
    """The same refusals from `python -m runtool` (real argv bytes, real stderr)."""
    home, job = fuzz_home
    before = state(home)
    for args, says in ((["submit", "/dev/zero"], "not a regular file"),
                       (["submit", str(job), "-p", "label", os.fsdecode(b"\xff")], "not valid UTF-8"),
                       (["submit", str(job), "--after", "9" * 40], "bad --after")):
        result = runtool(home, *args, timeout=60)
        assert says in refused(result)
    assert state(home) == before


@pytest.mark.parametrize("kwargs", [
    {"delay": 1e300}, {"at": 1e300}, {"at": -1e300}, {"at": float("nan")}, {"at": "tomorrow"},
    {"timeout": 10**400}, {"delay": 10**400}, {"kind": 5}, {"queue": None}, {"tags": {"k": "\ud800"}},
    {"parameters": {"label": "\ud800"}}, {"parameters": {"x": float("inf")}}, {"output": 5},
    {"kernel": 5}, {"priority": 10**30}, {"retries": 1.5}, {"after": 2**70}, {"on": None},
])
def test_hostile_api_submit(fuzz_home, kwargs):
    home, job = fuzz_home
    before = state(home)
    with RunQueue(home) as q, pytest.raises(InvalidInput):
        q.submit(job, **kwargs)
    assert state(home) == before


@pytest.mark.parametrize("run_id", [1.5, float("inf"), float("nan"), -1, 0, 2**64, "1.0", b"1", [1], None, True])
def test_hostile_api_run_ids(fuzz_home, run_id):
    home, _ = fuzz_home
    before = state(home)
    with RunQueue(home) as q:
        for action in (q.get, q.cancel, q.delete, q.retry, q.log_paths):
            with pytest.raises(InvalidInput):
                action(run_id)
    assert state(home) == before


def test_backoff_never_schedules_past_what_can_be_shown(home, job):
    """retry_base_delay of 100 years, doubled at each attempt, must not store a time that
    no one can show (year 10,000 and later): that broke `show` and `list --json`."""
    write_config(home, 'retries = 100\nretry_base_delay = "36500d"\n')
    error = {"type": "ValueError", "message": "no", "cell": None, "traceback": ""}
    with RunQueue(home) as q:
        run = q.submit(job)
        for _ in range(8):  # attempt 8 backs off 12,800 years
            # travel past the backoff, then fail an attempt as the worker would record it
            q.store._conn.execute(f"UPDATE runs SET not_before = NULL WHERE id = {int(run.id)}")  # either store
            claimed = q.store.claim([], Claimant("test", os.getpid(), psutil.Process().create_time(), "test"))
            outcomes.fail_attempt(q.store, claimed, error, "test", "failed", q.settings.retry_base_delay)
    assert runtool(home, "show", str(run.id)).code == 0
    assert runtool(home, "list", "--json").code == 0


# -- fuzzed ---------------------------------------------------------------------------------


@FUZZ
@given(run_id=NASTY, command=st.sampled_from(["show", "cancel", "delete", "retry", "logs"]))
@example(run_id="1" + "0" * 25, command="show")
def test_fuzz_run_ids(fuzz_home, run_id, command):
    home, _ = fuzz_home
    before = state(home)
    result = cli(home, command, "--", run_id)
    if result.code == 0:  # run 1 itself: only looking at it may succeed
        assert command in ("show", "logs") and run_id.strip() == "1", result
    else:
        line = refused(result, result.code)
        if result.code == 1:  # a well-formed id: not found, or run 1 that is processing
            assert "not found" in line or "processing" in line, line
            assert run_id.strip().isascii() and run_id.strip().isdigit(), line
    assert state(home) == before


@FUZZ
@given(text=NASTY, option=st.sampled_from(["--in", "--timeout"]))
@example(text="99999999999999999999999999d", option="--in")
def test_fuzz_durations(fuzz_home, text, option):
    home, job = fuzz_home
    before = state(home)
    seconds = parses(parse_duration, text)  # the oracle: accepted exactly when this parses
    began = time.time()
    result = cli(home, "submit", str(job), option, text)

    def check(run: Run) -> None:
        if option == "--in":
            assert began + seconds <= run.not_before <= time.time() + seconds, (text, run.not_before)
        else:
            assert run.timeout_s == (seconds or None), (text, run.timeout_s)

    submitted_or_refused(home, result, before, accept=seconds is not None, check=check)


@FUZZ
@given(text=NASTY)
def test_fuzz_purge_durations(fuzz_home, text):
    home, _ = fuzz_home
    before = state(home)
    result = cli(home, "purge", "--older-than", text)
    if parses(parse_duration, text) is None:
        refused(result)
    else:
        assert result == Result(0, "purged 0 run(s)\n", ""), result
    assert state(home) == before  # nothing finished to purge either way


@FUZZ
@given(text=NASTY)
def test_fuzz_times(fuzz_home, text):
    home, job = fuzz_home
    before = state(home)
    result = cli(home, "submit", str(job), "--at", text)
    at = parses(parse_time, text)

    def check(run: Run) -> None:
        assert run.not_before == at, (text, run.not_before, at)

    # `--at ''` is taken as no --at at all (the command tests `if at`)
    submitted_or_refused(home, result, before, accept=at is not None or text == "", check=check)


@FUZZ
@given(name=NASTY, where=st.sampled_from(["submit", "list", "pause", "worker"]))
@example(name="", where="pause")
def test_fuzz_queue_names(fuzz_home, name, where):
    home, job = fuzz_home
    before = state(home)
    args = {"submit": ["submit", str(job), "--queue", name], "list": ["list", "--queue", name],
            "pause": ["pause", "--", name], "worker": ["worker", "--max-runs", "1", "--queue", name]}[where]
    valid = all(c in string.ascii_lowercase + string.digits + "_-" for c in name) and 1 <= len(name) <= 64
    if where == "worker" and valid:
        return  # a valid queue: the worker would wait for work
    result = cli(home, *args)
    # list filters by any name it can store (no run matches an invalid one); UTF-8 it must be
    if valid or (where == "list" and utf8(name)):
        assert result.code == 0, result
        with RunQueue(home) as q:
            for run in q.list(queue=name, status="waiting"):
                q.delete(run.id)
            q.resume()
        return
    refused(result)
    assert state(home) == before


def utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(alphabet=st.characters(blacklist_categories=())),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
DECLARED = sorted(name for name in (line.split(" = ")[0] for line in JOB_PARAMETERS.splitlines()))
#: The declared parameters a submission may give, with the type their default gives them
#: (run_id and the like are filled in by runtool).
TYPES = {name: type(ast.literal_eval(default)).__name__
         for name, default in (line.split(" = ") for line in JOB_PARAMETERS.splitlines())
         if name not in RUNTIME_PARAMETERS}


def papermill_value(name: str, text: str) -> Any:
    """The value `papermill -p NAME TEXT` passes (its own inference), kept as text for a str parameter."""
    from papermill.cli import _resolve_type

    return text if TYPES.get(name) == "str" else _resolve_type(text)


def fits(type_name: str, value: Any) -> bool:
    """Whether a -p value is accepted for a parameter declared with this type (DESIGN 5)."""
    if type_name in ("float", "int"):  # an int-declared parameter takes a float too, as in papermill
        return type(value) in (int, float) and math.isfinite(value)
    return type(value).__name__ == type_name


@FUZZ
@given(pairs=st.lists(st.tuples(st.one_of(st.sampled_from(DECLARED), NASTY), NASTY), max_size=3))
@example(pairs=[("flag", "True"), ("n", "3"), ("x", "2"), ("label", "None")])  # accepted, typed
@example(pairs=[("n", "2.5")])  # accepted: a float for an int
@example(pairs=[("fail", "None"), ("fail", "False")])  # the last one wins
def test_fuzz_cli_parameters(fuzz_home, pairs):
    home, job = fuzz_home
    before = state(home)
    args = [a for name, value in pairs for a in ("-p", name, value)]
    result = cli(home, "submit", str(job), *args)
    expected = {name: papermill_value(name, text) for name, text in pairs}  # the last one wins
    accept = all(utf8(name + text) for name, text in pairs) and all(
        name in TYPES and fits(TYPES[name], value) for name, value in expected.items())

    def check(run: Run) -> None:
        assert run.parameters == expected, (pairs, run.parameters)
        assert json.loads(json.dumps(run.parameters, allow_nan=False)) == run.parameters

    submitted_or_refused(home, result, before, accept=accept, check=check)


@FUZZ
@given(values=st.dictionaries(st.one_of(st.sampled_from(DECLARED), st.text(max_size=8)), JSON, max_size=3),
       how=st.sampled_from(["--params-json", "-y"]))
def test_fuzz_structured_parameters(fuzz_home, values, how):
    home, job = fuzz_home
    before = state(home)
    text = json.dumps(values)  # NaN and Infinity as JSON does; YAML reads JSON too
    result = cli(home, "submit", str(job), how, text)

    def check(run: Run) -> None:
        assert run.parameters == values and set(values) <= set(TYPES), (values, run.parameters)
        assert all(math.isfinite(v) for v in run.parameters.values() if isinstance(v, float))

    submitted_or_refused(home, result, before, check=check)


@FUZZ
@given(text=st.text(alphabet=st.characters(blacklist_categories=())), how=st.sampled_from(["-y", "--params-json"]))
def test_fuzz_parameter_text(fuzz_home, text, how):
    home, job = fuzz_home
    before = state(home)
    result = cli(home, "submit", str(job), how, text)

    def check(run: Run) -> None:  # the text was a mapping of declared names (or YAML's nothing)
        loaded = json.loads(text) if how == "--params-json" else yaml.safe_load(text)
        assert run.parameters == (loaded or {}) and set(run.parameters) <= set(TYPES), (text, run.parameters)

    submitted_or_refused(home, result, before, check=check)


@FUZZ
@given(values=st.dictionaries(st.one_of(st.sampled_from(DECLARED), st.text(max_size=8)), st.one_of(JSON, st.binary(),
       st.tuples(JSON), st.sets(st.integers()), st.integers(min_value=2**63), st.just(10**5000)), max_size=3))
@example(values={"label": 10**5000})
@example(values={"n": 10**5000})
@example(values={"sleep": 2**2000})
def test_fuzz_api_parameters(fuzz_home, values):
    home, job = fuzz_home
    before = state(home)
    with RunQueue(home) as q:
        try:
            run = q.submit(job, values)
        except InvalidInput as exc:
            assert "\n" not in str(exc)
            assert state(home) == before
            return
        stored = q.get(run.id).parameters
        assert stored == values and set(stored) <= set(TYPES), (values, stored)
        assert stored == json.loads(json.dumps(stored, allow_nan=False))
        q.delete(run.id)


VALID_NB = {"nbformat": 4, "nbformat_minor": 4,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "n = 1\nx = 0.5",
                       "outputs": [], "execution_count": None},
                      {"cell_type": "code", "metadata": {}, "source": "print(n)", "outputs": []}]}
PATHS = [("nbformat",), ("metadata",), ("metadata", "kernelspec"), ("metadata", "kernelspec", "name"),
         ("cells",), ("cells", 0), ("cells", 0, "source"), ("cells", 0, "metadata"),
         ("cells", 0, "metadata", "tags"), ("cells", 0, "cell_type"), ("cells", 1)]


def _replace(doc, path, value):
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@FUZZ
@given(data=st.data(), how=st.sampled_from(["truncate", "replace", "bytes"]))
@example(data=None, how="truncate")
def test_fuzz_notebook_files(fuzz_home, tmp_path, data, how):
    home, _ = fuzz_home
    before = state(home)
    path = tmp_path / "fuzzed.ipynb"
    valid = json.dumps(VALID_NB).encode()
    if data is None:
        path.write_bytes(valid[:37])
    elif how == "truncate":
        path.write_bytes(valid[: data.draw(st.integers(0, len(valid) - 1))])
    elif how == "replace":
        doc = _replace(VALID_NB, data.draw(st.sampled_from(PATHS)), data.draw(JSON))
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(data.draw(st.binary(max_size=200)))
    result = cli(home, "submit", str(path))

    def check(run: Run) -> None:  # only a version 4 notebook with a kernel is accepted
        doc = json.loads(path.read_bytes())
        assert doc["nbformat"] == 4 and isinstance(doc["cells"], list), doc
        assert (run.kind, run.kernel, run.parameters) == ("fuzzed", doc["metadata"]["kernelspec"]["name"], {})

    submitted_or_refused(home, result, before, check=check)


KNOWN_KEYS = {"retries", "retry_base_delay", "poll", "timeout", "queues", "users", "roles", "retention"}
TOML_KEYS = ["retries", "retry_base_delay", "poll", "timeout", "queues", "users", "roles", "retention",
             "bogus", "Retries", ""]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


TOML_VALUES = st.recursive(
    st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from(["admin", "operator", "viewer", "90s", "0", "-1s", "1e400", "submit", "delete:job", "delete:"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["*", "alice", "root", "succeeded", "running", "analyst", "admin", "x"]), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(table=st.dictionaries(st.sampled_from(TOML_KEYS), TOML_VALUES, max_size=4))
def test_fuzz_config_values(fuzz_home, table):
    home, _ = fuzz_home
    before = state(home)
    (home / "runtool.toml").write_text("".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in table.items()))
    try:
        result = cli(home, "list")
    finally:
        (home / "runtool.toml").unlink()
    unknown = set(table) - KNOWN_KEYS
    retries = table.get("retries", 0)
    if unknown or type(retries) is not int or not 0 <= retries <= 100:
        assert result.code == 2, (table, result)  # an unknown key or a bad value: always refused
    if result.code != 0:
        assert str(home / "runtool.toml") in refused(result)
    assert state(home) == before


@FUZZ
@given(text=st.text(alphabet=st.characters(blacklist_categories=())) | st.sampled_from(
    ["[users]\nalice = 'root'\n", "[users]\n'*' = 'superuser'\n", "[roles]\nx = ['fly']\n",
     "[roles]\nadmin = ['submit']\n", "retries = 1\nretries = 2\n", "[users\n", "poll = '0s'\n",
     "timeout = 1e400\n", "retention = { succeeded = -1 }\n"]))
def test_fuzz_config_text(fuzz_home, text):
    home, _ = fuzz_home
    before = state(home)
    try:
        (home / "runtool.toml").write_text(text, errors="surrogateescape")
    except UnicodeEncodeError:
        return
    try:
        result = cli(home, "submit", str(home.parent / "job.ipynb"))
        read = (home / "runtool.toml").read_text(encoding="utf-8", errors="replace")  # as runtool reads it
    finally:
        (home / "runtool.toml").unlink()
    if result.code == 0:  # valid TOML of known keys only (line ends read as text files are: \r is \n)
        assert set(tomllib.loads(read)) <= KNOWN_KEYS, text
        with RunQueue(home) as q:
            q.delete(int(result.out))
        return
    line = refused(result, result.code)
    if result.code == 1:  # a valid file whose roles refuse this user
        assert "may not submit" in line
    else:
        assert str(home / "runtool.toml") in line
    assert state(home) == before


def test_library_errors_are_one_line(fuzz_home):
    """Spot check of the API side: every RuntoolError str() is one line, even for odd input."""
    home, _ = fuzz_home
    with RunQueue(home) as q:
        for bad in ("a\nb", "\r", "\u2028"):
            with pytest.raises(RuntoolError) as caught:
                q.submit(bad)
            assert "\n" not in str(caught.value) and "\r" not in str(caught.value)


CODE_LIKE = ['"; import os; os._exit(3); "', "'''", '"""', "\\", "\\'", '\\"', "\n", "\r\n", "\u2028", "\x00",
             "{run_id}", "%s %(x)s", "é😀中\U0010ffff", "__import__('os').system('touch PWNED')",
             "#", "\\u0041", "${HOME}", "`id`", "a" * 100_000]


@pytest.mark.kernel
@pytest.mark.slow
def test_hostile_values_reach_the_notebook_unchanged(home, tmp_path):
    """Code-like, quoting, control and huge values are data to the notebook, never code."""
    nb = notebook(tmp_path / "echo.ipynb", parameters='label = "a"\nitems = None\nn = 1\nx = 0.5\nrun_dir = ""\n',
                  body=[("import json, os\n"
                         "with open(os.path.join(run_dir, 'echo.json'), 'w') as f:\n"
                         "    json.dump({'label': label, 'items': items, 'n': n, 'x': x}, f)")])
    given = {"label": "'''\"\"\"\\\n" + CODE_LIKE[0], "n": 2**70, "x": 5e-324,
             "items": [CODE_LIKE, {s[:50]: s[:50] for s in CODE_LIKE}, [[[None, True, -0.0]]]]}
    with RunQueue(home) as q:
        run = q.submit(nb, given)
        assert runtool(home, "drain").code == 0
        assert q.get(run.id).status.value == "succeeded", q.get(run.id).error
    echoed = json.loads((Path(run.run_dir) / "echo.json").read_text())
    assert echoed == json.loads(json.dumps(given))
    assert not (tmp_path / "PWNED").exists()
