"""Every bad input of CONTRACT §3: one clear line, the documented code, no traceback."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import Finished, Workdir


def _assert_one_line_error(result: Finished, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("iterctl: ")
    for fragment in fragments:
        assert fragment in lines[0]


def _store_fingerprint(workdir: Workdir) -> str | None:
    store = workdir.path / "iterctl.db"
    return hashlib.sha256(store.read_bytes()).hexdigest() if store.exists() else None


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["frobnicate"], ["No such command 'frobnicate'", "iterctl --help"]),
        (["run", "testjobs:Numbers", "--bogus"], ["No such option: --bogus"]),
        (["run"], ["Missing argument 'MODULE:CLASS' — see `iterctl run --help`"]),
        (["run", "no_such_module:Job"], ["no module named 'no_such_module'"]),
        (["run", "testjobs"], ["invalid job path 'testjobs'", "MODULE:CLASS"]),
        (["run", "testjobs:Missing"], ["has no attribute 'Missing'"]),
        (["run", "testjobs:NOT_A_JOB"], ["is not a Job: it is a value of type int"]),
        (["run", "testjobs:Numbers", "--param", "novalue"], ["KEY=VALUE"]),
        (["run", "testjobs:Numbers", "--job-id", "../etc"], ["invalid job id"]),
        (["run", "testjobs:Numbers", "--checkpoint-interval", "-1"], ["--checkpoint-interval"]),
        (["run", "testjobs:Typed", "--param", "count=many"], ["'count'", "many"]),
        (["run", "testjobs:Typed"], ["'count'", "Field required"]),
        (
            ["run", "testjobs:Typed", "--param", "count=1", "--param", "cuont=2"],
            ["unknown param 'cuont' for Typed", "it takes: count, ratio"],
        ),
        (["resume", "nobody"], ["unknown job id 'nobody'"]),
        (["status", "nobody"], ["unknown job id 'nobody'"]),
        (["cancel", "nobody"], ["unknown job id 'nobody'"]),
        (["run", "testjobs:Numbers", "--store", "nosuchdb://x"], ["unknown kind of store"]),
        (["run", "testjobs:Numbers", "--store", "not a url"], ["cannot parse the store URL"]),
    ],
)
def test_bad_invocation_exits_2_with_one_line(
    workdir: Workdir, args: list[str], fragments: list[str]
) -> None:
    """Usage errors name what is wrong, exit 2, print no traceback, change no store."""
    before = _store_fingerprint(workdir)
    result = workdir.run(*args)
    _assert_one_line_error(result, 2, *fragments)
    assert _store_fingerprint(workdir) == before
    assert not workdir.log.exists()


def test_params_that_differ_from_the_job_ids_are_refused_saying_what_differs(
    workdir: Workdir,
) -> None:
    """Reusing a job id with other params or another class exits 2 and names the change."""
    log = f"log={workdir.log}"
    first = workdir.run("run", "testjobs:Numbers", "--job-id", "j", "--param", log,
                        "--param", "count=3")  # fmt: skip
    assert first.returncode == 0
    other_params = workdir.run("run", "testjobs:Numbers", "--job-id", "j", "--param", log,
                               "--param", "count=4")  # fmt: skip
    _assert_one_line_error(other_params, 2, "param count: stored '3', given '4'")
    other_class = workdir.run("run", "testjobs:Hooks", "--job-id", "j", "--param", log,
                              "--param", "count=3")  # fmt: skip
    _assert_one_line_error(other_class, 2, "its job is testjobs:Numbers, not testjobs:Hooks")


def test_a_cursor_that_is_not_json_is_refused_before_any_item(workdir: Workdir) -> None:
    """A set as cursor: exit 2 naming the job and the type; the item never runs."""
    result = workdir.run("run", "testjobs:SetCursor", "--job-id", "s",
                         "--param", f"log={workdir.log}")  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "testjobs:SetCursor yielded a cursor that is not a JSON value" in result.stderr
    assert "of type set" in result.stderr
    assert not workdir.log.exists()


def test_an_enumerator_of_bare_items_gets_the_correct_form_shown(workdir: Workdir) -> None:
    """Not (item, cursor) pairs: exit 2 with a message that shows how to yield pairs."""
    result = workdir.run("run", "testjobs:NotPairs", "--param", f"log={workdir.log}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "must return (item, cursor) pairs, but it yielded 1" in result.stderr
    assert " refused: " in result.stderr
    assert "return ((row, row.id) for row in rows)" in result.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it once the probe is closed


@pytest.mark.parametrize("command", [["run", "testjobs:Numbers"], ["status"], ["resume", "x"]])
def test_an_unreachable_store_exits_69_without_showing_its_password(
    workdir: Workdir, command: list[str]
) -> None:
    """A database that does not answer: exit 69, the URL shown with its password hidden."""
    url = f"postgresql+psycopg://alice:s3cret-pw@127.0.0.1:{_closed_port()}/jobs"
    result = workdir.run(*command, "--store", url)
    _assert_one_line_error(result, 69, "cannot use the store", "alice:***@127.0.0.1")
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_a_store_file_that_is_not_a_database_exits_2_and_is_left_alone(
    workdir: Workdir,
) -> None:
    """A corrupt SQLite file is refused with 2 (no retry can mend it), with advice about
    the file rather than about a server, and not overwritten."""
    store = workdir.path / "iterctl.db"
    store.write_bytes(b"this is not sqlite" * 100)
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}")
    _assert_one_line_error(result, 2, "file is not a database", "point --store at another file")
    assert "server" not in result.stderr
    assert store.read_bytes() == b"this is not sqlite" * 100


def test_a_json_store_that_is_not_iterctls_exits_2(workdir: Workdir) -> None:
    """A .json store that does not parse is refused with 2 and left as it was."""
    store = workdir.path / "jobs.json"
    store.write_text("{not json")
    result = workdir.run("status", "--store", str(store))
    _assert_one_line_error(result, 2, "not an iterctl JSON store")
    assert store.read_text() == "{not json"


@pytest.mark.parametrize("store", ["sqlite:///missing/x.db", "missing/x.db", "missing/x.json"])
def test_a_store_in_a_missing_folder_exits_2_saying_so(workdir: Workdir, store: str) -> None:
    """A store whose folder does not exist needs a person to create it: exit 2 (not 69,
    which Kubernetes would retry in vain), naming the folder."""
    result = workdir.run("run", "testjobs:Numbers", "--store", store)
    _assert_one_line_error(result, 2, "'missing' does not exist")


@pytest.mark.parametrize("store", ["adir.db", "adir.json", "sqlite:///adir.db"])
def test_a_folder_where_the_store_file_should_be_exits_2(workdir: Workdir, store: str) -> None:
    """A directory in place of the store file: exit 2, one line that says so."""
    (workdir.path / "adir.db").mkdir()
    (workdir.path / "adir.json").mkdir()
    result = workdir.run("run", "testjobs:Numbers", "--store", store)
    _assert_one_line_error(result, 2, "--store must name a file, not a folder")


@pytest.mark.parametrize("name", ["jobs.db", "x.sqlite", "x.sqlite3"])
def test_paths_ending_in_db_sqlite_sqlite3_are_sqlite_stores(workdir: Workdir, name: str) -> None:
    """`--store jobs.db` is the SQLite file jobs.db, as sqlite:///jobs.db is."""
    log = f"log={workdir.log}"
    ran = workdir.run(
        "run", "testjobs:Numbers", "--job-id", "p", "--param", "count=3", "--param", log,
        "--store", name,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    with sqlite3.connect(workdir.path / name) as db:
        assert db.execute("SELECT job_id, processed FROM iterctl_jobs").fetchall() == [("p", 3)]
    assert workdir.status("p", "--store", f"sqlite:///{name}")["status"] == "succeeded"


def test_store_files_are_private_to_their_owner(workdir: Workdir) -> None:
    """The SQLite store and the JSON store are created mode 0600."""
    log = f"log={workdir.log}"
    assert (
        workdir.run("run", "testjobs:Numbers", "--param", log, "--param", "count=1").returncode == 0
    )
    json_store = workdir.path / "store.json"
    assert workdir.run("run", "testjobs:Numbers", "--param", log, "--param", "count=1",
                       "--store", str(json_store)).returncode == 0  # fmt: skip
    for path in (workdir.path / "iterctl.db", json_store):
        assert os.stat(path).st_mode & 0o777 == 0o600, path


def test_status_before_any_run_lists_nothing_and_creates_no_store(workdir: Workdir) -> None:
    """Reading commands never create a store just to find it empty."""
    listed = workdir.run("status", "--json")
    assert (listed.returncode, listed.stdout.strip()) == (0, "[]")
    assert not (workdir.path / "iterctl.db").exists()


def test_a_broken_job_module_exits_2_showing_only_its_own_frames(workdir: Workdir) -> None:
    """An exception while importing the job module is bad input (exit 2, CONTRACT §3):
    the module's own frames, then one iterctl line; no iterctl, typer or importlib frames."""
    (workdir.path / "broken.py").write_text("import iterctl\nraise RuntimeError('bad module')\n")
    result = workdir.run("run", "broken:Job")
    assert result.returncode == 2, result.stderr
    assert 'broken.py", line 2' in result.stderr
    assert "RuntimeError: bad module" in result.stderr
    for foreign in ("importlib", "typer", "click", "iterctl/"):
        assert foreign not in result.stderr.replace("import iterctl", ""), result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("iterctl: cannot import the job module 'broken'"), last
    assert len(result.stderr.strip().splitlines()) <= 6, result.stderr
    assert not Path(workdir.path / "iterctl.db").exists()
