"""The stores the contract suite (and every store-parametrized test) runs on.

Each entry prepares a home whose `open_store` gives that store: SQLite needs nothing;
further stores write their `[store]` table into the home's runtool.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pg

#: Store kind -> a function that prepares a fresh, empty home for it.
PREPARE: dict[str, Callable[[Path], None]] = {
    "sqlite": lambda home: home.mkdir(parents=True, exist_ok=True),
    "postgres": pg.prepare_home,  # a fresh database of the session's throwaway server
}
STORE_KINDS = list(PREPARE)
