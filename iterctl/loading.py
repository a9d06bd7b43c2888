"""Turn ``module:Class`` into a Job subclass, with an exact message for each way it fails."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from iterctl.errors import UsageError
from iterctl.job import Job
from iterctl.stopping import StopNow, StopWaiting

#: Frames of iterctl itself; a job module's import error shows only the job's own frames.
_ITERCTL_DIR = os.path.dirname(os.path.abspath(__file__))


class JobImportError(UsageError):
    """The job's module raised while importing (exit 2): a person must fix the module.

    :attr:`details` holds the traceback cut to the module's own frames, which the CLI
    prints above the one-line message.
    """

    def __init__(self, module_name: str, error: BaseException) -> None:
        summary = "".join(traceback.format_exception_only(error)).strip().splitlines()[-1]
        super().__init__(
            f"cannot import the job module {module_name!r}: {summary} — fix the module "
            "(its own frames are shown above), then run the same command again"
        )
        self.details = _own_frames(error)


_FORM = "give it as MODULE:CLASS, e.g. jobs_examples.count:CountJob"
_SHAPE = (
    "class MyJob(iterctl.Job) with build_enumerator(self, cursor) and each_iteration(self, item)"
)
#: What every job must define (CONTRACT §1), and how to write it.
_REQUIRED = {
    "build_enumerator": "def build_enumerator(self, cursor): return (item, cursor) pairs",
    "each_iteration": "def each_iteration(self, item): process one item",
}


def load_job_class(path: str) -> type[Job]:
    """Import ``path`` ("package.module:Class") with the current directory on sys.path.

    Errors in the path itself (no such module, no such attribute, not a Job, a Job that
    lacks a method every job needs) are usage errors. So is an exception raised while the
    module runs its own code (exit 2, CONTRACT §3): :class:`JobImportError`, which keeps
    the module's own frames for the person who must fix it.
    """
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise UsageError(f"invalid job path {path!r} — {_FORM}")
    if module_name.startswith(".") or "/" in module_name or "\\" in module_name:
        raise UsageError(
            f"invalid job path {path!r}: {module_name!r} is a file path, not a module name — "
            "run iterctl from the folder that holds the module (or put that folder on "
            "PYTHONPATH) and give its dotted name, e.g. jobs.backfill:Backfill"
        )
    # As `python -m` does, so that a job next to the user imports without installing.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except (StopNow, StopWaiting):
        raise
    except ModuleNotFoundError as missing:
        if _shadowed(module_name, sys.modules.get(module_name.partition(".")[0])):
            raise UsageError(_shadow_message(module_name, class_name)) from None
        if missing.name is not None and _is_part_of(missing.name, module_name):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing.name!r} — "
                "run iterctl from the folder that holds it, or install its package"
            ) from None
        raise JobImportError(module_name, missing) from None
    except BaseException as error:  # noqa: BLE001 - sys.exit() at import included
        raise JobImportError(module_name, error) from None
    target: object = module
    for attribute in class_name.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            if _shadowed(module_name, sys.modules.get(module_name.partition(".")[0])):
                raise UsageError(_shadow_message(module_name, class_name)) from None
            raise UsageError(
                f"module {module_name!r} has no attribute {class_name!r} — "
                f"check the class name after the colon ({_FORM})"
            ) from None
    if not (isinstance(target, type) and issubclass(target, Job)):
        raise UsageError(f"{path} is not a Job: it is {_what(target)} — define it as: {_SHAPE}")
    _check_required_methods(path, target)
    return target


def _check_required_methods(path: str, job_class: type[Job]) -> None:
    """Refuse a Job that would start and then fail on its first item: say what to add."""
    for name, how in _REQUIRED.items():
        if getattr(job_class, name) is getattr(Job, name):
            raise UsageError(f"{path} does not define {name} — add it to the class: {how}")


def _shadowed(module_name: str, imported: ModuleType | None) -> bool:
    """True when the current folder has a module of this name that Python did not import,
    because the name is a standard library module's (``io.py``, ``csv.py``)."""
    top = module_name.partition(".")[0]
    if top not in sys.stdlib_module_names:
        return False
    here = Path.cwd()
    if not ((here / f"{top}.py").exists() or (here / top).is_dir()):
        return False
    where = getattr(imported, "__file__", None)
    return where is None or not Path(where).resolve().is_relative_to(here.resolve())


def _shadow_message(module_name: str, class_name: str) -> str:
    top = module_name.partition(".")[0]
    yours = f"{top}.py" if (Path.cwd() / f"{top}.py").exists() else f"the folder {top}"
    return (
        f"your module {top!r} has the name of a standard library module, which Python "
        f"imports instead — rename {yours} (e.g. to {top}_job) and run "
        f"{top}_job{module_name[len(top) :]}:{class_name}"
    )


def _what(target: object) -> str:
    """What an attribute is, in words a job author knows."""
    if isinstance(target, type):
        return "a class that does not derive from iterctl.Job"
    if isinstance(target, ModuleType):
        return "a module"
    if callable(target):
        return "a function"
    return f"a value of type {type(target).__name__}"


def _own_frames(error: BaseException) -> str:
    """The traceback of ``error`` without iterctl's and importlib's frames."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith(("<frozen ", _ITERCTL_DIR))
        and "importlib" not in frame.filename
    ]
    text = "".join(traceback.format_exception_only(error))
    if frames:
        stack = "".join(traceback.format_list(frames))
        text = f"Traceback (most recent call last):\n{stack}{text}"
    return text


def _is_part_of(missing: str, module_name: str) -> bool:
    """True when the missing module is ``module_name`` itself or one of its packages."""
    return module_name == missing or module_name.startswith(missing + ".")
