"""The data checks' cost (issue 20 goal: <= 5 s on 50k rows x 50 columns), on synthetic tables and
images made here (numbers, a few categorical and missing columns, planted duplicates and a leak), and
what they find, side by side with the sizes.

    .venv/bin/python bench/checks.py                  # 50k x 50 table, 10k 28x28 images
    .venv/bin/python bench/checks.py --rows 5000      # quicker
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from header import print_header


def table(rows: int, columns: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, columns - 5)), columns=[f"n{i}" for i in range(columns - 5)])
    y = np.array((x["n0"] + x["n1"] * 0.5 + rng.normal(0, 1, rows) > 0).astype(int))
    x["city"] = rng.choice(["a", "b", "c", "d"], rows)
    x["plan"] = rng.choice(["x", "y"], rows)
    x["sparse"] = np.where(rng.random(rows) < 0.3, np.nan, rng.random(rows))
    x["leak"] = y + rng.normal(0, 0.01, rows)
    x["customer_id"] = rng.permutation(rows).astype(float)
    x.iloc[rows - 100 :] = x.iloc[:100].to_numpy()  # 100 duplicated rows
    y[rows - 100 :] = y[:100]
    return x, y


def timed(label: str, x, y, **kwargs) -> None:
    from automl.checks import check

    started = time.perf_counter()
    report = check(x, y, **kwargs)
    seconds = time.perf_counter() - started
    print(
        f"{label}: {seconds:.2f} s in all (checks alone {report.seconds:.2f} s; the split and the input "
        f"checks of make_dataset the rest); {len(report.warnings)} warnings, {len(report.findings)} findings:"
    )
    for line in report.summary()[1:]:
        print(f"  {line.strip()[:160]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--columns", type=int, default=50)
    ap.add_argument("--images", type=int, default=10_000)
    args = ap.parse_args()
    print_header()
    x, y = table(args.rows, args.columns)
    timed(f"table {args.rows} x {args.columns} (goal <= 5 s)", x, y)
    if args.images:  # --images 0: the table alone
        rng = np.random.default_rng(1)
        images = rng.integers(0, 255, (args.images, 28, 28)).astype("float32")
        timed(f"images {args.images} x 28x28", images, rng.integers(0, 10, args.images))


if __name__ == "__main__":
    main()
