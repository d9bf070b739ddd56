"""The dashboard's Compare tab and the Submit form's sweep, without a browser: a real home
whose sweep of a scoring notebook was executed by `runtool drain`."""

from __future__ import annotations

import re

import pytest

from helpers import notebook, runtool, text_of
from runtool.api import RunQueue
from runtool.models import Status
from runtool.widgets import Dashboard
from runtool.widgets_compare import TIME, Point, points, scatter_svg, sorted_runs

SCORED = ("import json, os\n"
          "json.dump({'acc': round(1 - 1 / (1 + c), 3), 'size': len(label)},\n"
          "          open(os.path.join(run_dir, 'metrics.json'), 'w'))")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    nb = notebook(base / "scored.ipynb", parameters="c = 1.0\nlabel = 'a'\nrun_dir = ''\n", body=[SCORED])
    other = notebook(base / "plain.ipynb", parameters=None, body=["print(1)"])
    home = base / "home"
    with RunQueue(home) as q:
        runs = q.sweep(nb, grid={"c": [0.1, 1.0, 10.0, 100.0]}, parameters={"label": "abc"})
        q.submit(other)
        waiting = q.submit(nb, {"c": 5.0}, queue="hold")
    assert runtool(home, "drain", "--queue", "default").code == 0
    return home, nb, [r.id for r in runs], waiting.id


@pytest.fixture
def dash(swept):
    made = Dashboard(swept[0], user="alice", refresh_interval=None)
    yield made
    made.close()


@pytest.mark.kernel
def test_compare_plots_a_metric_against_a_parameter_for_the_filtered_kind(dash, swept):
    _, _, ids, waiting = swept
    dash.set_filters(kind="scored")
    dash.show_tab("Compare")
    compare = dash.compare
    compare.choose(metric="acc", against="c")
    svg = compare.plot_html
    assert svg.startswith("<svg") and "(log scale)" in svg  # 0.1 .. 100 spans three decades
    assert sorted(int(n) for n in re.findall(r'class="rt-cmp-point" data-run="(\d+)"', svg)) == ids
    for run_id in ids:
        assert f">{run_id}</text></g>" in svg  # each point labelled with its run id
    assert waiting not in compare.table_ids  # finished runs only
    assert sorted(compare.table_ids) == sorted(ids)
    compare.choose(against=TIME)
    assert "finished at" in compare.plot_html and compare.plot_html.count("rt-cmp-point") == 4


@pytest.mark.kernel
def test_compare_table_sorts_by_a_metric_and_opens_a_run(dash, swept):
    _, _, ids, _ = swept
    dash.set_filters(kind="scored")
    dash.show_tab("Compare")
    compare = dash.compare
    compare.choose(metric="acc", against="c")
    compare.sort_by("m:acc")
    assert compare.table_ids == list(reversed(ids))  # acc grows with c: highest first
    compare.sort_by("m:acc")
    assert compare.table_ids == ids
    header = [b.description for b in compare._head.children if hasattr(b, "description")]
    assert header[:1] == ["run"] and "acc ▲" in header and "c" in header
    row = next(r for r in compare._rows if r.run_id == ids[2])
    row.open_button.click()
    assert dash.detail.run_id == ids[2] and dash._tabs.selected_index == 0


@pytest.mark.kernel
def test_compare_of_a_kind_without_metrics_says_so(dash):
    dash.set_filters(kind="plain")
    dash.show_tab("Compare")
    assert "recorded metrics" in text_of(dash.compare._note.value)
    assert dash.compare.plot_html == "" and dash.compare.table_ids


@pytest.mark.kernel
def test_form_submits_a_sweep_and_a_fan_in(dash, swept):
    _, nb, ids, _ = swept
    form = dash.form
    form.fill(notebook=str(nb))
    form.fill(grid="c=2,3; label=x,y", queue="hold")
    form.submit()
    message = text_of(form.message)
    match = re.fullmatch(r"submitted runs (\d+)–(\d+) \(sweep \1, 4 runs\)", message)
    assert match, message
    first, last = int(match.group(1)), int(match.group(2))
    with RunQueue(swept[0]) as q:
        made = [q.get(i) for i in range(first, last + 1)]
    assert [(r.parameters["c"], r.parameters["label"]) for r in made] == [
        (2.0, "x"), (2.0, "y"), (3.0, "x"), (3.0, "y")]
    assert {r.tags["sweep"] for r in made} == {str(first)}
    form.fill(grid="", after=f"{ids[0]}, {ids[1]}", on="finish")
    form.submit()
    with RunQueue(swept[0]) as q:
        fan_in = q.list(limit=1)[0]
    assert fan_in.after == ids[:2] and fan_in.status is Status.WAITING
    before = len(RunQueue(swept[0]).list(limit=500))
    form.fill(grid="c=2,abc")
    form.submit()
    assert text_of(form.message) == "bad value 'abc' for parameter 'c': expected float (declared as c = 1.0)"
    assert len(RunQueue(swept[0]).list(limit=500)) == before


def test_plain_plot_helpers():
    assert "no finished run" in scatter_svg([], "x", "y")
    categorical = scatter_svg([Point(1, '"a"', 0.5), Point(2, '"b"', 0.7)], "label", "acc")
    assert "&quot;a&quot;" in categorical and "log scale" not in categorical
    same = scatter_svg([Point(3, 1.0, 0.5)], "c", "acc")  # one point: no division by zero
    assert 'data-run="3"' in same
    assert points([], "acc", "c") == []


@pytest.mark.kernel
def test_sorting_puts_runs_without_the_value_last(swept):
    with RunQueue(swept[0]) as q:
        runs = q.list(limit=50)
    ordered = sorted_runs(runs, "m:acc", descending=True)
    with_acc = [r for r in ordered if "acc" in r.metrics]
    assert ordered[: len(with_acc)] == with_acc
    assert sorted_runs(runs, "p:label", descending=False)[0].parameters.get("label") is not None
