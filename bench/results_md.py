"""bench/RESULTS.md: each bench replaces its own `## Section` and leaves the others alone."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(head: str, body: str) -> None:
    """Replace the section starting with `## head` (or append it); `body` includes no heading."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    title = f"## {head}"
    section = f"{title}\n\n{body.strip()}\n"
    start = text.find(title + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)
