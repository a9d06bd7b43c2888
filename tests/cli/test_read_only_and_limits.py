"""Issue 8, items 15, 16 and 18 through the real CLI: reading commands read (a read-only
store, file or folder), writing commands refuse a read-only store in one line, and every
store keeps the same limits and the same job id rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import HERE, Finished, Workdir, iterctl_executable
from tests.servers import server_url

NOBODY = 65534


def _numbers(workdir: Workdir, job_id: str, *more: str) -> list[str]:
    return ["run", "testjobs:Numbers", "--job-id", job_id, "--param", f"log={workdir.log}", *more]


# -- 18. a read-only JSON store ---------------------------------------------------------------


def test_a_read_only_json_store_is_read_and_never_replaced(workdir: Workdir) -> None:
    """A JSON store of mode 0400: `status` reads it; `run` refuses in one line (exit 2)
    and leaves the file as it was, mode included."""
    store = workdir.path / "s.json"
    assert workdir.run(*_numbers(workdir, "ro", "--param", "count=2", "--store", str(store)),
                       ).returncode == 0  # fmt: skip
    store.chmod(0o400)
    before = store.read_bytes()

    assert workdir.status("ro", "--store", str(store))["status"] == "succeeded"
    refused = workdir.run(*_numbers(workdir, "other", "--store", str(store)))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1
    assert "is read-only (mode 0400)" in refused.stderr
    assert store.read_bytes() == before
    assert store.stat().st_mode & 0o777 == 0o400


# -- 18 and 16. a read-only folder, as a user who cannot write it -----------------------------


@pytest.fixture
def other_user_folder() -> Iterator[Path]:
    """A folder owned by an unprivileged user, outside pytest's private tmp folders."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another, unprivileged user")
    folder = Path(tempfile.mkdtemp(prefix="iterctl-ro-"))
    folder.chmod(0o755)
    shutil.copy(HERE / "testjobs.py", folder / "testjobs.py")
    os.chown(folder, NOBODY, NOBODY)
    try:
        reachable = _run_as_nobody(folder, "--version")
        if reachable.returncode != 0:
            # A Python installed in root's home (a pyenv under /root) is closed to others.
            pytest.skip(
                "the unprivileged user cannot run this iterctl: "
                + (reachable.stderr.strip().splitlines() or ["no output"])[-1]
            )
        yield folder
    finally:
        shutil.rmtree(folder)


def _run_as_nobody(folder: Path, *args: str) -> Finished:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITERCTL_", "FORCE_COLOR"))}
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    done = subprocess.run(
        [*as_nobody, iterctl_executable(), *args], cwd=folder, env={**env, "HOME": str(folder)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return Finished(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("store", ["iterctl.db", "s.json"])
def test_status_reads_a_store_in_a_read_only_folder(other_user_folder: Path, store: str) -> None:
    """The store and its folder made read-only: `status` (one id or all) still reads it;
    `run` says in one line that it cannot write there (exit 2), no traceback."""
    log = f"log={other_user_folder / 'items.log'}"
    ran = _run_as_nobody(other_user_folder, "run", "testjobs:Numbers", "--job-id", "ro",
                         "--param", log, "--param", "count=2", "--store", store)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    (other_user_folder / store).chmod(0o444)
    other_user_folder.chmod(0o555)

    listed = _run_as_nobody(other_user_folder, "status", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    assert [job["job_id"] for job in json.loads(listed.stdout)] == ["ro"]
    one = _run_as_nobody(other_user_folder, "status", "ro", "--json", "--store", store)
    assert (one.returncode, json.loads(one.stdout or "{}").get("status")) == (0, "succeeded")

    other_user_folder.chmod(0o755)
    (other_user_folder / store).chmod(0o644)
    other_user_folder.chmod(0o555)
    refused = _run_as_nobody(other_user_folder, "run", "testjobs:Numbers", "--job-id", "new",
                             "--param", log, "--store", store)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    other_user_folder.chmod(0o755)


# -- 15. the same limits and id rules on every store --------------------------------------------


@pytest.fixture(params=["sqlite", "json",
                        pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])  # fmt: skip
def any_store(request: pytest.FixtureRequest, workdir: Workdir) -> str:
    if request.param == "sqlite":
        return str(workdir.path / "iterctl.db")
    if request.param == "json":
        return str(workdir.path / "s.json")
    return server_url(request.param)


def test_big_cursors_params_and_errors_behave_alike_on_every_store(
    workdir: Workdir, any_store: str
) -> None:
    """A 100 KB cursor and 100 KB of params are kept (MariaDB's TEXT stops at 64 KB); a
    2 MB cursor is refused with the same line everywhere (exit 2); a 100 KB error text is
    cut, the job is marked failed, never left running."""
    run = uuid.uuid4().hex[:8]

    def odd(job_id: str, *params: str) -> Finished:
        args = ["run", "testjobs:Odd", "--job-id", f"{job_id}-{run}", "--store", any_store,
                "--param", f"log={workdir.log}"]  # fmt: skip
        for param in params:
            args += ["--param", param]
        return workdir.run(*args)

    kept = odd("big", "odd=size", "size=100000", "pad=" + "p" * 100_000)
    assert kept.returncode == 0, kept.stderr[-500:]
    status = workdir.status(f"big-{run}", "--store", any_store)
    assert (len(status["cursor"]), len(status["params"]["pad"])) == (100_000, 100_000)

    refused = odd("huge", "odd=size", "size=2000000")
    assert refused.returncode == 2, refused.stderr[-500:]
    assert "a store keeps at most 1,048,576" in refused.stderr
    assert workdir.status(f"huge-{run}", "--store", any_store)["status"] == "failed"

    failed = odd("loud", "odd=long-error", "size=100000")
    assert failed.returncode == 1
    status = workdir.status(f"loud-{run}", "--store", any_store)
    assert status["status"] == "failed"
    assert status["error"].startswith("RuntimeError: eee")
    assert status["error"].endswith("characters in all)")


def test_job_ids_are_case_sensitive_on_every_store(workdir: Workdir, any_store: str) -> None:
    """`--job-id casetest` does not resume `CaseTest`: they are two jobs everywhere."""
    suffix = uuid.uuid4().hex[:8]
    upper = workdir.run(*_numbers(workdir, f"CaseTest-{suffix}", "--param", "count=2",
                                  "--store", any_store))  # fmt: skip
    assert upper.returncode == 0, upper.stderr
    lower = workdir.run(*_numbers(workdir, f"casetest-{suffix}", "--param", "count=3",
                                  "--store", any_store))  # fmt: skip
    assert lower.returncode == 0, lower.stderr
    assert "started job" in lower.stderr
    assert workdir.status(f"casetest-{suffix}", "--store", any_store)["processed"] == 3
    assert workdir.status(f"CaseTest-{suffix}", "--store", any_store)["processed"] == 2
