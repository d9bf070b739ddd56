"""Submitting: validation of every input, and the refusals that leave the store untouched."""

from __future__ import annotations

import json

import pytest

from helpers import cli, notebook, runtool, write_config
from runtool import InvalidInput, RunQueue, Status

pytestmark = pytest.mark.both_stores


def test_submit_prints_id_and_stores_a_waiting_run(home, job):
    code, out, err = cli(home, "submit", str(job), "-p", "n", "5", "-p", "label", "7",
                         "--tag", "detectionRunId=a1b2")
    assert (code, out.strip(), err) == (0, "1", "")
    run = RunQueue(home).get(1, history=True)
    assert run.status is Status.WAITING
    assert run.parameters == {"n": 5, "label": "7"}  # a str parameter keeps -p text as text
    assert run.tags == {"detectionRunId": "a1b2"}
    assert run.kind == "job" and run.queue == "default" and run.max_attempts == 4
    assert [h["status"] for h in run.history] == ["waiting"]


def test_submit_json_record_has_the_contract_fields(home, job):
    code, out, _ = cli(home, "submit", str(job), "--json", "--priority", "high", "--queue",
                       "detection", "--retries", "1", "--timeout", "5m", "--kind", "det")
    record = json.loads(out)
    assert code == 0
    for key in ("id", "notebook", "kind", "queue", "priority", "status", "parameters", "tags",
                "attempt", "max_attempts", "timeout_s", "created_at", "not_before", "started_at",
                "finished_at", "heartbeat_at", "after", "after_on", "submitted_by", "worker",
                "progress", "run_dir", "output_path", "error"):
        assert key in record
    assert (record["priority"], record["queue"], record["max_attempts"], record["timeout_s"],
            record["kind"], record["attempt"]) == (10, "detection", 2, 300.0, "det", 0)
    assert record["created_at"].endswith("+00:00")
    assert record["output_path"] == f"{home.absolute()}/runs/1/output.ipynb"


def test_parameter_options_combine_like_papermill(home, job, tmp_path):
    params_file = tmp_path / "p.yaml"
    params_file.write_text("n: 2\nx: 1.5\n")
    code, out, _ = cli(home, "submit", str(job), "-f", str(params_file), "-y", "x: 2.5\nflag: true",
                       "--params-json", '{"label": "j"}', "-p", "n", "9", "--json")
    assert code == 0
    assert json.loads(out)["parameters"] == {"n": 9, "x": 2.5, "flag": True, "label": "j"}


def test_int_is_accepted_for_a_float_parameter(home, job):
    run = RunQueue(home).submit(job, {"x": 3})
    assert run.parameters == {"x": 3.0}


BAD_SUBMISSIONS = [
    (["-p", "n", "abc"], "bad value 'abc' for parameter 'n': expected int"),
    (["-p", "nope", "1"], "unknown parameter 'nope'"),
    (["-p", "flag", "3"], "parameter 'flag': expected bool"),
    (["-p", "run_id", "3"], "filled in by runtool"),
    (["--in", "5x"], "bad delay '5x'"),
    (["--timeout", "-3"], "bad timeout"),
    (["--after", "99"], "bad --after 99: no such run"),
    (["--queue", "Bad Queue"], "bad queue name 'Bad Queue'"),
    (["--priority", "urgent"], "bad priority 'urgent'"),
    (["--params-json", "{not json"], "bad --params-json: not valid JSON"),
    (["--params-json", "[1, 2]"], "bad --params-json: expected a JSON object"),
    (["--params-json", '{"x": NaN}'], "NaN and infinity are not allowed"),
    (["-y", "a: [unclosed"], "bad -y: not valid YAML"),
    (["-y", "- 1\n- 2"], "bad -y: expected a mapping"),
    (["-f", "/nonexistent/p.yaml"], "bad -f /nonexistent/p.yaml: cannot read"),
    (["--tag", "novalue"], "bad --tag 'novalue'"),
    (["--retries", "-1"], "bad --retries -1"),
    (["--kernel", "no-such-kernel"], "unknown kernel 'no-such-kernel'"),
    (["--kind", "a b"], "bad kind 'a b'"),
    (["--at", "tomorrow"], "bad time 'tomorrow'"),
    (["--in", "5m", "--at", "2030-01-01T00:00"], "either a delay"),
    (["--on", "sometimes"], "Invalid value for '--on'"),
    (["--bogus"], "No such option '--bogus'"),
]


