"""runtool.toml and roles, through their public behaviour: `load_settings(home)` on a written
file, and a `RunQueue(home, user=...)`'s `.role` and `.can(permission, kind)`. No kernel."""

from __future__ import annotations

import getpass

import pytest
from helpers import ROLES, write_config

from runtool import RunQueue
from runtool.config import Settings, load_settings
from runtool.errors import ConfigError

FULL = """
retries = 5
retry_base_delay = "2m"
poll = "0.5s"
timeout = 3600
queues = ["detection", "default"]

[users]
alice = "admin"
"*" = "analyst"

[roles]
analyst = ["submit", "delete:detection"]

[retention]
succeeded = "7d"
failed = "30d"
"""


def test_defaults_without_a_file(tmp_path):
    assert load_settings(tmp_path) == Settings()
    defaults = Settings()
    assert (defaults.retries, defaults.retry_base_delay, defaults.poll, defaults.timeout) == (3, 60.0, 1.0, 0.0)
    assert (defaults.queues, defaults.users, defaults.roles, defaults.retention) == (None, {}, {}, {})


def test_every_setting_read(tmp_path):
    write_config(tmp_path, FULL)
    settings = load_settings(tmp_path)
    assert (settings.retries, settings.retry_base_delay, settings.poll, settings.timeout) == (5, 120.0, 0.5, 3600.0)
    assert settings.queues == ("detection", "default")
    assert settings.users == {"alice": "admin", "*": "analyst"}
    assert settings.roles == {"analyst": ("submit", "delete:detection")}
    assert settings.retention == {"succeeded": 7 * 86400.0, "failed": 30 * 86400.0}


BAD = [
    # (file text, key named, reason)
    ("colour = 1", "colour", "unknown setting"),
    ("Retries = 1", "Retries", "unknown setting"),
    ('retries = "many"', "retries", "expected a whole number from 0 to 100"),
    ("retries = 101", "retries", "expected a whole number from 0 to 100"),
    ("retries = -1", "retries", "expected a whole number from 0 to 100"),
    ("retries = true", "retries", "expected a whole number from 0 to 100"),
    ("retries = 1.5", "retries", "expected a whole number from 0 to 100"),
    ('retry_base_delay = "soon"', "retry_base_delay", "bad retry_base_delay 'soon'"),
    ("retry_base_delay = true", "retry_base_delay", "expected a duration such as 90s, 5m, 2h"),
    ("timeout = [1]", "timeout", "expected a duration such as 90s, 5m, 2h"),
    ("timeout = -5", "timeout", "must be a finite number >= 0"),
    ("timeout = inf", "timeout", "must be a finite number >= 0"),
    ('poll = "0s"', "poll", "expected a duration from 0.01s to 1h"),
    ('poll = "2h"', "poll", "expected a duration from 0.01s to 1h"),
    ("queues = []", "queues", "expected a non-empty list of queue names"),
    ('queues = "default"', "queues", "expected a non-empty list of queue names"),
    ('queues = ["Bad Queue"]', "queues", "bad queue name 'Bad Queue'"),
    ('users = "alice"', "users", "expected a table"),
    ("[users]\nalice = 1", "users.alice", "expected a role name"),
    ('[users]\nbob = "wizard"', "users.bob", "unknown role 'wizard'"),
    ('[users]\n"*" = "superuser"', "users.*", "unknown role 'superuser'"),
    ('roles = ["x"]', "roles", "expected a table"),
    ('[roles]\nx = "submit"', "roles.x", "expected a list of permissions"),
    ("[roles]\nx = [1]", "roles.x", "expected a list of permissions"),
    ('[roles]\nx = ["fly"]', "roles.x", "unknown permission 'fly'"),
    ('[roles]\nx = ["delete:"]', "roles.x", "unknown permission 'delete:'"),
    ('[roles]\nx = ["submit:job"]', "roles.x", "unknown permission 'submit:job'"),
    ('[roles]\nadmin = ["submit"]', "roles.admin", "redefines a built-in role"),
    ('retention = "1d"', "retention", "expected a table"),
    ('[retention]\nrunning = "1d"', "retention.running", "expected succeeded, failed or cancelled"),
    ('[retention]\nfailed = "later"', "retention.failed", "bad retention.failed 'later'"),
]


