"""``iterctl describe MODULE:CLASS``: what a job does and the ``--param`` values it takes.

    print(describe_job("jobs_examples.count:CountJob"))

The text comes from the job itself: its class docstring, and its parameter model's fields
(name, type, default, description), so it cannot drift from the code.
"""

from __future__ import annotations

import inspect
from typing import Any

from iterctl.job import Job
from iterctl.loading import load_job_class


def describe_job(job_path: str) -> str:
    """The description of the job at ``job_path`` (exit 2 when it cannot be loaded)."""
    job_class = load_job_class(job_path)
    lines = [job_path, ""]
    doc = inspect.getdoc(job_class)
    if doc and doc != inspect.getdoc(Job):
        lines += [doc, ""]
    lines += _parameters(job_class)
    if job_class.Params is not None:
        example = " ".join(f"--param {name}=…" for name in _required(job_class.Params))
        lines += ["", f"run it: iterctl run {job_path} {example}".rstrip()]
    return "\n".join(lines)


def _parameters(job_class: type[Job]) -> list[str]:
    model = job_class.Params
    fields: dict[str, Any] | None = getattr(model, "model_fields", None)
    if model is None or fields is None:
        return ["parameters: none declared; --param KEY=VALUE pairs arrive as a dict of strings"]
    if not fields:
        return ["parameters: none"]
    rows = [("name", "type", "default", "description")]
    rows += [
        (name, _type_name(field.annotation), _default(field), field.description or "")
        for name, field in fields.items()
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["parameters (--param NAME=VALUE):"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append(("  " + "  ".join([*cells, row[3]])).rstrip())
    return lines


def _required(model: Any) -> list[str]:
    return [name for name, field in model.model_fields.items() if field.is_required()]


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: Any) -> str:
    if field.is_required():
        return "(required)"
    if field.default_factory is not None:
        return "(computed)"
    return repr(field.default)
