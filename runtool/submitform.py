"""The Submit form: fields generated from a notebook's parameters cell, then `RunQueue.submit`.

A field's text means what `runtool submit -p NAME TEXT` means (typed as papermill infers it,
kept as text for a str parameter); list and dict fields are read as YAML, as `-y` reads them.
Only fields changed from the notebook's default are sent, so a run records what was chosen,
and the library refuses a bad value with the same message as the command line.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from . import dashview as view
from .api import RunQueue
from .cliparams import parse_grid
from .dashrefresh import locked
from .errors import InvalidInput, RuntoolError
from .models import Run
from .params import RUNTIME_PARAMETERS, NotebookInfo, Parameter, from_cli_text

DASHBOARD_NOTEBOOK = "dashboard.ipynb"
#: The library's messages name command-line options; the form names its fields instead.
FIELD_NAMES = {"--after": "After run", "--on": "if it", "--in": "Start in", "--at": "Start in",
               "--queue": "Queue", "--priority": "Priority"}
_OPTION = re.compile("(" + "|".join(re.escape(o) for o in FIELD_NAMES) + r")\b")


def in_form_words(message: str) -> str:
    """A library message as the form says it: `bad --after 999` -> `bad "After run" 999`."""
    return _OPTION.sub(lambda m: f'"{FIELD_NAMES[m.group(1)]}"', message)


def default_text(param: Parameter) -> str:
    """The default as a person would type it into the field."""
    if param.type_name == "str" and isinstance(param.default, str):
        return param.default
    if isinstance(param.default, (int, float, bool)) or param.default is None:
        return repr(param.default)
    text = json.dumps(param.default, ensure_ascii=False)
    if text.isprintable():
        return text
    import yaml  # YAML's own escapes for what JSON would leave raw (control characters)

    return str(yaml.safe_dump(param.default, default_flow_style=True, width=10**9)).strip()


def form_value(param: Parameter, text: str | bool) -> Any:
    """The value a field's text stands for (checked later by the library, as for the CLI)."""
    if isinstance(text, bool):
        return text
    if param.type_name in ("list", "dict"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            first = (str(exc).splitlines() or ["error"])[0]
            raise InvalidInput(f"bad value for parameter {param.name!r}: not valid YAML ({first})") from None
    return from_cli_text(text, param)


def changed_parameters(info: NotebookInfo, fields: dict[str, str | bool]) -> dict[str, Any]:
    """The parameters whose field differs from the notebook's default."""
    chosen = {}
    for name, text in fields.items():
        param = info.parameters[name]
        unchanged = text == param.default if isinstance(text, bool) else text == default_text(param)
        if not unchanged:
            chosen[name] = form_value(param, text)
    return chosen


def known_notebooks(q: RunQueue, extra_dirs: list[Path] | None = None) -> list[str]:
    """Notebooks to suggest: those of the repository's notebooks/ folder, then of recent runs."""
    import runtool

    found: list[str] = []
    folders = [Path(runtool.__file__).resolve().parent.parent / "notebooks", *(extra_dirs or [])]
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in sorted(folder.glob("*.ipynb")) if p.name != DASHBOARD_NOTEBOOK]
    found += [run.notebook for run in q.list(limit=200)]
    return list(dict.fromkeys(found))


