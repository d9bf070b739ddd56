"""Papermill's habits kept (parameter typing, SystemExit, magics, kernel death) and failing fast
on errors a retry cannot cure (`no_retry`)."""

from __future__ import annotations

import pytest

from helpers import notebook, runtool, write_config
from runtool import InvalidInput, RunQueue, Status
from runtool.worker import Limits, Worker


def drain(q: RunQueue) -> tuple[int, str]:
    return Worker(q, [], limits=Limits()).drain()


@pytest.fixture
def typed(tmp_path):
    return notebook(tmp_path / "typed.ipynb", parameters="threshold = 1\nitems = [1, 2]\nopts = {'a': 1}\n",
                    body=["print(threshold, items, opts)"])


def test_int_declared_parameter_accepts_a_float_from_the_cli_and_the_api(home, typed):
    result = runtool(home, "submit", str(typed), "-p", "threshold", "0.5", "--json")
    assert result.code == 0, result.err
    assert '"threshold": 0.5' in result.out
    assert RunQueue(home).submit(typed, {"threshold": 2.5}).parameters == {"threshold": 2.5}
    assert RunQueue(home).submit(typed, {"threshold": 3}).parameters == {"threshold": 3}


def test_list_or_dict_given_with_p_is_refused_with_a_hint_to_use_y(home, typed):
    result = runtool(home, "submit", str(typed), "-p", "items", "[3, 4]")
    assert result.code == 2
    assert result.err == ("runtool: bad value '[3, 4]' for parameter 'items': expected list "
                          "(declared as items = [1, 2]); give lists and dicts as YAML: -y 'items: [1, 2]'\n")
    result = runtool(home, "submit", str(typed), "-p", "opts", "{a: 2}")
    assert result.code == 2 and "-y 'opts: {a: 1}'" in result.err
    assert RunQueue(home).count() == 0
    # the hinted form works
    result = runtool(home, "submit", str(typed), "-y", "items: [3, 4]\nopts: {a: 2}", "--json")
    assert result.code == 0 and '"items": [\n      3,\n      4\n    ]' in result.out
    with pytest.raises(InvalidInput, match="expected int"):
        RunQueue(home).submit(typed, {"threshold": "high"})


def run_body(q: RunQueue, tmp_path, name: str, body: list[str], retries: int = 0):
    nb = notebook(tmp_path / f"{name}.ipynb", parameters=None, body=body)
    run = q.submit(nb, retries=retries)
    drain(q)
    return q.get(run.id, history=True)


@pytest.mark.kernel
def test_sys_exit_follows_papermill(q, tmp_path, no_leftovers):
    ok = run_body(q, tmp_path, "exit0", ["import sys\nsys.exit(0)", "print('after')"])
    assert ok.status is Status.SUCCEEDED and ok.error is None
    bad = run_body(q, tmp_path, "exit1", ["import sys\nsys.exit(1)"])
    assert bad.status is Status.FAILED
    assert (bad.error["type"], bad.error["message"], bad.error["cell"]) == ("SystemExit", "1", 1)
    said = run_body(q, tmp_path, "exitmsg", ["import sys\nsys.exit('no data for today')"])
    assert (said.error["type"], said.error["message"]) == ("SystemExit", "no data for today")


@pytest.mark.kernel
def test_unknown_magic_keeps_ipythons_usage_error_and_fails_at_once(q, tmp_path, no_leftovers):
    run = run_body(q, tmp_path, "magic", ["x = 1", "%definitely_not_a_magic 3"], retries=3)
    assert run.status is Status.FAILED and run.attempt == 1
    assert run.error["type"] == "UsageError"
    assert "definitely_not_a_magic" in run.error["message"] and "not found" in run.error["message"]
    assert run.error["cell"] == 2
    assert run.history[-1]["reason"].endswith("not retried: UsageError is in no_retry")


@pytest.mark.kernel
def test_cell_magic_error_keeps_its_type(q, tmp_path, no_leftovers):
    run = run_body(q, tmp_path, "bash", ["%%bash\nexit 3"])
    assert run.error["type"] == "CalledProcessError"
    assert "exit status 3" in run.error["message"]


@pytest.mark.kernel
def test_kernel_death_is_recorded_as_such(q, tmp_path, no_leftovers):
    run = run_body(q, tmp_path, "die", ["import os\nos._exit(1)"])
    assert run.status is Status.FAILED
    assert (run.error["type"], run.error["message"]) == ("DeadKernelError", "Kernel died")


@pytest.mark.kernel
def test_notebook_without_parameters_cell_runs_without_parameters(q, tmp_path, no_leftovers):
    run = run_body(q, tmp_path, "plain", ["print('plain')"])
    assert run.status is Status.SUCCEEDED


@pytest.mark.kernel
def test_name_error_fails_at_once_and_says_why(q, tmp_path, no_leftovers):
    run = run_body(q, tmp_path, "typo", ["print(undefined_name)"], retries=3)
    assert (run.status, run.attempt, run.error["type"]) == (Status.FAILED, 1, "NameError")
    assert [h["status"] for h in run.history] == ["waiting", "processing", "failed"]
    assert run.history[-1]["reason"] == ("NameError: name 'undefined_name' is not defined; "
                                         "not retried: NameError is in no_retry")
    missing = run_body(q, tmp_path, "missing", ["import no_such_package_xyz"], retries=3)
    assert (missing.status, missing.error["type"]) == (Status.FAILED, "ModuleNotFoundError")


@pytest.mark.kernel
def test_other_errors_still_retry_and_no_retry_is_a_setting(home, tmp_path, no_leftovers):
    write_config(home, 'retry_base_delay = "1h"\nno_retry = ["ValueError"]\n')
    q = RunQueue(home)
    value = run_body(q, tmp_path, "value", ["raise ValueError('bad')"], retries=3)
    assert (value.status, value.attempt) == (Status.FAILED, 1)
    name = run_body(q, tmp_path, "name", ["print(undefined_name)"], retries=3)
    assert (name.status, name.label(0)) == (Status.WAITING, "retrying")  # not in this home's list
    assert "retry 1 of 3" in name.history[-1]["reason"]


@pytest.mark.parametrize("value", ['"NameError"', "[1]", '["bad name"]'])
def test_bad_no_retry_setting_is_one_line(home, job, value):
    write_config(home, f"no_retry = {value}\n")
    result = runtool(home, "list")
    assert result.code == 2
    assert result.err.startswith(f"runtool: {home.absolute()}/runtool.toml: no_retry: expected a list")