@pytest.mark.parametrize("text, key, reason", BAD, ids=[b[0].replace("\n", " ") for b in BAD])
def test_bad_settings_name_the_file_the_key_and_the_reason(tmp_path, text, key, reason):
    write_config(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path)
    error = refused.value
    assert (error.path, error.key) == (str(tmp_path / "runtool.toml"), key)
    assert reason in error.reason
    assert str(error) == f"{tmp_path / 'runtool.toml'}: {key}: {error.reason}"
    assert error.exit_code == 2


@pytest.mark.parametrize("content, reason", [
    ("retries = [\n", "not valid TOML"), ("retries = 1\nretries = 2\n", "not valid TOML"),
    (b"retries = 1 # \xff\n", "cannot read"),
])
def test_unreadable_files(tmp_path, content, reason):
    path = tmp_path / "runtool.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path)
    assert str(refused.value).startswith(f"{path}: {reason}")


def test_a_bad_file_refuses_to_open_the_queue(tmp_path):
    write_config(tmp_path, "colour = 1\n")
    with pytest.raises(ConfigError, match="colour: unknown setting"):
        RunQueue(tmp_path)


# -- roles (DESIGN 7) ---------------------------------------------------------------------

PERMISSIONS = ["submit", "cancel", "retry", "delete", "force-cancel", "purge", "pause"]
#: user -> (role, the permissions that user has, for runs of kind "job")
EXPECTED = {
    "alice": ("admin", set(PERMISSIONS)),
    "bob": ("operator", {"submit", "cancel", "retry", "delete"}),
    "carol": ("viewer", set()),
    "dora": ("analyst", {"submit", "delete"}),
    "nobody": ("viewer", set()),  # "*" = "viewer"
    "Alice": ("viewer", set()),  # names are exact
}


@pytest.fixture
def roles_home(tmp_path):
    write_config(tmp_path, ROLES)
    return tmp_path


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_roles_from_the_users_table(roles_home, user):
    role, allowed = EXPECTED[user]
    with RunQueue(roles_home, user=user) as q:
        assert q.role == role
        assert {p for p in PERMISSIONS if q.can(p, "job")} == allowed


def test_a_custom_role_deletes_only_its_kinds(roles_home):
    with RunQueue(roles_home, user="dora") as q:
        assert q.can("delete", "job") and q.can("delete", "sleeper")
        assert not q.can("delete", "other") and not q.can("delete")
        assert not q.can("cancel", "job") and q.can("submit")
    with RunQueue(roles_home, user="bob") as q:
        assert q.can("delete", "other") and q.can("delete")  # plain delete: every kind


def test_users_not_listed_without_a_star_are_viewers(tmp_path):
    write_config(tmp_path, '[users]\nalice = "admin"\n')
    with RunQueue(tmp_path, user="bob") as q:
        assert q.role == "viewer" and not q.can("submit")


def test_without_a_users_table_the_owner_is_admin_and_others_operators(tmp_path):
    write_config(tmp_path, "retries = 1\n")
    with RunQueue(tmp_path) as owner:  # the tests run as the home's owner
        assert owner.user == getpass.getuser()
        assert owner.role == "admin" and all(owner.can(p) for p in PERMISSIONS)
    with RunQueue(tmp_path, user="someone-else") as stranger:
        assert stranger.role == "operator"
        assert stranger.can("delete", "job") and not stranger.can("force-cancel")
        assert not stranger.can("purge") and not stranger.can("pause")


def test_the_user_comes_from_the_environment(tmp_path, monkeypatch):
    write_config(tmp_path, ROLES)
    def role(user: str | None = None) -> str:
        with RunQueue(tmp_path, user=user) as q:
            return q.role

    monkeypatch.setenv("JUPYTERHUB_USER", "carol")
    assert role() == "viewer"
    monkeypatch.setenv("RUNTOOL_USER", "alice")  # before JUPYTERHUB_USER
    assert role() == "admin"
    assert role("bob") == "operator"  # an explicit user first
