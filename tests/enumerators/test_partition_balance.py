"""Partitions of a SQL walk are balanced by rows, not by key range (issue 5)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import Column, Engine, Integer, Table, insert, select

from iterctl.enumerators import records


def _part_sizes(engine: Engine, table: Table, keys: list[int], count: int) -> list[int]:
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": key} for key in keys])
    whole = records(engine, select(table), batch_size=200)
    bounds = json.loads(json.dumps(whole.split(count)))  # as the store keeps them
    return [sum(1 for _ in whole.within(bound)) for bound in bounds]


@pytest.mark.parametrize("count", [2, 8])
def test_uniform_keys_give_partitions_within_10_percent(
    engine: Engine, make_table: Callable[..., Table], count: int
) -> None:
    """Uniform keys: every partition within 10% of the mean size."""
    table = make_table("balance", Column("id", Integer, primary_key=True, autoincrement=False))
    sizes = _part_sizes(engine, table, list(range(0, 20_000, 10)), count)
    mean = sum(sizes) / count
    assert sum(sizes) == 2_000
    assert all(abs(size - mean) <= 0.10 * mean for size in sizes), sizes


@pytest.mark.parametrize("count", [2, 8])
def test_skewed_keys_give_partitions_within_25_percent(
    engine: Engine, make_table: Callable[..., Table], count: int
) -> None:
    """90% of the rows in 10% of the key range: partitions still within 25% of the mean,
    because the split points come from the rows' ranks, not from the key range."""
    table = make_table("balance", Column("id", Integer, primary_key=True, autoincrement=False))
    dense = list(range(1_800))  # keys 0..1,799: 90% of the rows
    sparse = list(range(1_800, 1_800 + 200 * 81, 81))  # 10% of the rows over ~90% of keys
    sizes = _part_sizes(engine, table, dense + sparse, count)
    mean = sum(sizes) / count
    assert sum(sizes) == 2_000
    assert all(abs(size - mean) <= 0.25 * mean for size in sizes), sizes