@pytest.mark.parametrize("args, message", BAD_SUBMISSIONS, ids=[" ".join(a) for a, _ in BAD_SUBMISSIONS])
def test_bad_submission_is_one_line_exit_2_and_stores_nothing(home, job, args, message):
    code, out, err = cli(home, "submit", str(job), *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("runtool: ") and message in err
    assert RunQueue(home).count() == 0


def test_bad_notebooks_are_refused(home, tmp_path):
    corrupt = tmp_path / "corrupt.ipynb"
    corrupt.write_text('{"cells": [')
    old = tmp_path / "old.ipynb"
    old.write_text(json.dumps({"nbformat": 3, "worksheets": []}))
    plain = notebook(tmp_path / "plain.ipynb", parameters=None, body=["print(1)"])
    no_kernel = notebook(tmp_path / "nokernel.ipynb", kernel=None)
    bad_cell = notebook(tmp_path / "badcell.ipynb", parameters="n = (1,")
    cases = [
        ([str(tmp_path / "missing.ipynb")], "not found"),
        ([str(corrupt)], "not valid notebook JSON"),
        ([str(old)], "not a version 4 Jupyter notebook"),
        ([str(tmp_path)], "is a folder"),
        ([str(plain), "-p", "n", "1"], "has no cell tagged 'parameters'"),
        ([str(no_kernel)], "names no kernel; pass --kernel NAME"),
        ([str(bad_cell), "-p", "n", "1"], "parameters cell is not valid Python"),
    ]
    for args, message in cases:
        code, out, err = cli(home, "submit", *args)
        assert (code, out) == (2, ""), args
        assert message in err and err.count("\n") == 1, err
    assert RunQueue(home).count() == 0
    # the same notebook without kernelspec is fine once a kernel is named
    code, out, _ = cli(home, "submit", str(no_kernel), "--kernel", "python3")
    assert (code, out.strip()) == (0, "1")


def test_notebook_without_parameters_cell_runs_without_parameters(home, tmp_path):
    plain = notebook(tmp_path / "plain.ipynb", parameters=None, body=["print(1)"])
    assert RunQueue(home).submit(plain).parameters == {}


def test_errors_in_a_real_process_have_no_traceback(home, job):
    result = runtool(home, "submit", str(job), "-p", "n", "abc")
    assert result.code == 2
    assert result.err == "runtool: bad value 'abc' for parameter 'n': expected int (declared as n = 1)\n"
    assert "Traceback" not in result.err
    assert not (home / "runtool.db").exists() or RunQueue(home).count() == 0


def test_bad_config_names_file_key_and_reason(home, job):
    write_config(home, 'retries = "many"\n')
    result = runtool(home, "submit", str(job))
    assert result.code == 2
    assert result.err.strip() == f"runtool: {home.absolute()}/runtool.toml: retries: expected a whole number from 0 to 100"
    write_config(home, "colour = 1\n")
    assert "colour: unknown setting" in runtool(home, "list").err
    write_config(home, "retries = [\n")
    assert "not valid TOML" in runtool(home, "list").err
    write_config(home, '[users]\nbob = "wizard"\n')
    assert "users.bob: unknown role 'wizard'" in runtool(home, "list").err


def test_config_retries_default_is_used(home, job):
    write_config(home, "retries = 1\n")
    assert RunQueue(home).submit(job).max_attempts == 2


def test_api_rejects_bad_values(home, job):
    q = RunQueue(home)
    with pytest.raises(InvalidInput, match="expected int"):
        q.submit(job, {"n": True})
    with pytest.raises(InvalidInput, match="expected a positive whole number"):
        q.get("-3")
    with pytest.raises(InvalidInput, match="parameters must be a mapping"):
        q.submit(job, [1])  # type: ignore[arg-type]
    assert q.count() == 0


def test_submit_and_sweep_name_their_options_for_help_and_jupyter_completion(home):
    """submit/sweep take **options (said once, in SubmitOptions); their signature still names
    each option (DESIGN 8), so help(), tooltips and Jupyter's keyword completion offer them."""
    import dataclasses
    import inspect

    from IPython.core.completer import provisionalcompleter
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from runtool.api import SubmitOptions

    names = [f.name for f in dataclasses.fields(SubmitOptions)]
    assert {"queue", "priority", "delay", "after", "on", "retries", "timeout", "kind", "tags"} <= set(names)
    with RunQueue(home) as q:
        for method, first in ((q.submit, ["notebook", "parameters"]), (q.sweep, ["notebook", "grid", "parameters"])):
            params = inspect.signature(method).parameters
            assert list(params) == first + names
            assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names)
            assert params["queue"].default == "default" and params["on"].default == "success"
        with pytest.raises(TypeError, match="queu"):
            q.submit("nb.ipynb", queu="x")  # a misspelt option is still refused
        config = Config()
        config.HistoryManager.enabled = False  # no history file written
        shell = InteractiveShell.instance(config=config)
        try:
            shell.user_ns["q"] = q
            for code, offered in (("q.submit(nb, que", "queue="), ("q.sweep(nb, g, retr", "retries=")):
                with provisionalcompleter():
                    assert offered in [c.text for c in shell.Completer.completions(code, len(code))]
        finally:
            InteractiveShell.clear_instance()
