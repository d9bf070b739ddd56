"""The `runtool` command: each command gathers its options and makes one library call.

Errors are one line on stderr, exit 1 for a refused request and 2 for invalid input.
The library is imported inside the commands so that `--help` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import format as fmt
from .models import Status

if TYPE_CHECKING:
    from .api import RunQueue

STATUSES = tuple(s.value for s in Status)


def _fail(message: str, code: int) -> NoReturn:
    from .errors import one_line

    click.echo(f"runtool: {one_line(message)}", err=True)
    sys.exit(code)


def _queue(ctx: click.Context) -> RunQueue:
    from .api import RunQueue

    if ctx.obj is None:
        ctx.obj = RunQueue(ctx.meta.get(_HOME))
        ctx.call_on_close(ctx.obj.close)
    return ctx.obj


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


_HOME = "runtool.home"
_HOME_HELP = "Folder of the queue (default $RUNTOOL_HOME, else ~/.runtool)."


def _remember_home(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # ctx.meta is shared by the group's context and the command's, which is parsed after
    # it: so `runtool --home A list --home B` uses B, the later one.
    if value is not None:
        ctx.meta[_HOME] = value


class _Group(click.Group):
    """Gives every command `--home` too, so that it may follow the command's name."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.append(click.Option(["--home"], type=click.Path(file_okay=False), metavar="DIR",
                                       expose_value=False, callback=_remember_home, help=_HOME_HELP))
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), metavar="DIR", envvar="RUNTOOL_HOME",
              expose_value=False, callback=_remember_home, help=_HOME_HELP)
@click.version_option(package_name="runtool", prog_name="runtool")
def cli() -> None:
    """Run parameterized Jupyter notebooks one at a time from a SQLite queue."""


@cli.command()
@click.argument("notebook")
@click.argument("output", required=False)
@click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A parameter; the value is typed as papermill does (int, float, bool, None, text).")
@click.option("-y", "--parameters-yaml", "yaml_text", help="Parameters as YAML text.")
@click.option("-f", "--parameters-file", "yaml_file", help="Parameters from a YAML file.")
@click.option("--params-json", help="Parameters as a JSON object.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", default="normal", show_default=True, help="high, normal, low or a number.")
@click.option("--in", "delay", metavar="DUR", help="Start no earlier than this from now (90s, 5m, 2h, 1d).")
@click.option("--at", "at", metavar="TIME", help="Start no earlier than this ISO 8601 time.")
@click.option("--grid", "grid", multiple=True, metavar="NAME=V1,V2,...",
              help="One run per combination of these values (repeat for more parameters); prints every id.")
@click.option("--after", "after", multiple=True, type=int, metavar="ID",
              help="Continue run ID: wait until it finishes (repeat to wait for several).")
@click.option("--on", default="success", show_default=True,
              type=click.Choice(["success", "failure", "finish"]), help="When --after runs (for each parent).")
@click.option("--retries", type=int, help="Retries after a failure (default from runtool.toml: 3).")
@click.option("--timeout", metavar="DUR", help="Longest a whole run may take.")
@click.option("--kind", help="Kind of run (default: the notebook's file stem).")
@click.option("-k", "--kernel", help="Jupyter kernel to run in (default: the notebook's own).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Metadata for the run.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored record as JSON.")
@click.pass_context
def submit(ctx: click.Context, notebook: str, output: str | None, params: tuple[tuple[str, str], ...],
           yaml_text: str | None, yaml_file: str | None, params_json: str | None, queue: str,
           priority: str, delay: str | None, at: str | None, grid: tuple[str, ...], after: tuple[int, ...],
           on: str, retries: int | None, timeout: str | None, kind: str | None, kernel: str | None,
           tags: tuple[str, ...], as_json: bool) -> None:
    """Validate NOTEBOOK and its parameters and queue a run (with --grid, one per combination);
    prints its id (every id)."""
    from .cliparams import gather_parameters, parse_grid, parse_tags
    from .durations import parse_time

    q = _queue(ctx)
    info = q.inspect(notebook)
    parameters = gather_parameters(info, params, yaml_text, yaml_file, params_json)
    options: dict[str, Any] = dict(queue=queue, priority=priority, delay=delay, at=parse_time(at) if at else None,
                   after=after or None, on=on, retries=retries, timeout=timeout, kind=kind,
                   tags=parse_tags(tags), kernel=kernel, output=output)
    if grid:
        runs = q.sweep(notebook, parse_grid(info, grid), parameters, **options)
        _dump([r.to_dict() for r in runs]) if as_json else click.echo("\n".join(str(r.id) for r in runs))
        return
    run = q.submit(notebook, parameters, **options)
    _dump(run.to_dict()) if as_json else click.echo(run.id)


