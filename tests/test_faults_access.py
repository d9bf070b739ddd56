"""Fault campaign, access: attempts to do what a role forbids through every interface (the
command line, the Python API, the dashboard's buttons, including hidden ones), and
attempts to make a deletion reach outside the run's folder (symlinks, `..`, hard links).
Every attempt is refused and leaves the store and the runs folder exactly as they were."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import pytest
from fault_checks import state
from helpers import ROLES, notebook, runtool, write_config

from runtool import IllegalTransition, InvalidInput, PermissionDenied, RunQueue
from runtool.lock import ExecutorLock
from runtool.models import Claimant


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A home with roles and a run in every status; `held` is processing, executed (as far as
    reconcile can tell) by this process, which holds the executor lock."""
    base = tmp_path_factory.mktemp("access")
    home = base / "home"
    write_config(home, ROLES)
    job = notebook(base / "job.ipynb")
    other = notebook(base / "other.ipynb")
    with RunQueue(home, user="alice") as q:
        ids = {"succeeded": q.submit(job).id, "failed": q.submit(job, {"fail": True}, retries=0).id,
               "other": q.submit(other).id}
        assert runtool(home, "drain").code == 0
        ids["cancelled"] = q.submit(job).id
        q.cancel(ids["cancelled"])
        ids["waiting"] = q.submit(job).id
        ids["held"] = q.submit(job, queue="held").id
        lock = ExecutorLock(home / "executor.lock")
        assert lock.try_acquire("test")
        me = psutil.Process()
        assert q.store.claim(["held"], Claimant(f"test:{me.pid}", me.pid, me.create_time(), "test")).id == ids["held"]
    yield home, ids, job
    lock.release()


#: (user, command line) pairs that must be refused, {name} being a run id of `guarded`
FORBIDDEN = [
    ("carol", ["submit", "{job}"]), ("carol", ["cancel", "{waiting}"]), ("carol", ["delete", "{succeeded}"]),
    ("carol", ["retry", "{failed}"]), ("carol", ["pause"]), ("carol", ["resume"]), ("carol", ["purge", "--older-than", "0s"]),
    ("carol", ["cancel", "{held}", "--force"]),
    ("bob", ["cancel", "{held}", "--force"]), ("bob", ["cancel", "{held}"]), ("bob", ["delete", "{held}"]),
    ("bob", ["purge", "--older-than", "0s"]), ("bob", ["pause", "default"]), ("bob", ["resume"]),
    ("dora", ["delete", "{other}"]), ("dora", ["cancel", "{waiting}"]), ("dora", ["retry", "{failed}"]),
    ("dora", ["cancel", "{held}", "--force"]), ("dora", ["pause"]),
    ("Alice", ["delete", "{succeeded}"]), ("alice ", ["pause"]), ("nobody", ["retry", "{cancelled}"]),
    ("alice", ["delete", "{held}"]), ("alice", ["cancel", "{held}"]),
]


def test_command_line_refuses(guarded):
    home, ids, job = guarded
    names = {**{k: str(v) for k, v in ids.items()}, "job": str(job)}
    before = state(home)
    for user, args in FORBIDDEN:
        result = runtool(home, *[a.format(**names) for a in args], user=user)
        assert result.code == 1, (user, args, result)
        assert result.err.count("\n") == 1 and ("may not" in result.err or "cannot" in result.err), result.err
        assert state(home) == before, (user, args)


def test_an_empty_user_falls_back_to_the_login_and_its_role(guarded):
    home, ids, _ = guarded
    before = state(home)
    result = runtool(home, "delete", str(ids["succeeded"]), env={"RUNTOOL_USER": "", "JUPYTERHUB_USER": ""})
    assert result.code == 1 and "(role viewer)" in result.err  # root is not listed: "*" = viewer
    assert state(home) == before


def test_python_api_refuses(guarded):
    home, ids, job = guarded
    before = state(home)
    attempts = {
        "carol": [lambda q: q.submit(job), lambda q: q.cancel(ids["waiting"]), lambda q: q.delete(ids["failed"]),
                  lambda q: q.retry(ids["cancelled"]), lambda q: q.pause("held"), lambda q: q.resume(),
                  lambda q: q.purge("0s"), lambda q: q.cancel(ids["held"], force=True)],
        "bob": [lambda q: q.cancel(ids["held"], force=True), lambda q: q.purge(0), lambda q: q.pause(),
                lambda q: q.delete(ids["held"]), lambda q: q.cancel(ids["held"], force=False)],
        "dora": [lambda q: q.delete(ids["other"]), lambda q: q.cancel(ids["waiting"]), lambda q: q.retry(ids["failed"])],
        "alice": [lambda q: q.delete(ids["held"]), lambda q: q.retry(ids["succeeded"]),
                  lambda q: q.cancel(ids["succeeded"])],
    }
    for user, actions in attempts.items():
        with RunQueue(home, user=user) as q:
            for action in actions:
                with pytest.raises((PermissionDenied, IllegalTransition)):
                    action(q)
        assert state(home) == before, user


