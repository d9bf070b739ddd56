"""Connecting to the PostgreSQL server: the store's connections (timeouts, TCP keepalives),
the listening one, how a database is named in errors (never with a password), and driver
errors turned into runtool's, each in one line.

A store module: `PostgresStore` holds the connections and reopens a lost one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from . import pg_schema
from .errors import InvalidInput, Refused, StoreUnavailable

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for the server when connecting, unless the URL sets connect_timeout."""
#: libpq's TCP settings unless the URL sets them: a cut link fails a statement within about
#: 20 s instead of the kernel's 15 minutes of retransmissions (a worker's lease never waits on
#: one: its heartbeats have their own thread).
TCP_OPTIONS = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
               "tcp_user_timeout": 20000}

#: Server-side sqlstates of a session the server ended (terminated, shut down, crashed,
#: starting up): the statement that meets one was never carried out.
SESSION_ENDED = ("57P01", "57P02", "57P03")


def describe(url: str) -> str:
    """The server and database of `url` as errors name them, never with a password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "PostgreSQL (unparsable URL)"
    user = info.get("user") or os.environ.get("PGUSER") or ""
    host = info.get("host") or os.environ.get("PGHOST") or "localhost"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    db = info.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"database postgresql://{f'{user}@' if user else ''}{host}:{port}/{db}"


def error_line(exc: BaseException) -> str:
    """A driver error as one line: libpq's messages span several."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text.replace("connection failed: ", "", 1) or type(exc).__name__


def connect(url: str, where: str, application_name: str) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection returning rows as dicts, with CONNECT_TIMEOUT_S and, over
    TCP, TCP_OPTIONS unless the URL sets them; StoreUnavailable if the server cannot be reached."""
    kwargs: dict[str, Any] = {"application_name": application_name}
    try:
        given = conninfo_to_dict(url)
        if "connect_timeout" not in given:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        if "host" in given and not str(given["host"]).startswith("/"):  # TCP, not a socket file
            kwargs.update({k: v for k, v in TCP_OPTIONS.items() if k not in given})
        return psycopg.connect(url, autocommit=True, row_factory=dict_row, **kwargs)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"{where}: {error_line(exc)}") from None


def listen(url: str, where: str, application_name: str) -> psycopg.Connection[Any]:
    """A connection LISTENing on `pg_schema.CHANNEL` (for an idle worker)."""
    try:
        listener = psycopg.connect(url, autocommit=True, application_name=application_name,
                                   connect_timeout=CONNECT_TIMEOUT_S)
        listener.execute(f"LISTEN {pg_schema.CHANNEL}")
    except psycopg.Error as exc:
        raise StoreUnavailable(f"{where}: {error_line(exc)}") from None
    return listener


@contextmanager
def errors(where: str) -> Iterator[None]:
    """Driver errors as runtool's, in one line naming the database (`where`)."""
    try:
        yield
    except pgerrors.InsufficientPrivilege as exc:
        raise Refused(f"{where}: {error_line(exc)}") from None
    except UnicodeEncodeError as exc:  # lone surrogates: as the SQLite store says it
        near = exc.object[max(0, exc.start - 30): exc.end + 30] if isinstance(exc.object, str) else ""
        raise InvalidInput(f"bad text {near!r}: not valid UTF-8") from None
    except pgerrors.DataError as exc:
        raise InvalidInput(f"bad text: {error_line(exc)}") from None
    except psycopg.Error as exc:
        raise StoreUnavailable(f"{where}: {error_line(exc)}") from None
