"""Run every benchmark: ``python bench/run.py [--quick]``.

Each ``bench/bench_*.py`` runs in a process of its own (``--quick`` passed through), one
after the other so they do not disturb each other's timings, with its output shown as it
comes. Timings are never asserted: the exit status is non-zero only if a benchmark crashed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Environment variables that would make a child think it writes to a terminal.
_TTY_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    quick = parser.parse_args().quick
    env = {key: value for key, value in os.environ.items() if key not in _TTY_VARIABLES}
    crashed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}{' --quick' if quick else ''}", flush=True)
        started = time.perf_counter_ns()
        command = [sys.executable, str(script), *(["--quick"] if quick else [])]
        code = subprocess.run(command, env=env, check=False).returncode
        seconds = (time.perf_counter_ns() - started) / 1e9
        print(f"== {script.name}: exit {code} after {seconds:.1f} s\n", flush=True)
        if code != 0:
            crashed.append(f"{script.name} (exit {code})")
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
