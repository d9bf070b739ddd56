"""The command line against its documentation: README.md's command table lists exactly the
real commands and their options, every command has help, and `--home` works before or
after the command (as the README promises)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import pytest
from helpers import cli, notebook, run

from runtool.cli import cli as group

README = Path(__file__).resolve().parents[1] / "README.md"
#: Options every command has, which the table leaves to the text around it.
COMMON = {"--help", "-h", "--home"}
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def readme_commands() -> dict[str, set[str]]:
    """Command name -> the options its row of README's `| command | what it does |` table names."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\|\s*command\s*\|\s*what it does\s*\|", line))
    assert re.fullmatch(r"\|[-\s|]+\|", lines[start + 1]), "the table's second line is its rule"
    commands: dict[str, set[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first = re.split(r"(?<!\\)\|", line)[1]  # the first cell (a \| inside it is text)
        for usage in re.findall(r"`([^`]+)`", first):
            name, _, rest = usage.partition(" ")
            assert name not in commands, f"{name} listed twice"
            commands[name] = set(OPTION.findall(rest))
    return commands


def real_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not set(p.opts) <= COMMON]


def test_the_table_is_found_and_parsed():
    commands = readme_commands()
    assert commands["submit"] >= {"-p", "-y", "-f", "--params-json", "--in", "--at", "--on", "-k", "--tag"}
    assert commands["pause"] == commands["resume"] == set()  # `pause [QUEUE]` / `resume [QUEUE]`


def test_readme_lists_every_command_and_no_other():
    assert sorted(readme_commands()) == sorted(group.commands)


@pytest.mark.parametrize("name", sorted(group.commands))
def test_readme_row_names_exactly_the_options_of_the_command(name):
    listed = readme_commands().get(name, set())
    command = group.commands[name]
    unknown = {opt for opt in listed if not any(opt in p.opts + p.secondary_opts for p in command.params)}
    assert not unknown, f"README names options {sorted(unknown)} that `runtool {name}` does not have"
    missing = [p.opts[-1] for p in real_options(command) if not listed & set(p.opts + p.secondary_opts)]
    assert not missing, f"README's row of `runtool {name}` leaves out {missing}"


def test_readme_parser_sees_a_wrong_table(tmp_path, monkeypatch):
    """The check above would fail for a row with an option too many or too few."""
    text = README.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `show ID [--json]`"))
    monkeypatch.setattr(sys.modules[__name__], "README", tmp_path / "README.md")
    (tmp_path / "README.md").write_text(text.replace(row, row.replace("[--json]", "[--yaml]")))
    assert readme_commands()["show"] == {"--yaml"}
    with pytest.raises(AssertionError, match=r"does not have"):
        test_readme_row_names_exactly_the_options_of_the_command("show")
    (tmp_path / "README.md").write_text(text.replace(row, row.replace(" [--json]", "")))
    with pytest.raises(AssertionError, match=r"leaves out \['--json'\]"):
        test_readme_row_names_exactly_the_options_of_the_command("show")


# -- help ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(group.commands))
def test_every_command_has_help(tmp_path, name):
    command = group.commands[name]
    assert command.help and command.help.strip(), f"`runtool {name}` has no help text"
    shown = cli(tmp_path / "home", name, "--help")
    assert shown.code == 0 and shown.out.startswith(f"Usage: runtool {name} ")
    assert command.help.split("\n")[0].strip()[:30] in " ".join(shown.out.split())
    assert "--home DIR" in shown.out


def test_version_and_group_help_from_a_real_process():
    assert re.fullmatch(r"runtool, version \S+\n", run("--version").out)
    shown = run("--help")
    assert shown.code == 0
    listed = re.findall(r"^  ([\w-]+)  ", shown.out.split("Commands:")[1], re.M)
    assert sorted(listed) == sorted(group.commands)


# -- --home before or after the command ---------------------------------------------------

@pytest.fixture(scope="module")
def two_homes(tmp_path_factory):
    """Home `a` holds one waiting run, home `b` none (the tests only read them)."""
    tmp_path = tmp_path_factory.mktemp("homes")
    job = notebook(tmp_path / "job.ipynb")
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("--home", str(a), "submit", str(job)).out == "1\n"
    assert run("list", "--home", str(b)).out == "no runs\n"
    return a, b


def test_home_before_or_after_the_command(two_homes):
    a, b = two_homes
    for args in (("--home", str(a), "list"), ("list", "--home", str(a)), ("list", "--status", "waiting", "--home", str(a))):
        shown = run(*args)
        assert (shown.code, shown.out.splitlines()[1].split()[:2]) == (0, ["1", "waiting"]), args
    assert run("show", "1", "--home", str(a), "--json").code == 0
    assert run("show", "1", "--home", str(b)).code == 1  # not found in b


def test_the_later_home_wins(two_homes):
    a, b = two_homes
    assert run("--home", str(b), "list", "--home", str(a)).out.startswith("ID ")
    assert run("--home", str(a), "list", "--home", str(b)).out == "no runs\n"


def test_home_option_before_the_environment(two_homes):
    a, b = two_homes
    assert run("list", env={"RUNTOOL_HOME": str(a)}).out.startswith("ID ")
    assert run("list", "--home", str(b), env={"RUNTOOL_HOME": str(a)}).out == "no runs\n"
    assert run("--home", str(b), "list", env={"RUNTOOL_HOME": str(a)}).out == "no runs\n"


def test_home_after_the_command_needs_a_value(tmp_path):
    shown = run("list", "--home")
    assert (shown.code, shown.err) == (2, "runtool: Option '--home' requires an argument.\n")
