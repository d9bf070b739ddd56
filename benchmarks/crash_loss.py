"""What each store does with an item whose consumer is killed (SIGKILL) after claiming it.

For every store: 10 items enqueued; a consumer process claims one and is killed before it
completes it; then the library's own recovery (if it has one) runs and a fresh consumer
claims until the store is empty. Reported: whether the killed consumer's item was delivered
again (none lost) and whether any item was delivered twice after recovery.

    .venv/bin/python benchmarks/crash_loss.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import stores  # noqa: E402

ITEMS = 10
CONSUMER = """
import sys, time
sys.path.insert(0, {bench!r})
import stores
adapter = stores.ADAPTERS[{name!r}](__import__("pathlib").Path({folder!r}))
n, handle = adapter.claim()
print(n, flush=True)
time.sleep(120)
"""


def recover(name: str, folder: Path) -> str:
    """The library's own way back for items held by a dead consumer."""
    if name == "runtool":
        from runtool import RunQueue

        (folder / "home" / "runtool.toml").write_text('retry_base_delay = "0s"\n')
        with RunQueue(folder / "home", user="bench") as q:
            return f"`reconcile`: {len(q.reconcile())} run(s) back to waiting"
    if name.startswith("persist-queue"):
        from persistqueue import SQLiteAckQueue

        SQLiteAckQueue(str(folder / "pq"), auto_resume=True).close()
        return "reopen with `auto_resume=True` (unacked -> ready)"
    if name == "litequeue":
        from litequeue import LiteQueue

        lq = LiteQueue(str(folder / "lq.db"))
        locked = list(lq.list_locked(0))
        for message in locked:
            lq.retry(message.message_id)
        lq.conn.close()
        return f"`retry` of {len(locked)} message(s) from `list_locked(0)`"
    return "none (`dequeue` deleted the task)"


def trial(name: str) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="crashloss-"))
    adapter = stores.ADAPTERS[name](folder)
    for i in range(ITEMS):
        adapter.enqueue(i)
    adapter.close()
    code = CONSUMER.format(bench=str(Path(__file__).parent), name=name, folder=str(folder))
    consumer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    held = int(consumer.stdout.readline())
    os.kill(consumer.pid, signal.SIGKILL)
    consumer.wait()
    how = recover(name, folder)
    adapter = stores.ADAPTERS[name](folder)
    delivered = []
    while (item := adapter.claim()) is not None:
        delivered.append(item[0])
        adapter.complete(item[1])
    adapter.close()
    return {"store": name, "recovery": how, "held item delivered again": held in delivered,
            "lost": ITEMS - len(set(delivered)), "delivered twice": len(delivered) - len(set(delivered))}


def main() -> None:
    rows = [trial(name) for name in stores.ADAPTERS]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
