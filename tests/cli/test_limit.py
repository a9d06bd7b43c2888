"""``--limit N`` on ``run`` and ``resume`` through the real process: exactly N items, a
resumable stop (exit 75, "resume with"), and the next run carries on at item N+1."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Workdir

NUMBERS = ["run", "testjobs:Numbers", "--job-id", "lim", "--param", "count=10"]


def numbers(workdir: Workdir) -> list[str]:
    return [*NUMBERS, "--param", f"log={workdir.log}"]


def test_limit_runs_exactly_n_items_then_stops_resumably(workdir: Workdir) -> None:
    first = workdir.run(*numbers(workdir), "--limit", "4")
    assert first.returncode == 75, first.stderr
    assert workdir.items() == [0, 1, 2, 3]
    assert "stopped job lim (--limit 4 reached): 4 items done, cursor 3" in first.stderr
    assert "resume with: iterctl resume lim" in first.stderr
    status = workdir.status("lim")
    assert (status["status"], status["processed"], status["cursor"]) == ("interrupted", 4, 3)

    second = workdir.run("resume", "lim", "--limit", "3")
    assert second.returncode == 75, second.stderr
    assert workdir.items() == [0, 1, 2, 3, 4, 5, 6]
    assert workdir.status("lim")["processed"] == 7

    rest = workdir.run("resume", "lim")
    assert rest.returncode == 0, rest.stderr
    assert workdir.items() == list(range(10))
    status = workdir.status("lim")
    assert (status["status"], status["processed"], status["cursor"]) == ("succeeded", 10, 9)


def test_limit_from_the_environment_and_on_run_of_an_existing_id(workdir: Workdir) -> None:
    """ITERCTL_LIMIT works like the flag; the same `run` command resumes under a limit."""
    env = {"ITERCTL_LIMIT": "6"}
    assert workdir.run(*numbers(workdir), env=env).returncode == 75
    assert workdir.items() == [0, 1, 2, 3, 4, 5]
    assert workdir.run(*numbers(workdir), "--limit", "2", env=env).returncode == 75
    assert workdir.items() == list(range(8))


def test_a_limit_that_reaches_the_last_item_succeeds(workdir: Workdir) -> None:
    """A limit that ends exactly at the end is the end: exit 0, not 75."""
    result = workdir.run(*numbers(workdir), "--limit", "10")
    assert result.returncode == 0, result.stderr
    assert workdir.items() == list(range(10))
    assert workdir.status("lim")["status"] == "succeeded"
    over = workdir.run("run", "testjobs:Numbers", "--job-id", "over", "--param", "count=3",
                       "--param", f"log={workdir.log}", "--limit", "50")  # fmt: skip
    assert over.returncode == 0, over.stderr


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", ["run", "resume"])
def test_limit_below_one_is_refused_with_exit_2(
    workdir: Workdir, command: str, value: str
) -> None:
    """--limit 0 and -1 are usage errors (a limit is at least 1; leave it out for none):
    one line, exit 2, and no job is created or run."""
    args = numbers(workdir) if command == "run" else ["resume", "lim"]
    result = workdir.run(*args, "--limit", value)
    assert result.returncode == 2
    assert "Invalid value for '--limit'" in result.stderr
    assert f"{value} is not in the range x>=1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert workdir.items() == []
    assert not (workdir.path / "iterctl.db").exists()
