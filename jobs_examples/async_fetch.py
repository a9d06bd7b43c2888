"""An async job: one (simulated) HTTP call per user, many in flight at once.

    iterctl run jobs_examples.async_fetch:FetchProfiles --concurrency 64 --param users=5000

Each item awaits a fake API call (``asyncio.sleep`` of 5-50 ms, no network), then writes
the answer to a SQLite file, ``profiles.db`` by default. With ``--concurrency 64`` up to 64
calls wait at once on one event loop: ~30x the throughput of one at a time. Items finish
out of order; a Ctrl-C or SIGTERM lets the calls in flight finish, saves the watermark and
the users done past it, and exits 75; the same command carries on without calling any
user twice.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator

from pydantic import BaseModel, Field

from iterctl import Job


class FetchParams(BaseModel):
    users: int = Field(default=2000, ge=0, description="how many user ids to fetch")
    db: str = Field(default="profiles.db", description="SQLite file the profiles go to")
    slowest: float = Field(default=0.05, gt=0, description="slowest simulated call, seconds")


async def fake_api_get(user_id: int, slowest: float) -> dict[str, object]:
    """Stands for ``await client.get(f"/users/{user_id}")`` with an async HTTP client."""
    await asyncio.sleep(random.uniform(slowest / 10, slowest))  # noqa: S311 - simulated latency
    return {"id": user_id, "name": f"user-{user_id}", "plan": "pro" if user_id % 7 else "free"}


class FetchProfiles(Job):
    """Items are user ids 1..users; the cursor is the user id."""

    Params = FetchParams
    params: FetchParams

    def on_start(self) -> None:
        with sqlite3.connect(self.params.db) as db:
            # WAL: a commit appends to the log instead of rewriting pages and syncing, so
            # the (blocking) write of each answer stays short next to the call it follows.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS profiles (id INTEGER PRIMARY KEY, name, plan)")

    def count(self) -> int:
        return self.params.users

    async def build_enumerator(self, cursor: int | None) -> AsyncIterator[tuple[int, int]]:  # type: ignore[override]  # an async iterable of pairs
        # An async iterable, as rows from an async database driver would be.
        for user_id in range(1 if cursor is None else cursor + 1, self.params.users + 1):
            yield user_id, user_id

    async def each_iteration(self, user_id: int) -> None:  # type: ignore[override]  # async job
        profile = await fake_api_get(user_id, self.params.slowest)
        # One short connection per item: an sqlite3 connection must not be shared between
        # tasks that may interleave; an async driver's pool is the real-world equivalent.
        with sqlite3.connect(self.params.db, timeout=30) as db:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "INSERT INTO profiles (id, name, plan) VALUES (?, ?, ?)",
                (profile["id"], profile["name"], profile["plan"]),
            )
