"""Every bad input of CONTRACT §3: one clear line, the documented code, no traceback."""

from __future__ import annotations

import hashlib
import os
import socket
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


def test_a_store_file_that_is_not_a_database_exits_69_and_is_left_alone(
    workdir: Workdir,
) -> None:
    """A corrupt SQLite file is refused with 69 and not overwritten."""
    store = workdir.path / "iterctl.db"
    store.write_bytes(b"this is not sqlite" * 100)
    result = workdir.run("run", "testjobs:Numbers", "--param", f"log={workdir.log}")
    _assert_one_line_error(result, 69, "file is not a database")
    assert store.read_bytes() == b"this is not sqlite" * 100


def test_a_json_store_that_is_not_iterctls_exits_69(workdir: Workdir) -> None:
    """A .json store that does not parse is refused with 69 and left as it was."""
    store = workdir.path / "jobs.json"
    store.write_text("{not json")
    result = workdir.run("status", "--store", str(store))
    _assert_one_line_error(result, 69, "not an iterctl JSON store")
    assert store.read_text() == "{not json"


def test_a_store_in_a_missing_folder_exits_69_saying_so(workdir: Workdir) -> None:
    """`run` with sqlite:///missing/x.db names the folder to create."""
    result = workdir.run("run", "testjobs:Numbers", "--store", "sqlite:///missing/x.db")
    _assert_one_line_error(result, 69, "'missing' does not exist")


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


def test_a_broken_job_module_is_the_jobs_error_with_its_traceback(workdir: Workdir) -> None:
    """An exception while importing the job module is the job's code: exit 1, traceback."""
    (workdir.path / "broken.py").write_text("import iterctl\nraise RuntimeError('bad module')\n")
    result = workdir.run("run", "broken:Job")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "RuntimeError: bad module" in result.stderr
    assert not Path(workdir.path / "iterctl.db").exists()
