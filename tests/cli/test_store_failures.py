"""Issue 8: stores that drop, hang, are locked, tampered with or planted with links.

Through the real CLI: a dropped database session exits 75 within about a second, every
wait for a store is bounded and ends on SIGTERM, a password never reaches the output,
lock files never follow links and are not left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from iterctl.stores.sql import _lock_key
from tests.cli.conftest import Finished, Workdir
from tests.servers import server_url


def _one_line(result: Finished, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _numbers(workdir: Workdir, job_id: str, *more: str) -> list[str]:
    return ["run", "testjobs:Numbers", "--job-id", job_id, "--param", f"log={workdir.log}", *more]


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])  # fmt: skip
def store_url(request: pytest.FixtureRequest) -> str:
    return server_url(request.param)


# -- 3. a dropped store session ---------------------------------------------------------


def _kill_lock_session(store_url: str, job_id: str) -> None:
    """End the database session that holds ``job_id``'s lock, as a failover would."""
    key = _lock_key(job_id)
    engine = create_engine(store_url)
    with engine.connect() as conn:
        if store_url.startswith("postgresql"):
            unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
            pid = conn.execute(
                text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                     "AND classid::bigint = :high AND objid::bigint = :low"),
                {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF},
            ).scalar_one()  # fmt: skip
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            owner = conn.execute(
                text("SELECT IS_USED_LOCK(:name)"), {"name": f"iterctl:{key:x}"}
            ).scalar_one()
            conn.execute(text(f"KILL {int(owner)}"))
    engine.dispose()


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_a_dropped_store_session_stops_the_run_within_a_second_with_75(
    workdir: Workdir, store_url: str, concurrency: str
) -> None:
    """Killing the runner's database session (its lock dies with it) makes the run stop
    within about a second — not at its next checkpoint, 30 s away — save nothing more,
    and exit 75 (a failover must not count against backoffLimit); with items in flight
    too."""
    job_id = f"drop-{uuid.uuid4().hex[:8]}"
    process = workdir.start(*_numbers(
        workdir, job_id, "--store", store_url, "--param", "count=1000000",
        "--param", "delay=0.002", "--checkpoint-interval", "30", "--concurrency", concurrency,
    ))  # fmt: skip
    workdir.wait_items(20, process)
    # After the run's first checkpoint (within a second of its start) the next is 30 s
    # away: what the store holds now is what it must still hold after the drop.
    workdir.wait_for(
        lambda _lines: workdir.status(job_id, "--store", store_url)["processed"] > 0, process
    )
    saved = workdir.status(job_id, "--store", store_url)["processed"]
    _kill_lock_session(store_url, job_id)
    done_at_kill = len(workdir.items())

    result = workdir.finish(process, timeout=15)

    assert result.returncode == 75, result.stderr
    assert "lost its database session" in result.stderr
    # About one hold check's worth of items (2 ms each) at most, not an interval's.
    assert len(workdir.items()) - done_at_kill < 1500 * int(concurrency)
    status = workdir.status(job_id, "--store", store_url)
    assert status["processed"] == saved  # nothing saved after the session dropped


# -- 4. waits that end --------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP port that accepts connections and never says a word (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = threading.Event()
    kept: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            kept.append(conn)
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for conn in kept:
        conn.close()


@pytest.mark.parametrize("command", [["status"], ["cancel", "x"], ["run", "testjobs:Numbers"]])
def test_sigterm_ends_the_wait_for_a_server_that_never_answers(
    workdir: Workdir, silent_server: tuple[int, threading.Event], command: list[str]
) -> None:
    """A MySQL address that accepts TCP and never sends its greeting: SIGTERM ends the
    wait at once with exit 75 (nothing was changed) instead of hanging for ever."""
    port, accepted = silent_server
    process = workdir.start(*command, "--store", f"mysql+pymysql://root@127.0.0.1:{port}/x")
    assert accepted.wait(20), "iterctl never connected"
    process.send_signal(signal.SIGTERM)
    result = workdir.finish(process, timeout=5)
    assert result.returncode == 75, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after `run`'s "SIGTERM received" line
    assert "stopped by SIGTERM while waiting for the store" in last
    assert "nothing was changed" in last


def _read_stderr_until(process: subprocess.Popen[str], fragment: str, timeout: float) -> str:
    """The first stderr line of ``process`` that holds ``fragment`` (fails after timeout)."""
    assert process.stderr is not None
    found: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if fragment in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        process.kill()
        pytest.fail(f"iterctl never printed {fragment!r}")
    return found[0]


