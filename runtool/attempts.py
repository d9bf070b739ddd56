"""An attempt's files on a shared store: written privately, put in place by their owner.

With several machines a frozen or cut-off worker may come back after its run was taken
over. So an attempt writes its output notebook, logs, error and the notebook's own files
into `Run.attempt_dir`, and only whoever records the attempt (its worker, or reconcile),
inside the transaction whose guarded update made that decision, moves them into the run
folder. A late attempt writes only into its own private folder, removed when another is
put in place. On a one-machine (SQLite) store attempts write into the run folder directly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config import ATTEMPT_PREFIX, LOG_FILES
from .errors import IllegalTransition
from .models import Run


def files_dir(run: Run, shared: bool) -> Path:
    """Where the attempt's files are written while it runs."""
    return Path(run.attempt_dir if shared else run.run_dir)


def owned_by(run: Run, changed: Run) -> None:
    """Inside the recording transaction: refuse (rolling it back) unless the changed row is
    still the attempt `run` was claimed as (same worker, same claim time)."""
    if changed.worker != run.worker or changed.started_at != run.started_at:
        raise IllegalTransition(run.id, changed.status.value, "record the attempt",
                                "another attempt owns it now")


def publish(run: Run) -> None:
    """Move the attempt's private files into the run folder (logs are appended, other files
    replace those of earlier attempts), then remove every private attempt folder."""
    private = Path(run.attempt_dir)
    folder = Path(run.run_dir)
    if private.is_dir():
        for entry in sorted(private.iterdir()):
            target = folder / entry.name
            try:
                if entry.name in LOG_FILES and entry.is_file() and not entry.is_symlink():
                    with open(entry, "rb") as source, open(target, "ab") as sink:
                        shutil.copyfileobj(source, sink)
                    entry.unlink()
                    continue
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                os.replace(entry, target)
            except OSError:
                continue  # a full or read-only disk: the record holds the outcome all the same
    for leftover in folder.glob(f"{ATTEMPT_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
