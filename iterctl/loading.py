"""Turn ``module:Class`` into a Job subclass, with an exact message for each way it fails."""

from __future__ import annotations

import importlib
import os
import sys

from iterctl.errors import UsageError
from iterctl.job import Job

_FORM = "give it as MODULE:CLASS, e.g. jobs_examples.count:CountJob"


def load_job_class(path: str) -> type[Job]:
    """Import ``path`` ("package.module:Class") with the current directory on sys.path.

    Errors in the path itself (no such module, no such attribute, not a Job) are usage
    errors. An exception raised while the module runs its own code is the job's, and
    propagates with its traceback.
    """
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise UsageError(f"invalid job path {path!r} — {_FORM}")
    # As `python -m` does, so that a job next to the user imports without installing.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name is not None and _is_part_of(missing.name, module_name):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing.name!r} — "
                "run iterctl from the folder that holds it, or install its package"
            ) from None
        raise
    target: object = module
    for attribute in class_name.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise UsageError(
                f"module {module_name!r} has no attribute {class_name!r} — "
                f"check the class name after the colon ({_FORM})"
            ) from None
    if not (isinstance(target, type) and issubclass(target, Job)):
        raise UsageError(
            f"{path} is not a Job subclass (it is {type(target).__name__}) — "
            "define it as: class MyJob(iterctl.Job) with build_enumerator and each_iteration"
        )
    return target


def _is_part_of(missing: str, module_name: str) -> bool:
    """True when the missing module is ``module_name`` itself or one of its packages."""
    return module_name == missing or module_name.startswith(missing + ".")