def test_dashboard_refuses_even_hidden_buttons(guarded):
    """A viewer's dashboard hides the actions; clicking them anyway changes nothing."""
    from runtool.widgets import Dashboard

    home, ids, job = guarded
    before = state(home)
    for user, run, presses in (
        ("carol", "waiting", [["cancel"], ["delete", "confirm"]]),
        ("carol", "failed", [["retry"], ["delete", "confirm"]]),
        ("carol", "held", [["force-cancel", "confirm"]]),
        ("bob", "held", [["force-cancel", "confirm"], ["cancel"], ["delete", "confirm"]]),
        ("dora", "other", [["delete", "confirm"]]),
        ("dora", "waiting", [["cancel"]]),
    ):
        dash = Dashboard(home, user=user, refresh_interval=None)
        try:
            dash.select(ids[run])
            for clicks in presses:
                assert clicks[0] not in dash.detail.actions, (user, run, dash.detail.actions)  # not offered
                for name in clicks:
                    dash.detail.press(name)
                assert "may not" in dash.detail.message or "cannot" in dash.detail.message, (user, run, clicks)
                assert state(home) == before, (user, run, clicks)
            if user != "alice":
                assert not dash.admin_controls
                dash._pause.click()  # the hidden Pause button
                dash._resume.click()
                assert "may not" in dash.message
            if user == "carol":
                dash.form.fill(notebook=str(job))
                dash.form.submit()
                assert "may not submit" in dash.form.message
        finally:
            dash.close()
        assert state(home) == before, user


# -- deletion never reaches outside the run's folder ------------------------------------------


def precious(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keep.txt").write_text("keep me")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "deep.txt").write_text("keep me too")
    return folder


def intact(folder: Path) -> bool:
    return ((folder / "keep.txt").read_text() == "keep me"
            and (folder / "sub" / "deep.txt").read_text() == "keep me too")


def test_deletion_stays_inside_the_run_folder(home, job, tmp_path):
    outside = precious(tmp_path / "outside")
    with RunQueue(home) as q:
        runs = [q.submit(job) for _ in range(6)]
        folders = [Path(r.run_dir) for r in runs]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        # 0: links inside to a folder, a file, the home, the runs folder, a sibling run, a loop
        os.symlink(outside, folders[0] / "to-dir")
        os.symlink(outside / "keep.txt", folders[0] / "to-file")
        os.symlink(home, folders[0] / "to-home")
        os.symlink(q.runs_dir, folders[0] / "to-runs")
        os.symlink("../" + str(runs[1].id), folders[0] / "to-sibling")
        os.symlink("loop", folders[0] / "loop")
        # 1: a hard link to a file outside
        os.link(outside / "keep.txt", folders[1] / "hard.txt")
        # 2: the run folder itself a symlink to a folder outside
        shutil.rmtree(folders[2])
        os.symlink(outside, folders[2])
        # 3: the run folder a symlink to the runs folder ("..")
        shutil.rmtree(folders[3])
        os.symlink("..", folders[3])
        # 4: the run folder a symlink to the home
        shutil.rmtree(folders[4])
        os.symlink(home, folders[4])
        # 5: a folder whose name climbs out
        (folders[5] / "...").mkdir()
        for run in runs[:5]:
            q.delete(run.id)
        assert runtool(home, "delete", str(runs[5].id)).code == 0
    assert intact(outside) and (outside / "keep.txt").stat().st_nlink == 1
    assert (home / "runtool.db").is_file()
    assert sorted(p.name for p in (home / "runs").iterdir()) == []
    assert all(not os.path.lexists(f) for f in folders)


@pytest.mark.kernel
def test_purge_and_retention_follow_no_link(home, job, tmp_path):
    outside = precious(tmp_path / "outside")
    with RunQueue(home) as q:
        run = q.submit(job)
        assert runtool(home, "drain").code == 0
        folder = Path(run.run_dir)
        os.symlink(outside, folder / "to-outside")
        moved = folder.with_name("moved")
        folder.rename(moved)
        os.symlink(moved, folder)  # the run folder now a link into runs/ itself
        assert q.purge("0s") == [run.id]
    assert intact(outside) and moved.is_dir() and (moved / "output.ipynb").is_file()


@pytest.mark.kernel
def test_dotted_kinds_and_outputs_never_become_deleted_paths(home, job, tmp_path):
    """A kind may be '..' and OUTPUT may climb with '..': neither is ever a path runtool removes."""
    outside = precious(tmp_path / "outside")
    (tmp_path / "x").mkdir()
    copy = tmp_path / "x" / ".." / "copy.ipynb"
    with RunQueue(home) as q:
        run = q.submit(job, kind="..", output=copy)
        dots = q.submit(job, kind="...", queue="default")
        assert runtool(home, "drain").code == 0
        assert (tmp_path / "copy.ipynb").is_file()
        q.delete(run.id)
        q.delete(dots.id)
    assert (tmp_path / "copy.ipynb").is_file() and intact(outside) and job.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.ipynb", "home", "job.ipynb", "outside", "x"]


@pytest.mark.parametrize("run_id", ["..", "../1", "1/../2", "./1", "1/", "/1", "~1", "1 /", "%2e%2e", "1\x00"])
def test_path_like_run_ids_are_refused_everywhere(home, job, run_id):
    with RunQueue(home) as q:
        q.submit(job)
        q.submit(job)
        before = state(home)
        for action in (q.delete, q.cancel, q.retry, q.get):
            with pytest.raises(InvalidInput):
                action(run_id)
    if "\x00" not in run_id:
        result = runtool(home, "delete", "--", run_id)
        assert result.code == 2 and "bad run id" in result.err
    assert state(home) == before
