"""params.py: --param KEY=VALUE pairs, and their validation through a job's pydantic model."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from iterctl import Job
from iterctl.errors import UsageError
from iterctl.params import build_params, parse_param_pairs


class Untyped(Job):
    """A job without a parameter model: params stay strings."""


class Limits(pydantic.BaseModel):
    limit: int
    dry_run: bool = False
    table: str = "users"


class Typed(Job):
    """A job whose params are validated and typed by a pydantic model."""

    Params = Limits


def test_pairs_become_a_dict_and_only_the_first_equals_sign_splits() -> None:
    """KEY=VALUE pairs parse to a dict; an '=' inside the value is kept; a later key wins."""
    pairs = ["limit=10", "where=a=b", "empty=", "limit=20"]

    assert parse_param_pairs(pairs) == {"limit": "20", "where": "a=b", "empty": ""}


@pytest.mark.parametrize("pair", ["limit", "=10", ""])
def test_a_pair_without_a_key_and_equals_sign_is_refused(pair: str) -> None:
    """A --param that is not KEY=VALUE is a usage error showing the right form."""
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_param_pairs([pair])


def test_without_a_model_params_are_a_copy_of_the_strings() -> None:
    """A job with no Params model gets the raw dict[str, str], not the caller's own dict."""
    raw = {"limit": "10"}

    params = build_params(Untyped, raw)

    assert params == {"limit": "10"}
    assert params is not raw


def test_a_model_validates_and_types_the_values() -> None:
    """With a pydantic model, values are converted to the declared types."""
    params: Any = build_params(Typed, {"limit": "5", "dry_run": "true"})

    assert isinstance(params, Limits)
    assert (params.limit, params.dry_run, params.table) == (5, True, "users")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"limit": "many"}, "param 'limit'"),
        ({}, "param 'limit'"),
        ({"limit": "1", "dry_run": "perhaps"}, "param 'dry_run'"),
    ],
)
def test_an_invalid_value_is_a_usage_error_naming_the_parameter(
    raw: dict[str, str], shown: str
) -> None:
    """A value the model rejects (or a missing one) is a usage error naming the parameter."""
    with pytest.raises(UsageError, match=shown) as refused:
        build_params(Typed, raw)

    assert "Typed" in str(refused.value)
    assert "--param" in str(refused.value)


def test_a_params_class_that_is_not_a_pydantic_model_is_refused() -> None:
    """Params must be a pydantic model; anything else is a usage error saying so."""

    class Plain(Job):
        Params = dict

    with pytest.raises(UsageError, match="pydantic model"):
        build_params(Plain, {"limit": "1"})
