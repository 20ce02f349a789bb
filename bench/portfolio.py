"""Start configurations that generalise: a greedy portfolio per input kind, reported leave-one-task-out.

Candidates per kind, from the kind's default space (the one the task classes use; `--space KIND=NAME`
for another): its `start:` list, `--candidates` configurations sampled with a seeded Optuna
RandomSampler, and the hand-written ones below (skipped with a note when the space no longer has
their parameters). A start or hand-written entry that leaves parameters out has them filled by a
seeded RandomSampler too, so every candidate is one complete configuration.

Each candidate is trained once on every suite task of its kind (bench/suite_tasks.py, the same fixed
splits): `automl.Search` through the task class with `enqueue=[params], max_trials=1, start=False`,
`--epochs` epochs (early stopping as in a search); validation and test scores are cached per task,
epochs, seed and commit in bench/results/portfolio/. A portfolio's result on a task is its member with
the best validation objective (val_loss, as the search ranks trials; `--pick score` for validation
accuracy / R²); its regret there = (best candidate's test score - that member's test score) /
(best - worst candidate's test score), 0 = the best candidate, 1 = the worst. Greedy: members added
one at a time, each the one that lowers the mean regret over the tasks most (ties: candidate order).

Reported leave-one-task-out: for each task, the portfolio chosen on the kind's other tasks and its
regret on the held-out task (what a user with new data gets), beside the full-suite portfolio's
in-sample regret and the shipped start list's. The full-suite portfolio is printed as `start:`
entries to paste into the space. Everything is deterministic by `--seed`.

    .venv/bin/python bench/portfolio.py --resume --write          # 18 tasks, 16 sampled candidates + starts
    .venv/bin/python bench/portfolio.py --tasks digits,wine,breast_cancer --candidates 4 --epochs 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from header import print_header
from quality import MissingData, regression_scores, scores
from suite import code_version, metric, task_class
from suite_tasks import KINDS, SUITE, TASKS, check_data, load, parse_tasks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "results" / "portfolio"
MARK = "PORTFOLIO-DONE "

# Known-good shapes a practitioner would try first, by default space (partial: the rest is sampled).
OLD_TABLE_START = {  # tabular_mlp's first start entry until 7cd57e1: a batch-normed ReLU MLP
    "activation": "relu",
    "columns.categorical": "one_hot",
    "columns.numeric": "standard",
    "columns.trees": "none",
    "num_layers": 2,
    "layers.0.units": 128,
    "layers.0.norm": "batch",
    "layers.0.dropout": 0.2,
    "layers.1.units": 64,
    "layers.1.norm": "none",
    "layers.1.dropout": 0.1,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "batch_size": 64,
    "class_weight": "none",
}

HAND: dict[str, list[dict]] = {
    "image_cnn": [
        {  # batch-normed VGG-like, average pooled, cosine schedule
            "num_blocks": 3,
            **{f"blocks.{i}.{k}": v for i in range(3) for k, v in {"kernel_size": 3, "depth": 1}.items()},
            **{f"blocks.{i}.filters": f for i, f in enumerate((32, 64, 96))},
            **{f"blocks.{i}.pooling": "max" for i in range(3)},
            **{f"blocks.{i}.batch_norm": True for i in range(3)},
            **{f"blocks.{i}.dropout": 0.1 for i in range(3)},
            "pool.mode": "avg",
            "head.units": 128,
            "head.dropout": 0.3,
            "optimizer": "adam",
            "learning_rate": 0.002,
            "batch_size": 64,
            "schedule": "cosine",
        },
        {  # one block of two convolutions, flattened: cheap on small images
            "num_blocks": 1,
            "blocks.0.filters": 32,
            "blocks.0.kernel_size": 3,
            "blocks.0.depth": 2,
            "blocks.0.pooling": "max",
            "blocks.0.batch_norm": False,
            "blocks.0.dropout": 0.1,
            "pool.mode": "flatten",
            "head.units": 64,
            "head.dropout": 0.2,
            "optimizer": "adam",
            "learning_rate": 0.001,
            "batch_size": 32,
            "schedule": "constant",
        },
    ],
    "text_cnn_rnn": [
        {  # TF-IDF of word 1-2-grams, a small head (close to the NB-SVM family)
            "text.block": "text_ngrams",
            "text.max_tokens": 20000,
            "text.split": "words",
            "text.ngrams": 2,
            "text.output": "tf_idf",
            "head.units": 32,
            "head.dropout": 0.5,
            "optimizer": "adam",
            "learning_rate": 0.001,
            "batch_size": 32,
        },
        {  # embedding + bidirectional GRU
            "text.block": "text",
            "text.max_tokens": 10000,
            "text.sequence_length": 64,
            "text.embed_dim": 64,
            "num_convs": 0,
            "num_rnns": 1,
            "rnns.0.block": "gru",
            "rnns.0.units": 32,
            "rnns.0.bidirectional": True,
            "pool.mode": "max",
            "head.units": 32,
            "head.dropout": 0.3,
            "optimizer": "adam",
            "learning_rate": 0.003,
            "batch_size": 32,
        },
    ],
    "sequence_rnn": [
        {  # two convolutions, global average pooling (shift-invariant shapes)
            "encoder.block": "conv1d",
            "encoder.filters": 64,
            "encoder.kernel_size": 5,
            "encoder.depth": 2,
            "encoder.dropout": 0.1,
            "pool.mode": "avg",
            "head.units": 64,
            "head.dropout": 0.1,
            "optimizer": "adam",
            "learning_rate": 0.001,
            "batch_size": 16,
            "clipnorm": None,
        },
        {  # bidirectional GRU with clipping
            "encoder.block": "gru",
            "encoder.units": 32,
            "encoder.bidirectional": True,
            "encoder.depth": 1,
            "encoder.dropout": 0.0,
            "pool.mode": "avg",
            "head.units": 32,
            "head.dropout": 0.0,
            "optimizer": "adam",
            "learning_rate": 0.003,
            "batch_size": 16,
            "clipnorm": 1.0,
        },
    ],
    "tabular_mlp": [
        OLD_TABLE_START,  # the start list's first entry before the portfolio replaced it (7cd57e1)
        {**OLD_TABLE_START, "columns.numeric": "piecewise_linear", "columns.numeric_bins": 16},  # its second
        {  # one wide layer
            "activation": "relu",
            "columns.categorical": "one_hot",
            "num_layers": 1,
            "layers.0.units": 256,
            "layers.0.norm": "none",
            "layers.0.dropout": 0.1,
            "optimizer": "adam",
            "learning_rate": 0.003,
            "batch_size": 32,
        },
        {  # three layer-normed layers, embedded categories, AdamW
            "activation": "gelu",
            "columns.categorical": "embedding",
            "columns.embedding_dim": 8,
            "num_layers": 3,
            **{f"layers.{i}.units": u for i, u in enumerate((256, 128, 64))},
            **{f"layers.{i}.norm": "layer" for i in range(3)},
            **{f"layers.{i}.dropout": d for i, d in enumerate((0.1, 0.1, 0.0))},
            "optimizer": "adamw",
            "learning_rate": 0.001,
            "weight_decay": 1.0e-4,
            "batch_size": 64,
        },
    ],
}


# ---------------------------------------------------------------- candidates


def default_spaces(overrides: dict[str, str]) -> dict[str, str]:
    from automl.search import DEFAULT_SPACES

    return {**DEFAULT_SPACES, **overrides}


def candidates(space_name: str, n: int, seed: int) -> tuple[list[dict], list[str]]:
    """[{name, params, id}] for one space: start entries, hand-written ones, n sampled; and notes on
    hand-written entries the space does not accept. Complete, deduplicated, deterministic by seed."""
    import optuna

    from automl.space import SearchSpace, SpaceError, load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_name)
    names = set(space.parameters())
    notes: list[str] = []

    def complete(partial: dict, study) -> dict:
        if partial:
            study.enqueue_trial(partial)
        params = space.sample(study.ask()).params
        return {k: v for k, v in params.items() if k in names}  # fixed values are not parameters

    fill = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed + 1))
    out: list[dict] = []
    for i, entry in enumerate(space.start):
        out.append({"name": f"start-{i}", "params": complete(entry, fill)})
    for i, entry in enumerate(HAND.get(space.name, [])):
        try:  # the space's own check of a start entry: names and ranges
            SearchSpace(space.raw["architecture"], space.raw["training"], name=space.name, start=[entry])
        except SpaceError as exc:
            notes.append(f"{space.name} hand-{i} skipped: {exc}")
            continue
        out.append({"name": f"hand-{i}", "params": complete(entry, fill)})
    for i in range(n):
        out.append({"name": f"random-{i}", "params": complete({}, draw)})
    seen, unique = set(), []
    for c in out:
        # at the precision the portfolio yaml is printed with: a shipped start entry taken from a
        # sampled candidate is the same candidate, not a second one
        rounded = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in c["params"].items()}
        c["id"] = hashlib.sha256(json.dumps([space.name, rounded], sort_keys=True).encode()).hexdigest()[:12]
        if c["id"] not in seen:
            seen.add(c["id"])
            unique.append(c)
    return unique, notes


# ---------------------------------------------------------------- scoring (a child process per task)


def cache_path(task: str, epochs: int, seed: int, commit: str) -> Path:
    return CACHE / f"{task}__e{epochs}__s{seed}__{commit}.json"


def score_candidate(task: str, splits: dict, space_name: str, params: dict, epochs: int, seed: int, tmp: Path) -> dict:
    """One candidate trained once on one task: its validation objective, validation and test scores."""
    regression = TASKS[task].task == "regression"
    cls = task_class(task)
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]
    score = regression_scores if regression else scores
    started = time.time()
    clf = cls(
        max_trials=1,
        seed=seed,
        epochs=epochs,
        space=space_name,
        start=False,
        enqueue=[params],
        verbose=False,
        isolate=False,  # one trial per search: no worker to start
        storage=str(tmp / "optuna.journal"),
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        study_name=f"{task}-{hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]}",
        ensemble=False,  # one trial: nothing to mix
    )
    try:
        result = clf.fit(x, y, validation_data=(x_val, y_val))
        trial = result.best_trial
    except Exception as exc:  # a configuration that cannot train here (too small an input, NaN loss)
        return {"error": f"{type(exc).__name__}: {exc}"[:500], "seconds": time.time() - started}
    return {
        "objective": result.objective,
        "direction": result.study.direction.name.lower(),
        "val_objective": float(trial.value),
        "epochs_run": trial.user_attrs.get("epochs_run"),
        "val": score(y_val, clf.predict(x_val)),
        "test": score(y_test, clf.predict(x_test)),
        "seconds": time.time() - started,
    }


def score_task(task: str, space_name: str, n: int, epochs: int, seed: int, resume: bool) -> None:
    """Every candidate of the task's kind on the task, the cache file written after each."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    check_data([task])
    splits = load(task)
    cands, _ = candidates(space_name, n, seed)
    path = cache_path(task, epochs, seed, code_version())
    cached = json.loads(path.read_text()) if resume and path.exists() else {}
    rows = cached.get("candidates", {})
    with tempfile.TemporaryDirectory(prefix="automl-portfolio-") as tmp:
        for i, c in enumerate(cands):
            if c["id"] in rows:
                continue
            row = score_candidate(task, splits, space_name, c["params"], epochs, seed, Path(tmp))
            rows[c["id"]] = {"name": c["name"], "space": space_name, "params": c["params"], **row}
            what = row.get("error") or f"val {row['val_objective']:.4f}, test {row['test']}"
            print(f"  [{task}] {i + 1}/{len(cands)} {c['name']}: {what} ({row['seconds']:.0f} s)", file=sys.stderr)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps({"task": task, "epochs": epochs, "seed": seed, "candidates": rows}, indent=1, default=str)
            )
    print(MARK + str(path), flush=True)