def _hold_json_write_lock(store: Path) -> int:
    """Take the JSON store's write lock as a frozen writer would, and keep it."""
    fd = os.open(store.with_name(store.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"host frozen pid 4242")
    return fd


@pytest.mark.parametrize("command", ["run", "cancel"])
def test_a_json_store_held_by_a_frozen_writer_is_waited_for_and_sigterm_ends_the_wait(
    workdir: Workdir, command: str
) -> None:
    """While a paused process holds the JSON store's write lock, `run` and `cancel` say
    what they wait for and who holds it; SIGTERM ends the wait at once with exit 75."""
    store = workdir.path / "s.json"
    assert workdir.run(*_numbers(workdir, "other", "--param", "count=1", "--store", str(store)),
                       ).returncode == 0  # fmt: skip
    before = store.read_bytes()
    fd = _hold_json_write_lock(store)
    try:
        args = (
            _numbers(workdir, "new", "--store", str(store)) if command == "run"
            else ["cancel", "other", "--store", str(store)]
        )  # fmt: skip
        process = workdir.start(*args)
        line = _read_stderr_until(process, "waiting for", timeout=20)
        assert "the write lock of the store" in line
        assert "held by host frozen pid 4242" in line
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=5)
    finally:
        os.close(fd)
    assert process.returncode == 75, err
    assert "stopped by SIGTERM while waiting for the store" in err
    assert store.read_bytes() == before


# -- 5. passwords -------------------------------------------------------------------------


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize(
    ("url", "code", "fragment"),
    [
        ("postgresql+psycopg://alice@127.0.0.1:{port}/jobs?password=s3cret-pw", 69,
         "password=***"),
        ("mysql+pymysql://alice@127.0.0.1:{port}/jobs?passwd=s3cret-pw&charset=utf8", 69,
         "passwd=***"),
        ("postgresql+psycopg://alice:s3cret-pw@127.0.0.1:notaport/jobs", 2,
         "the port is not a number"),
        ("alice:s3cret-pw@127.0.0.1/jobs", 2, "cannot parse the store URL"),
        ("postgresql+psycopg://alice:s3cret-pw@[::1/jobs", 2, "cannot parse the store URL"),
    ],
)  # fmt: skip
def test_a_password_never_reaches_the_output_in_any_form(
    workdir: Workdir, url: str, code: int, fragment: str
) -> None:
    """A password in the query string or in a URL that does not parse is hidden in every
    message; a non-numeric port is one line, not a traceback."""
    result = workdir.run("status", "--store", url.format(port=_closed_port()))
    _one_line(result, code, fragment)
    assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_the_resume_hint_hides_a_query_string_password(workdir: Workdir) -> None:
    """The 'resume with … --store' hint shows the store with its password hidden."""
    url = server_url("postgres") + "?password=s3cret-pw"
    job_id = f"pw-{uuid.uuid4().hex[:8]}"
    result = workdir.run(*_numbers(
        workdir, job_id, "--store", url, "--param", "count=100000", "--param", "delay=0.001",
        "--max-runtime", "0.3",
    ))  # fmt: skip
    assert result.returncode == 75, result.stderr
    assert "resume with: iterctl resume" in result.stderr
    assert "password=***" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


# -- 6 (issue 8). hold files and links ---------------------------------------------------------


def test_a_symlink_planted_as_a_hold_file_is_refused_and_its_target_untouched(
    workdir: Workdir,
) -> None:
    """`<store>.holds/<id>.lock` as a link to another file: the run refuses (exit 2)
    and the file the link points at keeps its content."""
    holds = workdir.path / "iterctl.db.holds"
    holds.mkdir(mode=0o700)
    target = workdir.path / "precious.txt"
    target.write_text("precious\n")
    (holds / "victim.lock").symlink_to(target)
    result = workdir.run(*_numbers(workdir, "victim", "--param", "count=2"))
    _one_line(result, 2, "symbolic link")
    assert target.read_text() == "precious\n"
    assert workdir.items() == []


def test_a_holds_folder_others_may_write_in_is_refused(workdir: Workdir) -> None:
    """A pre-existing holds folder of mode 0777 is not used as it is."""
    holds = workdir.path / "iterctl.db.holds"
    holds.mkdir()
    holds.chmod(0o777)
    result = workdir.run(*_numbers(workdir, "open", "--param", "count=2"))
    _one_line(result, 2, "others may write in it (mode 0777)", "remove it")


# -- 9. a quick second Ctrl-C; what SIGKILL leaves --------------------------------------------


@pytest.mark.parametrize("store_name", ["s.json", "s.db"])
def test_a_quick_second_ctrl_c_never_breaks_the_store_nor_over_counts(
    workdir: Workdir, store_name: str
) -> None:
    """Two SIGINTs a moment apart while every item checkpoints: exit 75 with no
    traceback each time, the store readable, one interruption counted per stop."""
    store = str(workdir.path / store_name)
    command = _numbers(
        workdir, "twice", "--param", "count=1000000", "--checkpoint-interval", "0",
        "--store", store,
    )  # fmt: skip
    stops = 5
    for n in range(stops):
        process = workdir.start(*command)
        workdir.wait_items(3, process)
        process.send_signal(signal.SIGINT)
        time.sleep(0.001 * n)  # the second one at a different moment each time
        process.send_signal(signal.SIGINT)
        result = workdir.finish(process)
        assert result.returncode == 75, result.stderr
        assert "Traceback" not in result.stderr
    status = workdir.status("twice", "--store", store)
    assert (status["status"], status["times_interrupted"]) == ("interrupted", stops)


