"""Job parameters: ``--param KEY=VALUE`` strings, typed through the job's model if any."""

from __future__ import annotations

from typing import Any

from iterctl.errors import UsageError
from iterctl.job import Job


def parse_param_pairs(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a pair without '=' is refused."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid --param {pair!r} — write it as KEY=VALUE")
        params[key] = value
    return params


def build_params(job_class: type[Job], raw: dict[str, str]) -> Any:
    """The job's ``self.params``: the raw dict, or the validated instance of its model."""
    model = job_class.Params
    if model is None:
        return dict(raw)
    validate = getattr(model, "model_validate", None)
    if validate is None:
        raise UsageError(
            f"{job_class.__name__}.Params must be a pydantic model "
            "(class Params(pydantic.BaseModel): ...)"
        )
    _refuse_unknown(job_class, model, raw)
    try:
        return validate(raw)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise UsageError(_describe_invalid(job_class, error)) from None


def param_values(job_class: type[Job], raw: dict[str, str]) -> dict[str, Any]:
    """The values the job would see, for comparing two sets of ``--param`` strings.

    With a model, ``batch=100`` and ``batch=0100`` are the same setting, and so is leaving
    ``batch`` out when the model's default is 100. Raw strings are compared otherwise.
    """
    params = build_params(job_class, raw)
    dump = getattr(params, "model_dump", None)
    if job_class.Params is None or dump is None:
        return dict(raw)
    values: dict[str, Any] = dump(mode="json")
    return values


def _refuse_unknown(job_class: type[Job], model: Any, raw: dict[str, str]) -> None:
    """A typo'd --param would otherwise be dropped without a word; the model says what exists.

    A model that allows extra fields (``extra="allow"``) gets them all.
    """
    fields = getattr(model, "model_fields", None)
    if fields is None or getattr(model, "model_config", {}).get("extra") == "allow":
        return
    unknown = sorted(raw.keys() - fields.keys())
    if unknown:
        raise UsageError(
            f"unknown param {', '.join(map(repr, unknown))} for {job_class.__name__} — "
            f"it takes: {', '.join(sorted(fields)) or 'no params'}"
        )


def _describe_invalid(job_class: type[Job], error: ValueError) -> str:
    problems = []
    for detail in getattr(error, "errors", list)():
        name = ".".join(str(part) for part in detail.get("loc", ())) or "?"
        given = detail.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        problems.append(f"param {name!r}: {detail.get('msg', 'invalid')}{shown}")
    summary = "; ".join(problems) or str(error)
    return f"invalid params for {job_class.__name__}: {summary} — fix the --param values"