# ---------------------------------------------------------------- choosing


def regret(task: str, members: list[str], rows: dict, pick: str) -> float:
    """The portfolio's normalised test regret on one task (module docstring); 1 when no member trained."""
    good = {c: r for c, r in rows[task].items() if "error" not in r}
    tests = [r["test"][metric(task)] for r in good.values()]
    if not tests:
        return 0.0
    best, worst = max(tests), min(tests)
    trained = [m for m in members if m in good]
    if not trained:
        return 1.0

    def key(c):
        r = good[c]
        if pick == "score":
            return -r["val"][metric(task)]
        return r["val_objective"] if r["direction"] == "minimize" else -r["val_objective"]

    chosen = min(trained, key=lambda c: (key(c), members.index(c)))
    return 0.0 if best == worst else (best - good[chosen]["test"][metric(task)]) / (best - worst)


def greedy(ids: list[str], tasks: list[str], rows: dict, k: int, pick: str) -> list[str]:
    """Members added one at a time, each lowering the mean regret most (ties: the earlier candidate)."""
    chosen: list[str] = []
    for _ in range(min(k, len(ids))):
        rest = [c for c in ids if c not in chosen]
        chosen.append(
            min(rest, key=lambda c: (np.mean([regret(t, [*chosen, c], rows, pick) for t in tasks]), ids.index(c)))
        )
    return chosen