def test_sigkills_leave_no_store_copies_and_a_clean_run_leaves_only_the_store(
    workdir: Workdir,
) -> None:
    """SIGKILL mid-write leaves at most one hidden copy, which the next write replaces;
    a clean run leaves neither lock files nor holds folders (issue 9, item 9)."""
    store = workdir.path / "s.json"
    command = _numbers(
        workdir, "kills", "--param", "count=300", "--checkpoint-interval", "0",
        "--param", "delay=0.001", "--store", str(store),
    )  # fmt: skip
    for _ in range(4):
        process = workdir.start(*command)
        workdir.wait_items(20, process)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        extra = {p.name for p in workdir.path.iterdir()} - {"s.json", "items.log", "testjobs.py"}
        assert extra <= {".s.json.tmp", "s.json.lock", "s.json.holds"}, extra
    assert workdir.run(*command).returncode == 0
    assert sorted(p.name for p in workdir.path.iterdir()) == ["items.log", "s.json", "testjobs.py"]
    sqlite_run = workdir.run(*_numbers(workdir, "clean", "--param", "count=2"))
    assert sqlite_run.returncode == 0
    assert not (workdir.path / "iterctl.db.holds").exists()


# -- 16. stores that are not as iterctl wrote them ----------------------------------------------


def _json_store_with(workdir: Workdir, change: object) -> Path:
    store = workdir.path / "s.json"
    assert workdir.run(*_numbers(workdir, "rec", "--param", "count=2", "--store", str(store)),
                       ).returncode == 0  # fmt: skip
    document = json.loads(store.read_text())
    if callable(change):
        change(document)
    store.write_text(json.dumps(document))
    return store


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["jobs"].update(rec=7), "the record is int"),
        (lambda d: d["jobs"]["rec"].pop("processed"), "it has no processed"),
        (lambda d: d["jobs"]["rec"].update(status="bogus"), "status 'bogus' is none of"),
        (lambda d: d["jobs"]["rec"].update(fence=None), "fence is None, not a count"),
        (lambda d: d["jobs"]["rec"].update(cursor_json="{nope"), "is not JSON"),
        (lambda d: d.update(iterctl_schema="1"), "not an iterctl JSON store"),
    ],
    ids=["int-record", "missing-field", "bogus-status", "null-fence", "bad-cursor", "str-schema"],
)
@pytest.mark.parametrize("command", ["status", "resume"])
def test_a_json_store_of_the_wrong_shape_is_one_line_and_exit_2(
    workdir: Workdir, change: object, fragment: str, command: str
) -> None:
    """Records edited by hand: every command says what is wrong in one line, exit 2."""
    store = _json_store_with(workdir, change)
    args = ["status"] if command == "status" else ["resume", "rec"]
    _one_line(workdir.run(*args, "--store", str(store)), 2, fragment)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("cursor", "{nope", "cursor_json '{nope' is not JSON"),
        ("params", "[1", "params is not an object"),
        ("status", "bogus", "status 'bogus' is none of"),
        ("processed", "many", "processed is 'many', not a count"),
        ("bounds", "garbage", "bounds_json 'garbage' is not JSON"),
    ],
)
def test_tampered_sqlite_rows_are_one_line_and_exit_2(
    workdir: Workdir, column: str, value: str, fragment: str
) -> None:
    """SQLite rows edited by hand: one line naming the field, exit 2, no traceback."""
    assert workdir.run(*_numbers(workdir, "rec", "--param", "count=2")).returncode == 0
    with sqlite3.connect(workdir.path / "iterctl.db") as db:
        db.execute(f"UPDATE iterctl_jobs SET {column} = ?", (value,))
    for args in (["status"], ["status", "rec"], ["resume", "rec"]):
        _one_line(workdir.run(*args), 2, "damaged record (job id 'rec')", fragment)


@pytest.mark.parametrize(
    ("odd", "fragment"),
    [
        ("build-none", "build_enumerator returned NoneType, not an iterable"),
        ("build-int", "build_enumerator returned int, not an iterable"),
        ("count-str", "count() returned 'many'"),
        ("count-negative", "count() returned -5"),
        ("digits", "more than 4,300 digits"),
        ("depth", "more than 100 deep"),
    ],
)
def test_a_job_that_returns_the_wrong_things_is_refused_in_one_line_and_marked_failed(
    workdir: Workdir, odd: str, fragment: str
) -> None:
    """build_enumerator giving None or an int, count() giving a string or a negative
    number, a 5,000-digit or 3,000-deep cursor: exit 2, one line, status failed."""
    result = workdir.run(
        "run", "testjobs:Odd", "--job-id", "odd", "--param", f"log={workdir.log}",
        "--param", f"odd={odd}", "--param", "digits=5000", "--param", "depth=3000",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert workdir.status("odd")["status"] == "failed"
