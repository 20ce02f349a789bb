"""What the command line prints: the leaderboard and export tables, and TensorFlow's C++ start-up lines
kept off the terminal (they come from absl before its log level applies, in every process)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from rich.console import Console

PIPE_WIDTH = 120  # columns of a table written to a file or a pipe (rich's own default, 80, squeezes it)


def _width(stream) -> int | None:
    """None (the terminal's, or $COLUMNS) on a terminal; PIPE_WIDTH into a log file or a pipe."""
    return None if stream.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH


err = Console(stderr=True, highlight=False, emoji=False, width=_width(sys.stderr))
out = Console(highlight=False, emoji=False, width=_width(sys.stdout))
USAGE_ERROR = 2  # the exit code of bad input


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """One `error:` line on stderr, then exit (bad input: 2, before anything is written)."""
    from rich.markup import escape  # a message may hold brackets: automl[ray], a shape [None, 8]

    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise SystemExit(code)


def print_export(report):
    """One row per exported file (`ExportReport.rows()`); reasons for unsupported variants below."""
    from rich import box
    from rich.table import Table

    table = Table(title=report.meta.get("title"), box=box.SIMPLE_HEAD)
    for col in ("variant", "KB", "size", report.metric[:3], "agree", "p50 ms", "p95 ms", "per s"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    notes = []

    def num(v, digits):
        return "-" if v is None else f"{v:.{digits}f}"

    for r in report.rows(nested=False):
        label = r["variant"] + (" *" if r["recommended"] else "" if r["status"] == "ok" else f" ({r['status']})")
        ratio = f"{r['vs_float32']:.0%}" if r["vs_float32"] is not None else ""
        table.add_row(
            label,
            num(r["size_kb"], 1),
            ratio,
            num(r["value"], 4),
            num(r["agreement"], 3),
            num(r["latency_p50_ms"], 3),
            num(r["latency_p95_ms"], 3),
            num(r["throughput_per_s"], 0),
        )
        if r["status"] != "ok":
            notes.append(f"{r['variant']}: {r['reason']}")
    out.print(table)
    notes += [f"TFLite: {note}" for note in report.extra.get("tflite_notes", [])]
    for note in notes:
        out.print(f"  {note}", soft_wrap=True)
    if report.recommended:
        out.print(f"  * recommended for phones: {report.variants[report.recommended]['file']}", soft_wrap=True)


def print_leaderboard(study, k: int | None):
    """Core columns per trial, then the best configuration spelt out."""
    from rich.table import Table

    from .ranking import objective_names
    from .results import HEADLINE, leaderboard

    df = leaderboard(study, None)
    queued = int((df.state == "WAITING").sum()) if not df.empty else 0
    if not df.empty:  # queued, not tried: said below the table
        df = df[df.state != "WAITING"]
        df = df.head(k) if k else df
    if df.empty:
        out.print("no trials yet" + (f" ({queued} queued)" if queued else ""))
        return
    names = objective_names(study)
    goal = ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions))
    table = Table(title=f"{study.study_name}: {goal}")
    headline = [c for c in HEADLINE if c in df.columns]  # accuracy beside a val_loss objective
    measured = [c for c in df.columns if c in names[1:] or c in ("tflite_size_bytes", "latency_ms", "feasible")]
    fidelity = ["fidelity"] if "fidelity" in df.columns else []  # why a short trial ranks after a full one
    shown = ["trial", "state", "value", *headline, *measured, "epochs", *fidelity, "params_count", "seconds"]
    cells, notes = [], []
    for _, row in df.iterrows():
        note = row["fail_reason"][:100] if _present(row.get("fail_reason")) else ""
        if _present(row.get("diagnosis")) and row["diagnosis"] != "healthy":  # diagnostics.py's verdict
            note = f"{note}; {row['diagnosis']}" if note else row["diagnosis"]
        cells.append([_fmt(row[c]) for c in shown])
        notes.append(note)
    for i, col in enumerate(shown):  # figures whole on a narrow terminal: the note folds instead
        header = col.replace("params_count", "weights")
        table.add_column(header, justify="right", min_width=max(len(header), *(len(r[i]) for r in cells)))
    table.add_column("note", overflow="fold")
    for row_cells, note in zip(cells, notes):
        table.add_row(*row_cells, note)
    out.print(table)
    if queued:
        out.print(f"{queued} queued configuration(s) not tried yet (a rerun of the search starts with them)")
    best = df[df.state == "COMPLETE"].head(1)
    if len(best):
        row = best.iloc[0]
        params = [c for c in df.columns if c not in [*shown, "fail_reason", "diagnosis"] and not c.endswith(".block")]
        out.print(f"best configuration (trial {row['trial']}):")
        for c in params:
            if _present(row[c]):
                out.print(f"  {c} = {_fmt(row[c])}")


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)


def _fmt(v) -> str:
    if not _present(v):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# TensorFlow 2.21 logs INFO lines through absl while its libraries load ("oneDNN custom operations are
# on ...", twice per process), before its log honours TF_CPP_MIN_LOG_LEVEL; no setting turns them off
# except TF_ENABLE_ONEDNN_OPTS=0, which changes the numerics. This filter drops absl lines below that level.
_ABSL_FILTER = r"""
import re, sys
level = int(sys.argv[1])
line_format = re.compile(rb"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")  # seconds: since 1970 before init
banner = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
for line in sys.stdin.buffer:
    found = line_format.match(line)
    if line.startswith(banner) or (found and b"IWEF".index(found[1]) < level):
        continue
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
"""
_filters: list = []  # the filter process, kept referenced while this process runs


def hide_tensorflow_startup_log():
    """Route file descriptor 2 of this process and of every process it starts (the trials' forkserver and
    workers) through `_ABSL_FILTER`; Python's own stderr (progress, errors) keeps the terminal."""
    import os
    import subprocess

    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if not level.isdigit() or level == "0":
        return
    # called in-process by a caller that captures stderr (a test runner): leave its streams alone
    if sys.__stderr__ is None or sys.stderr is not sys.__stderr__:
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    read, write = os.pipe()
    try:  # its own session: Ctrl-C stops the search, and the filter passes on its last words
        _filters.append(
            subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _ABSL_FILTER, level],
                stdin=read,
                stdout=terminal,
                start_new_session=True,
            )
        )
    except OSError:
        os.close(write)
        os.close(terminal)
        return
    finally:
        os.close(read)
    os.dup2(write, 2)
    os.close(write)
    encoding = sys.stderr.encoding
    sys.stderr = open(terminal, "w", buffering=1, encoding=encoding, errors="backslashreplace")  # noqa: SIM115


def no_study(study: str, storage: str | None) -> NoReturn:
    """Fail with the studies the storage does hold (a typo in --study)."""
    import optuna

    from .stores import open_storage

    names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
    fail(f"no study {study!r} in the storage (studies: {', '.join(names) or 'none'})")


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """`--image-size 64x48` -> (64, 48): height and width a folder's images are resized to."""
    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        fail(f"--image-size {text!r}: expected HEIGHTxWIDTH, e.g. 64x64")
    if height < 1 or width < 1:
        fail(f"--image-size {text!r}: height and width must be at least 1")
    return height, width