def yaml_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):  # YAML 1.1 (PyYAML) reads 1e-05 as a string: the mantissa needs a dot
        mantissa, e, exponent = f"{v:.6g}".partition("e")
        mantissa += "" if "." in mantissa or mantissa in ("inf", "-inf", "nan") else ".0"
        return mantissa + e + exponent
    return json.dumps(v) if isinstance(v, str) and not v.replace("_", "").isalnum() else str(v)


def start_yaml(params_list: list[dict], comment: str) -> str:
    lines = [f"# {comment}", "start:"]
    for p in params_list:
        lines.append("  - {" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in p.items()) + "}")
    return "\n".join(lines)


def check_yaml(text: str, space_name: str) -> str | None:
    """The printed `start:` entries read back by YAML and checked by the space: None when they pass."""
    import yaml

    from automl.space import SearchSpace, SpaceError, load_space

    space = load_space(space_name)
    try:
        SearchSpace(space.raw["architecture"], space.raw["training"], start=yaml.safe_load(text)["start"])
    except (SpaceError, yaml.YAMLError) as exc:
        return f"the start entries below do not load into {space_name}: {exc}"
    return None


def report_kind(kind: str, space_name: str, tasks: list[str], cands: list[dict], rows: dict, k: int, pick: str, seed):
    ids = [c["id"] for c in cands]
    name = {c["id"]: c["name"] for c in cands}
    shipped = [c["id"] for c in cands if c["name"].startswith("start-")]
    full = greedy(ids, tasks, rows, k, pick)
    out = [
        f"### {kind}: {space_name}, {len(tasks)} task{'s' if len(tasks) > 1 else ''}, {len(cands)} candidates",
        "",
        f"Full-suite portfolio: {', '.join(name[c] for c in full)} (in-sample mean regret "
        f"{np.mean([regret(t, full, rows, pick) for t in tasks]):.3f}); shipped start list: "
        f"{', '.join(name[c] for c in shipped) or 'none'}.",
        "",
        "| task | best candidate: test | leave-one-task-out portfolio | its regret | full-suite regret "
        "| shipped start regret |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    loto, fulls, ships = [], [], []
    for task in tasks:
        good = {c: r for c, r in rows[task].items() if "error" not in r}
        top = max(good, key=lambda c: good[c]["test"][metric(task)]) if good else None
        best = f"{name.get(top, top)}: {good[top]['test'][metric(task)]:.4f}" if top else "-"
        others = [t for t in tasks if t != task]
        members = greedy(ids, others, rows, k, pick) if others else []
        r_loto = regret(task, members, rows, pick) if members else float("nan")
        r_full, r_ship = regret(task, full, rows, pick), regret(task, shipped, rows, pick) if shipped else float("nan")
        loto.append(r_loto)
        fulls.append(r_full)
        ships.append(r_ship)
        failed = len(rows[task]) - len(good)
        label = task + (f" ({failed} failed)" if failed else "")
        out.append(
            f"| {label} | {best} | {', '.join(name[c] for c in members) or '-'} | {r_loto:.3f} | {r_full:.3f} "
            f"| {r_ship:.3f} |"
        )
    mean = lambda xs: f"{np.nanmean(xs):.3f}" if not all(np.isnan(xs)) else "-"  # noqa: E731
    out.append(f"| mean | | | {mean(loto)} | {mean(fulls)} | {mean(ships)} |")
    gap = f"{np.nanmean(loto) - np.nanmean(fulls):+.3f}" if len(tasks) > 1 else "n/a (one task)"
    text = start_yaml(
        [next(c["params"] for c in cands if c["id"] == m) for m in full],
        f"greedy portfolio of {len(full)} by bench/portfolio.py (seed {seed}): lowest mean test regret over "
        f"{', '.join(tasks)}",
    )
    problem = check_yaml(text, space_name)
    out += [
        "",
        f"Leave-one-task-out minus full-suite mean regret: {gap} (what a user on new data loses to "
        "a portfolio tuned on their own task).",
        *([f"**{problem}**"] if problem else []),
        "",
        "```yaml",
        text,
        "```",
        "",
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(SUITE), help="comma-separated task names or kinds (the suite)")
    ap.add_argument("--candidates", type=int, default=16, help="configurations sampled per space (16)")
    ap.add_argument("--epochs", type=int, default=10, help="most epochs per candidate and task (10)")
    ap.add_argument("--k", type=int, default=3, help="portfolio size (3)")
    ap.add_argument("--seed", type=int, default=0, help="sampling and training seed (0)")
    ap.add_argument("--pick", choices=("objective", "score"), default="objective", help="how a member is chosen")
    ap.add_argument("--space", action="append", default=[], metavar="KIND=NAME", help="another space for a kind")
    ap.add_argument("--resume", action="store_true", help="keep cached candidate scores")
    ap.add_argument("--write", action="store_true", help="put the report into bench/RESULTS.md (## Portfolio)")
    ap.add_argument("--one", metavar="TASK", help="(child) score every candidate on one task")
    args = ap.parse_args(argv)
    if args.candidates < 0 or args.epochs < 1 or args.k < 1:
        ap.error("--candidates must be 0 or more, --epochs and --k at least 1")
    overrides = {}
    for spec in args.space:
        kind, sep, name = spec.partition("=")
        if not sep or kind not in KINDS:
            ap.error(f"--space {spec!r}: expected KIND=NAME with KIND one of {', '.join(KINDS)}")
        overrides[kind] = name
    try:
        tasks = parse_tasks(args.tasks)
    except ValueError as exc:
        ap.error(str(exc))
    spaces = default_spaces(overrides)
    if args.one:
        if args.one not in TASKS:
            ap.error(f"--one: unknown task {args.one!r}")
        score_task(args.one, spaces[TASKS[args.one].kind], args.candidates, args.epochs, args.seed, args.resume)
        return 0
    check_data(tasks)
    header = print_header()
    command = shlex.join([".venv/bin/python", "bench/portfolio.py", *(argv if argv is not None else sys.argv[1:])])
    started = time.time()
    failed: list[str] = []
    paths: dict[str, Path] = {}
    for task in tasks:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", task, "--candidates", str(args.candidates)]
        cmd += ["--epochs", str(args.epochs), "--seed", str(args.seed), *(f"--space={s}" for s in args.space)]
        cmd += ["--resume"] if args.resume else []
        print(f"[{time.strftime('%H:%M:%S')}] {task} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        done = [line[len(MARK) :] for line in proc.stdout.splitlines() if line.startswith(MARK)]
        if proc.returncode != 0 or not done:
            failed.append(task)
            print(f"  -> child exited {proc.returncode}", file=sys.stderr)
        else:
            paths[task] = Path(done[-1])  # named by the commit the child saw
    sections = []
    notes: list[str] = []
    for kind in KINDS:
        mine = [t for t in tasks if TASKS[t].kind == kind and t in paths]
        if not mine:
            continue
        cands, why = candidates(spaces[kind], args.candidates, args.seed)
        notes += why
        cached = {t: json.loads(paths[t].read_text())["candidates"] for t in mine}
        scored = [c for c in cands if all(c["id"] in cached[t] for t in mine)]  # comparable on every task
        if len(scored) < len(cands):
            left = ", ".join(c["name"] for c in cands if c not in scored)
            notes.append(f"{kind}: left out, not scored on every task (the space changed meanwhile?): {left}")
        if not scored:
            continue
        cands = scored
        rows = {t: {c["id"]: cached[t][c["id"]] for c in cands} for t in mine}
        sections.append(report_kind(kind, spaces[kind], mine, cands, rows, args.k, args.pick, args.seed))
    body = "\n".join(
        [
            f"Candidate start configurations per kind (each default space's start list, hand-written ones in "
            f"bench/portfolio.py and {args.candidates} sampled at random, seed {args.seed}), each trained once for "
            f"at most {args.epochs} epochs on every suite task of its kind; greedy portfolios of {args.k} by mean "
            f"normalised test regret, a task's member picked by validation "
            f"{'objective (val_loss)' if args.pick == 'objective' else 'accuracy / R²'}. Regret 0 = the best "
            "candidate on that task, 1 = the worst. Method: bench/portfolio.py docstring.",
            "",
            f"Command: `{command}`  ",
            f"Header: {header}  ",
            f"Code: {', '.join(sorted({p.stem.rsplit('__', 1)[-1] for p in paths.values()})) or '-'}; "
            f"{(time.time() - started) / 60:.0f} min",
            "",
            *sections,
            *(f"- {n}" for n in notes),
        ]
    )
    print()
    print(body)
    if args.write:
        from results_md import RESULTS, write_section

        write_section("Portfolio", body)
        print(f"(written to {RESULTS.relative_to(ROOT)}, section ## Portfolio)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MissingData as exc:
        sys.exit(exc.code)