def _worker_options(f: Any) -> Any:
    f = click.option("--queue", "queues", multiple=True, help="Serve this queue (repeat, in order).")(f)
    return click.option("--max-runs", type=click.IntRange(min=1), help="Stop after this many runs.")(f)


@cli.command()
@_worker_options
@click.option("--poll", metavar="DUR", help="Longest idle wait between looks at the queue (default 1s).")
@click.pass_context
def worker(ctx: click.Context, queues: tuple[str, ...], max_runs: int | None, poll: str | None) -> None:
    """Execute runs one at a time until stopped (SIGINT/SIGTERM: finish the run, then stop)."""
    from .worker import Limits, Worker, setup_logging

    q, chosen = _queue(ctx), _check_queues(queues)
    interval = _duration(poll, "--poll") if poll else None
    setup_logging()
    w = Worker(q, chosen, interval, Limits(max_runs=max_runs))
    w.install_signal_handlers()
    sys.exit(w.serve())


@cli.command()
@_worker_options
@click.option("--max-time", metavar="DUR", help="Start no run after this much time.")
@click.pass_context
def drain(ctx: click.Context, queues: tuple[str, ...], max_runs: int | None, max_time: str | None) -> None:
    """Execute runnable runs, then exit (for cron; exits at once if another process executes)."""
    from .worker import Limits, Worker, setup_logging

    q, chosen = _queue(ctx), _check_queues(queues)
    limit = _duration(max_time, "--max-time") if max_time else None
    setup_logging()
    w = Worker(q, chosen, None, Limits(max_runs=max_runs, max_time=limit))
    w.install_signal_handlers()
    code, message = w.drain()
    click.echo(f"runtool drain: {message}")
    sys.exit(code)


@cli.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--queue")
@click.option("--kind")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--metrics", "with_metrics", is_flag=True, help="Add a column per metric the runs recorded.")
@click.option("--sort", "sort_metric", metavar="METRIC",
              help="Order the kind's runs by this metric, highest first (needs --kind); runs without it last; its column shown.")
@click.option("--ascending", is_flag=True, help="With --sort: lowest first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_runs(ctx: click.Context, statuses: tuple[str, ...], queue: str | None, kind: str | None,
              limit: int, offset: int, with_metrics: bool, sort_metric: str | None, ascending: bool,
              as_json: bool) -> None:
    """Runs, newest first (or by a metric with --sort)."""
    if ascending and sort_metric is None:
        _fail("--ascending: needs --sort METRIC", 2)
    q = _queue(ctx)
    runs = q.list(status=list(statuses), queue=queue, kind=kind, limit=limit, offset=offset,
                  sort_metric=sort_metric, descending=not ascending)
    if as_json:
        _dump([r.to_dict() for r in runs])
    else:
        click.echo(fmt.table(runs, time.time(), q.paused(), metrics=with_metrics, sorted_by=sort_metric))


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """One run: its record, history and files."""
    q = _queue(ctx)
    run = q.get(run_id, history=True)
    if as_json:
        _dump(run.to_dict(with_history=True))
    else:
        click.echo(fmt.details(run, time.time(), q.paused()))


@cli.command()
@click.argument("run_id")
@click.option("--follow", is_flag=True, help="Keep printing until the run finishes.")
@click.pass_context
def logs(ctx: click.Context, run_id: str, follow: bool) -> None:
    """The run's stdout and stderr logs."""
    from .follow import follow_logs, print_logs

    q = _queue(ctx)
    if follow:
        follow_logs(q, q.get(run_id).id, click.echo)
    else:
        print_logs(q, q.get(run_id).id, click.echo)


@cli.command()
@click.argument("run_id")
@click.option("--force", is_flag=True, help="Admins: end a processing run and all its processes.")
@click.option("--reason", help="Written into the run's history.")
@click.pass_context
def cancel(ctx: click.Context, run_id: str, force: bool, reason: str | None) -> None:
    """Cancel a waiting run (or, with --force, a processing one)."""
    run = _queue(ctx).cancel(run_id, force=force, reason=reason)
    click.echo(f"run {run.id}: cancelled")


@cli.command()
@click.argument("run_id")
@click.pass_context
def delete(ctx: click.Context, run_id: str) -> None:
    """Remove a waiting or finished run, its history and its folder."""
    run = _queue(ctx).delete(run_id)
    click.echo(f"run {run.id}: deleted")


