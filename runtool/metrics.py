"""The numbers a finished run recorded: its record's `metrics`.

Two sources, both read once when the run finishes: the top-level numeric values of
`metrics.json` in the run folder, and scrapbook scraps glued in the output notebook (read
from the notebook's outputs, so the scrapbook package is not needed). A name found in both
takes the value of `metrics.json`, the file the notebook wrote on purpose.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

from .config import METRICS_FILE, OUTPUT_FILE

#: Larger files are not read: metrics are a few numbers, not data.
MAX_METRICS_BYTES = 1_000_000
#: Output notebooks can be large (images); beyond this size their scraps are not looked for.
MAX_NOTEBOOK_BYTES = 200_000_000
MAX_METRICS = 200
MAX_NAME = 100
_SCRAP_MIME = "application/scrapbook.scrap.json+json"


def read_metrics(run_dir: str | Path) -> dict[str, float]:
    """The run's metrics: scraps of the output notebook, then metrics.json; {} when none."""
    folder = Path(run_dir)
    found = scraps(_load(folder / OUTPUT_FILE, MAX_NOTEBOOK_BYTES))
    data = _load(folder / METRICS_FILE, MAX_METRICS_BYTES)
    if isinstance(data, dict):
        found.update(numbers(data))
    return dict(list(found.items())[:MAX_METRICS])


def numbers(mapping: dict[Any, Any]) -> dict[str, float]:
    """The entries of `mapping` whose value is a finite number (not a bool)."""
    return {k: v for k, v in mapping.items() if isinstance(k, str) and 0 < len(k) <= MAX_NAME and is_number(v)}


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def scraps(nb: Any) -> dict[str, float]:
    """Numeric scraps glued with `scrapbook.glue(name, value)` in notebook `nb` (the last glue wins)."""
    found: dict[str, float] = {}
    cells = nb.get("cells") if isinstance(nb, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for output in outputs if isinstance(outputs, list) else []:
            data = output.get("data") if isinstance(output, dict) else None
            scrap = data.get(_SCRAP_MIME) if isinstance(data, dict) else None
            if isinstance(scrap, dict) and isinstance(scrap.get("name"), str):
                found.update(numbers({scrap["name"]: scrap.get("data")}))
    return found


def _load(path: Path, limit: int) -> Any:
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None  # a run with unreadable metrics still finishes; it just records none
