"""Read a Dockerfile and a .dockerignore the way ``docker build`` does, without a Docker engine.

Only what the deployment tests need: the instructions of each stage (continuation lines
joined, comments dropped) and the .dockerignore rule that decides whether a path of the
build context is sent to the builder.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``args`` as written."""

    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    """The instructions from one ``FROM`` to the next."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """This stage's instructions with ``keyword``, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Return the global ``ARG`` defaults and the stages of a Dockerfile."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            words = [w for w in words if not w.startswith("--")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if instruction.keyword == "ARG":
                key, _, default = instruction.args.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def _instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, args = pending.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    return found


def _substitute(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), word)


@dataclass(frozen=True)
class Copy:
    """A ``COPY``: its ``--from`` stage (None for the build context), sources, destination."""

    from_stage: str | None
    sources: list[str]
    destination: str


def parse_copy(instruction: Instruction) -> Copy:
    """Split a COPY instruction (shell form) into its parts."""
    words = shlex.split(instruction.args)
    from_stage = None
    plain: list[str] = []
    for word in words:
        if word.startswith("--from="):
            from_stage = word.removeprefix("--from=")
        elif not word.startswith("--"):
            plain.append(word)
    return Copy(from_stage, plain[:-1], plain[-1])


class DockerIgnore:
    """The exclusion rules of a .dockerignore file, applied as BuildKit applies them.

    Each line is a pattern relative to the context root (``*``, ``?``, ``[...]`` within one
    path segment, ``**`` across any number of them); ``!`` re-includes; the last matching
    line wins; a path is also excluded when a directory above it is.
    """

    def __init__(self, text: str) -> None:
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line.removeprefix("!").strip()
            cleaned = str(PurePosixPath("/", pattern)).lstrip("/")
            self._rules.append((include, re.compile(_glob_to_regex(cleaned))))

    def excludes(self, path: str) -> bool:
        """True if ``path`` (relative to the context root) is left out of the context."""
        parts = PurePosixPath(path).parts
        # A directory that is excluded takes everything below it along.
        return any(self._matches("/".join(parts[:n])) for n in range(1, len(parts) + 1))

    def _matches(self, path: str) -> bool:
        excluded = False
        for include, regex in self._rules:
            if regex.fullmatch(path):
                excluded = not include
        return excluded


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            inner = pattern[i + 1 : end]
            out.append("[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def context_files(root: Path, source: str) -> list[str]:
    """The files a COPY of ``source`` would read, as paths relative to ``root``."""
    target = root / source
    if target.is_file():
        return [source.rstrip("/")]
    return sorted(str(p.relative_to(root)) for p in target.rglob("*") if p.is_file())
