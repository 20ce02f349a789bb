"""The line every bench prints first: which code, when, on what machine and how busy it was. A figure
without these can be neither compared with another nor reproduced (the machine is often shared)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    """`git ARGS` in the repository, its output ('' without git)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def commit() -> str:
    """The short commit, with `+dirty` when tracked files have uncommitted changes."""
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def header() -> str:
    load = os.getloadavg()
    return (
        f"commit {commit()}; {datetime.datetime.now():%Y-%m-%d %H:%M:%S}; {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores); "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at start"
    )


def print_header() -> str:
    """Print the header and return it (a bench that writes bench/RESULTS.md puts it there too)."""
    line = header()
    print(line, flush=True)
    return line