class SubmitForm(widgets.VBox):
    """Pick a notebook, fill in its parameters and queue options, submit one run."""

    def __init__(self, queue: RunQueue, on_submit: Callable[[Run], None],
                 lock: threading.RLock | None = None, **kwargs: Any) -> None:
        self._lock = lock or threading.RLock()  # the dashboard's: its refresh thread shares the store
        self._q = queue
        self._on_submit = on_submit
        self._info: NotebookInfo | None = None
        self._inputs: dict[str, widgets.ValueWidget] = {}
        wide = {"description_width": "90px"}

        self._notebook = widgets.Combobox(
            description="Notebook", placeholder="path of a notebook (.ipynb)", ensure_option=False,
            style=wide, layout=widgets.Layout(width="100%", max_width="720px"))
        self._about = widgets.HTML()
        self._fields = widgets.VBox()
        self._queue = widgets.Combobox(description="Queue", value="default", style=wide,
                                       layout=widgets.Layout(width="320px"))
        self._priority = widgets.Dropdown(description="Priority", options=["normal", "high", "low"],
                                          style=wide, layout=widgets.Layout(width="320px"))
        self._delay = widgets.Text(description="Start in", placeholder="now, or e.g. 90s, 5m, 2h",
                                   style=wide, layout=widgets.Layout(width="320px"))
        self._after = widgets.Text(description="After run", placeholder="run id(s), e.g. 3, 4 (optional)",
                                   style=wide, layout=widgets.Layout(width="320px"))
        self._grid = widgets.Text(description="Sweep", placeholder="one run per combination: C=1,10; seed=0,1",
                                  style=wide, layout=widgets.Layout(width="520px"))
        self._on = widgets.Dropdown(description="if it", options=[
            ("succeeded", "success"), ("failed", "failure"), ("finished", "finish")],
            style={"description_width": "40px"}, layout=widgets.Layout(width="200px"))
        self._submit = widgets.Button(description="Submit", icon="play", button_style="primary")
        self._message = widgets.HTML()

        self._notebook.add_class("rt-notebook")
        self._submit.add_class("rt-submit")
        self._notebook.observe(self._on_notebook_value, "value")
        self._submit.on_click(self._on_submit_click)

        allowed = queue.can("submit")
        notice = "" if allowed else view.message_html(
            f"user {queue.user!r} (role {queue.role}) may not submit runs", "info")
        super().__init__([
            widgets.HTML(notice or '<div class="rt-form-note">Runs the notebook with the values '
                         "below; fields left at the notebook's default are not sent.</div>"),
            self._notebook, self._about, self._fields,
            widgets.HTML('<div class="rt-section">Run options</div>'),
            widgets.HBox([self._queue, self._priority]),
            widgets.HBox([self._delay]),
            widgets.HBox([self._grid]),
            widgets.HBox([self._after, self._on]),
            self._submit, self._message,
        ], **kwargs)
        self.add_class("rt-form")
        self._submit.disabled = not allowed
        self.suggest()

    # -- what tests and the dashboard ask ----------------------------------------------

    @property
    def message(self) -> str:
        return self._message.value

    @property
    def parameter_names(self) -> list[str]:
        return list(self._inputs)

    def fill(self, notebook: str | None = None, **values: Any) -> None:
        """Set fields by name as a person would type them (tests, scripted demos)."""
        if notebook is not None:
            self._notebook.value = notebook
        options = {"queue": self._queue, "priority": self._priority, "delay": self._delay,
                   "after": self._after, "on": self._on, "grid": self._grid}
        for name, value in values.items():
            target = self._inputs.get(name) or options[name]
            target.value = value

    def submit(self) -> None:
        self._submit.click()

    def suggest(self) -> None:
        """Refresh the notebook and queue suggestions (the dashboard calls it on changes)."""
        self._notebook.options = known_notebooks(self._q)
        queues = sorted({"default", *self._q.kinds_and_queues()[1]})
        if list(self._queue.options) != queues:
            self._queue.options = queues

    # -- building the fields -----------------------------------------------------------

    def _load(self, path: str) -> None:
        self._info = None
        rows = self._fields.children
        self._inputs = {}
        self._fields.children = ()
        for row in rows:  # the fields of the previous notebook: free their comms
            for part in row.children:
                part.close()
            row.close()
        if not path.strip():
            self._about.value = ""
            return
        if not path.endswith(".ipynb"):
            self._about.value = view.message_html("type or pick the path of a notebook (.ipynb)")
            return
        try:
            info = self._q.inspect(path)
        except RuntoolError as exc:
            self._about.value = view.message_html(str(exc), "error")
            return
        self._info = info
        rows = []
        for param in info.parameters.values():
            if param.name in RUNTIME_PARAMETERS:
                continue
            field = _field(param)
            field.add_class(f"rt-param-{param.name}")
            self._inputs[param.name] = field
            rows.append(widgets.HBox([
                widgets.HTML(f'<b>{escape(param.name)}</b> <span class="rt-logname">{param.type_name}</span>',
                             layout=widgets.Layout(width="220px")),
                field,
                widgets.HTML(f'<span class="rt-param-help">{escape(param.help)}</span>'),
            ], layout=widgets.Layout(align_items="center")))
        self._fields.children = rows
        what = f"{len(rows)} parameter(s)" if info.has_parameters_cell else "no parameters cell"
        self._about.value = view.message_html(f"kernel {info.kernel or '(none named)'} · {what}")

    # -- handlers ----------------------------------------------------------------------

    @locked
    def _on_notebook_value(self, change: dict[str, Any]) -> None:
        self._message.value = ""
        self._load(change["new"])

    @locked
    def _on_submit_click(self, _: widgets.Button) -> None:
        if self._info is None:
            self._message.value = view.message_html("pick a notebook first", "error")
            return
        after_text = self._after.value.strip()
        grid_text = self._grid.value.strip()
        try:
            parameters = changed_parameters(self._info, {n: w.value for n, w in self._inputs.items()})
            options: dict[str, Any] = dict(
                queue=self._queue.value.strip(), priority=self._priority.value,
                delay=self._delay.value.strip() or None, after=_after(after_text), on=self._on.value)
            if grid_text:
                grid = parse_grid(self._info, tuple(p.strip() for p in grid_text.split(";") if p.strip()))
                for name in grid:  # the sweep's values replace the field's
                    parameters.pop(name, None)
                runs = self._q.sweep(self._notebook.value, grid, parameters, **options)
            else:
                runs = [self._q.submit(self._notebook.value, parameters, **options)]
        except RuntoolError as exc:
            self._message.value = view.message_html(in_form_words(str(exc)), "error")
            return
        run = runs[0]
        if len(runs) > 1:
            text = f"submitted runs {run.id}–{runs[-1].id} (sweep {run.id}, {len(runs)} runs)"
        else:
            text = f"submitted run {run.id} ({run.label(run.created_at)})"
        self._message.value = view.message_html(text, "ok")
        self._on_submit(run)


def _after(text: str) -> list[int | str] | None:
    """Run ids (separated by commas or spaces); other text is passed on for the library to
    refuse with its own message."""
    parts = text.replace(",", " ").split()
    if not parts:
        return None
    return [int(p) if p.isascii() and p.isdigit() else p for p in parts]


def _field(param: Parameter) -> widgets.ValueWidget:
    layout = widgets.Layout(width="320px")
    if param.type_name == "bool" and isinstance(param.default, bool):
        return widgets.Checkbox(value=param.default, indent=False, layout=layout)
    return widgets.Text(value=default_text(param), layout=layout, continuous_update=True)
