"""``describe_job``: the docstring and one row per parameter, required ones flagged."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from iterctl import Job
from iterctl.cursor import Cursor
from iterctl.describing import describe_job


class ExportParams(BaseModel):
    bucket: str = Field(description="where the files go")
    mode: Literal["full", "delta"] = "delta"
    tags: list[str] = Field(default_factory=list, description="labels for each file")


class Minimal(Job):
    """Minimal."""

    def build_enumerator(self, cursor: Cursor) -> Any:
        return []

    def each_iteration(self, item: Any) -> None:
        pass


class Export(Minimal):
    """Exports every customer to a bucket.

    One file per customer; the cursor is the customer id."""

    Params = ExportParams


class NoParams(Minimal):
    """Takes nothing."""

    class Params(BaseModel):
        pass


class Undocumented(Job):
    def build_enumerator(self, cursor: Cursor) -> Any:
        return []

    def each_iteration(self, item: Any) -> None:
        pass


def test_required_params_are_flagged_and_the_run_line_asks_for_them() -> None:
    text = describe_job(f"{__name__}:Export")
    assert text.splitlines()[:4] == [
        f"{__name__}:Export",
        "",
        "Exports every customer to a bucket.",
        "",
    ]
    rows = [" ".join(line.split()) for line in text.splitlines() if line.startswith("  ")]
    assert rows == [
        "name type default description",
        "bucket str (required) where the files go",
        "mode Literal['full', 'delta'] 'delta'",
        "tags list[str] (computed) labels for each file",
    ]
    assert text.splitlines()[-1] == f"run it: iterctl run {__name__}:Export --param bucket=…"


def test_an_empty_model_and_a_job_without_a_docstring() -> None:
    assert "parameters: none" in describe_job(f"{__name__}:NoParams").splitlines()
    text = describe_job(f"{__name__}:Undocumented")
    assert "A batch job as an enumerator" not in text  # Job's own docstring is not the job's
    assert "parameters: none declared" in text
