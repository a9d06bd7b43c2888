"""loading.py: MODULE:CLASS to a Job subclass, with one exact message per way it fails."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iterctl import Job
from iterctl.errors import UsageError
from iterctl.loading import load_job_class

WriteModule = Callable[[str], str]


@pytest.fixture
def job_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write a module of the given source into the current folder; returns its fresh name.

    The folder is the current directory and on sys.path, as ``iterctl run`` sees it; the
    modules are forgotten again after the test.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"jobs_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


GOOD = """
from iterctl import Job

class Count(Job):
    def build_enumerator(self, cursor):
        return iter(())

    def each_iteration(self, item):
        pass

    class Inner(Job):
        def build_enumerator(self, cursor):
            return iter(())

        def each_iteration(self, item):
            pass

class NoAction(Job):
    def build_enumerator(self, cursor):
        return iter(())

class NoEnumerator(Job):
    def each_iteration(self, item):
        pass

class NotAJob:
    pass

def helper():
    pass
"""


def test_a_job_class_in_the_current_folder_is_loaded(job_module: WriteModule) -> None:
    """MODULE:CLASS imports a module beside the user and returns the Job subclass."""
    name = job_module(GOOD)

    loaded = load_job_class(f"{name}:Count")

    assert issubclass(loaded, Job)
    assert loaded.__name__ == "Count"


def test_a_dotted_class_name_reaches_a_nested_class(job_module: WriteModule) -> None:
    """MODULE:Outer.Inner follows attributes, as Python's own import paths do."""
    name = job_module(GOOD)

    assert load_job_class(f"{name}:Count.Inner").__qualname__ == "Count.Inner"


@pytest.mark.parametrize("path", ["nocolon", ":Count", "module:", ""])
def test_a_path_without_module_and_class_is_refused(path: str) -> None:
    """A job path that is not MODULE:CLASS is a usage error showing the right form."""
    with pytest.raises(UsageError, match="MODULE:CLASS"):
        load_job_class(path)


@pytest.mark.usefixtures("job_module")
def test_a_missing_module_is_a_usage_error() -> None:
    """A module that does not exist is a usage error naming it, with a hint."""
    with pytest.raises(UsageError, match="no module named 'no_such_jobs_module'"):
        load_job_class("no_such_jobs_module:Count")


def test_a_missing_attribute_is_a_usage_error(job_module: WriteModule) -> None:
    """A class name the module lacks is a usage error naming module and attribute."""
    name = job_module(GOOD)

    with pytest.raises(UsageError, match=f"module '{name}' has no attribute 'Missing'"):
        load_job_class(f"{name}:Missing")


def test_an_attribute_that_is_not_a_job_is_a_usage_error(job_module: WriteModule) -> None:
    """An attribute that is not a Job subclass is refused, saying what it is."""
    name = job_module(GOOD)

    with pytest.raises(UsageError, match=r"helper is not a Job: it is a function — define it"):
        load_job_class(f"{name}:helper")
    with pytest.raises(
        UsageError, match=r"NotAJob is not a Job: it is a class that does not derive from iterctl"
    ):
        load_job_class(f"{name}:NotAJob")


@pytest.mark.parametrize(
    ("class_name", "missing"),
    [("NoAction", "each_iteration"), ("NoEnumerator", "build_enumerator")],
)
def test_a_job_without_a_required_method_is_refused_when_loaded(
    job_module: WriteModule, class_name: str, missing: str
) -> None:
    """A Job lacking each_iteration or build_enumerator is refused at once, naming the method
    and showing how to write it, rather than failing with a traceback on its first item."""
    name = job_module(GOOD)

    with pytest.raises(UsageError, match=f"{class_name} does not define {missing} — add it"):
        load_job_class(f"{name}:{class_name}")


def test_a_missing_third_party_import_inside_the_job_module_propagates(
    job_module: WriteModule,
) -> None:
    """When the job's module imports something not installed, that is the job's error:
    ModuleNotFoundError for that module is raised again, not turned into a usage error."""
    name = job_module("import not_installed_dependency_xyz\n")

    with pytest.raises(ModuleNotFoundError) as raised:
        load_job_class(f"{name}:Count")

    assert raised.value.name == "not_installed_dependency_xyz"


def test_an_error_raised_by_the_module_itself_propagates(job_module: WriteModule) -> None:
    """Any other exception while the module runs is the job's own, and keeps its type."""
    name = job_module("raise RuntimeError('bad config')\n")

    with pytest.raises(RuntimeError, match="bad config"):
        load_job_class(f"{name}:Count")
