"""The database servers tests use, and the one rule for when they are missing.

A test that needs PostgreSQL or MariaDB skips only when the server is truly absent
(nothing accepts connections on its port) and says so. Under ``CI=true`` a missing
server is a failure: CI starts both servers, so absence there means a broken setup.
"""

from __future__ import annotations

import os
import socket

import pytest

#: The database the tests use on each server: ``test`` unless ITERCTL_TEST_DATABASE names
#: another, so that two checkouts can run their suites at once without sharing tables.
DATABASE = os.environ.get("ITERCTL_TEST_DATABASE", "test")

SERVERS = {
    "postgres": (f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}", 5432),
    "mysql": (f"mysql+pymysql://root@127.0.0.1:3306/{DATABASE}", 3306),
}


def server_url(kind: str) -> str:
    """The URL of the ``kind`` server, or skip (fail under CI) when nothing listens."""
    url, port = SERVERS[kind]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as error:
        message = f"{kind} server absent: nothing accepts connections on 127.0.0.1:{port} ({error})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — CI must start it (.ci/run does)")
        pytest.skip(message)
    return url
