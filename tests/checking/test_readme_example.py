"""The README's "Testing a job" example is a working test file: run every test in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def example_tests() -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Testing a job", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the README's Testing a job section has no python block"
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code.group(1), "README.md: Testing a job", "exec"), namespace)  # noqa: S102
    return {name: test for name, test in namespace.items() if name.startswith("test_")}


TESTS = example_tests()


def test_the_example_has_its_tests() -> None:
    assert len(TESTS) >= 6


@pytest.mark.parametrize("name", sorted(TESTS))
def test_readme_example(name: str) -> None:
    TESTS[name]()