@cli.command()
@click.argument("run_id")
@click.pass_context
def retry(ctx: click.Context, run_id: str) -> None:
    """Queue a failed or cancelled run again (same id, attempts reset)."""
    run = _queue(ctx).retry(run_id)
    click.echo(f"run {run.id}: {run.status.value}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reconcile(ctx: click.Context, as_json: bool) -> None:
    """Repair runs left processing by a dead worker."""
    changes = _queue(ctx).reconcile()
    if as_json:
        _dump(changes)
    else:
        for line in changes:
            click.echo(line)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """The workers and drains serving the queue: machine, pid, queues, run, last heartbeat."""
    q = _queue(ctx)
    fleet = q.workers()
    if as_json:
        _dump([w.to_dict(gone) for w, gone in fleet])
    else:
        click.echo(fmt.workers(fleet, q.store_now()))


@cli.command()
@click.option("--older-than", required=True, metavar="DUR")
@click.pass_context
def purge(ctx: click.Context, older_than: str) -> None:
    """Delete finished runs (and their folders) older than DUR, and workers gone for over a day."""
    removed = _queue(ctx).purge(older_than)
    click.echo(f"purged {len(removed)} run(s)" + (f": {', '.join(map(str, removed))}" if removed else ""))


@cli.command()
@click.argument("queue", required=False)
@click.pass_context
def pause(ctx: click.Context, queue: str | None) -> None:
    """Stop workers claiming from QUEUE (default: every queue); submissions still accepted."""
    _queue(ctx).pause(queue)
    click.echo(f"paused {'queue ' + queue if queue else 'every queue'}")


@cli.command()
@click.argument("queue", required=False)
@click.pass_context
def resume(ctx: click.Context, queue: str | None) -> None:
    """Let workers claim from QUEUE again (default: every queue)."""
    _queue(ctx).resume(queue)
    click.echo(f"resumed {'queue ' + queue if queue else 'every queue'}")


@cli.command()
@click.argument("user")
@click.argument("role", type=click.Choice(["viewer", "operator", "admin"]))
@click.pass_context
def grant(ctx: click.Context, user: str, role: str) -> None:
    """Give database role USER the rights of ROLE (PostgreSQL, identity = "database"; admins)."""
    _queue(ctx).grant(user, role)
    click.echo(f"granted {role} to database role {user}")


@cli.command("migrate-store")
@click.option("--to", "url", required=True, metavar="URL",
              help="The empty PostgreSQL database (postgresql://user@host/db) to move the runs into.")
@click.pass_context
def migrate_store(ctx: click.Context, url: str) -> None:
    """Move every run and its history from this home's runtool.db into PostgreSQL (admins)."""
    runs, history, where = _queue(ctx).migrate_store(url)
    click.echo(f"moved {runs} run(s) and {history} history row(s) into {where}; to use it, set"
               f" [store] url in {_queue(ctx).home}/runtool.toml (runtool.db is left as it was)")


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8866, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-browser", is_flag=True)
@click.pass_context
def dashboard(ctx: click.Context, port: int, host: str, no_browser: bool) -> None:
    """Serve the dashboard with Voila."""
    from .serve import serve_dashboard

    sys.exit(serve_dashboard(_queue(ctx).home, port=port, host=host, open_browser=not no_browser))


@cli.command()
@click.option("--no-dashboard", is_flag=True, help="Stop after the summary.")
@click.option("--port", type=click.IntRange(0, 65535), default=8866, show_default=True)
@click.pass_context
def demo(ctx: click.Context, no_dashboard: bool, port: int) -> None:
    """Training run, detection run continuing it, summary, then the dashboard."""
    from .demo import run_demo

    sys.exit(run_demo(_queue(ctx), click.echo, serve=not no_dashboard, port=port))


def _check_queues(queues: tuple[str, ...]) -> list[str]:
    from .config import check_queue_name

    return [check_queue_name(q) for q in queues]


def _duration(text: str, what: str) -> float:
    from .durations import parse_duration

    return parse_duration(text, what)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the command, turning every error into one line and an exit code."""
    from .errors import RuntoolError

    try:
        cli.main(args=argv, prog_name="runtool", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            click.echo(exc.ctx.get_help(), err=True)  # `runtool` alone: help, as click does
            sys.exit(2)
        path = exc.ctx.command_path.split(" ", 1) if exc.ctx else []
        command = f"{path[1]}: " if len(path) > 1 else ""
        _fail(f"{command}{exc.format_message()}", 2)
    except click.Abort:
        _fail("aborted", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except RuntoolError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 1)
    except Exception as exc:  # noqa: BLE001 - contract: one line, never a traceback
        if os.environ.get("RUNTOOL_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set RUNTOOL_DEBUG=1 for details)", 1)
    sys.exit(0)

