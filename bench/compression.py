"""Compression for phones, measured: pruning sparsity vs gzip'd size and accuracy, post-training int8
vs quantization-aware int8, and a size/accuracy Pareto front searched with and without the space's
`compression:` section.

Part 1 (`sweep`): per task and seed, the first start configuration of the kind's default space (the
shipped portfolio's first model: not tuned here) is trained on the task's fixed training split
(bench/suite_tasks.py; early stopping on validation), then exported with `automl.export_model` on the
test split: float32 and int8 files, then the compressed rows for each sparsity (50/80/90 %:
`pruned_float32`, `pruned_int8`) and QAT alone (`qat_int8`, no pruning). Every figure is a file
scored by LiteRT on the test split; `gzip` is the gzip'd file (what an app download costs).

Part 2 (`--pareto`): `automl search` with objectives test-free `val_accuracy` and
`tflite_gzip_bytes:min`, the same trials budget with and without a compression section (sparsity
0/0.5/0.8/0.9, qat on/off); reported: each front, and the smallest gzip'd int8 size among trials
within 1 point of the best validation accuracy of both runs.

    .venv/bin/python bench/compression.py --tasks mnist_test,sms_spam --seeds 0,1,2
    .venv/bin/python bench/compression.py --tasks mnist_test --seeds 0 --pareto --trials 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import header
import suite_tasks

SPARSITIES = (0.5, 0.8, 0.9)
SPACE: str | None = None  # --space: another shipped space's first start configuration
RESULTS = Path(__file__).resolve().parent / "results" / "compression"


def start_config(kind: str, seed: int, space_name: str | None = None):
    """The first start configuration of the kind's default space (what a search tries first), or of
    `space_name` (a seeded sample when it has no start list)."""
    import optuna

    from automl.search import DEFAULT_SPACES
    from automl.space import load_space

    space = load_space(space_name or DEFAULT_SPACES[kind])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    if space.start:  # else a configuration sampled with the seed
        study.enqueue_trial(space.start[0])
    return space.sample(study.ask())


def dataset(task: str, splits: dict):
    from automl.data import make_dataset

    t = suite_tasks.TASKS[task]
    (x, y), val = splits["train"], splits["val"]
    return make_dataset(x, y, validation_data=val, kind=t.kind, task=t.task, name=task)


def sweep(task: str, seed: int, epochs: int, fine_tune_epochs: int, only_qat: bool = False) -> dict:
    """Part 1 for one task and seed: every row, from the export reports."""
    import keras

    from automl.builder import build_model
    from automl.data import encode_targets, model_inputs
    from automl.export import export_model
    from automl.records import TrialSettings
    from automl.training import fit_model, training_settings

    splits = suite_tasks.load(task)
    data = dataset(task, splits)
    x_test, y_test = model_inputs(data, splits["test"][0]), encode_targets(data, splits["test"][1])
    config = start_config(data.kind, seed, SPACE)
    training = training_settings(config.training)
    keras.utils.set_random_seed(seed)
    model = build_model(config.architecture, data)
    started = time.perf_counter()
    fit_model(
        model,
        data,
        training,
        TrialSettings(objective="val_accuracy", direction="maximize", epochs=epochs, patience=3),
        [],
    )
    rows: dict[str, dict] = {}
    runs = {"base": None, "qat": {"qat": True}}
    if not only_qat:
        runs |= {f"prune{s:g}": {"sparsity": s} for s in SPARSITIES}
        runs["structured"] = {"sparsity": 0.5, "structured": True}  # whole filters: does LiteRT get faster?
    runs["finetuned"] = None
    for label, compression in runs.items():
        keras.utils.set_random_seed(seed)
        chosen = model if label != "finetuned" else finetuned(model, data, training, fine_tune_epochs)
        with tempfile.TemporaryDirectory() as out:
            report = export_model(
                chosen,
                out,
                data=data,
                x_eval=x_test,
                y_eval=y_test,
                formats="float32,int8",
                latency_runs=20,
                compression={**compression, "epochs": fine_tune_epochs} if compression else None,
                training=training,
            )
        for name, row in report.variants.items():
            if label == "finetuned" and name in ("float32", "int8"):
                name = f"finetuned_{name}"
            if label in ("base", "finetuned") or name not in ("float32", "int8"):
                key = f"{name}@{compression['sparsity']:g}" if name.startswith("pruned") else name
                key = key.replace("pruned", "structured") if label == "structured" else key
                keep = ("accuracy", "size_bytes", "gzip_bytes", "sparsity", "latency_p50_ms", "status")
                rows[key] = {k: row.get(k) for k in keep}
    return {"task": task, "seed": seed, "rows": rows, "seconds": time.perf_counter() - started}


def qat_demo(seed: int, scale: float, fine_tune_epochs: int) -> dict:
    """A model where post-training int8 loses: a digits MLP whose 4 hidden units of the second layer
    are scaled up by `scale` and their outgoing weights down by it after training. ReLU is positively
    homogeneous, so the float model computes exactly the same function, but those units' range
    dominates the layer's one int8 scale and the other units keep few levels (the channel-range
    imbalance of Nagel et al. 2019, "Data-free quantization"). Rows: float32, post-training int8,
    QAT int8, and the control: the same epochs of plain fine-tuning, then post-training int8."""
    import keras

    from automl.export import export_model

    splits = suite_tasks.load("digits")
    data = dataset("digits", splits)
    x_test, y_test = splits["test"][0].reshape(len(splits["test"][0]), -1) / 16.0, splits["test"][1]
    data.x_train = data.x_train.reshape(len(data.x_train), -1) / 16.0
    data.x_val = data.x_val.reshape(len(data.x_val), -1) / 16.0
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=40, batch_size=32, verbose=0)
    first, second = model.layers[2], model.layers[3]
    (k1, b1), (k2, b2) = first.get_weights(), second.get_weights()
    k1[:, :4], b1[:4], k2[:4] = k1[:, :4] * scale, b1[:4] * scale, k2[:4] / scale
    first.set_weights([k1, b1])
    second.set_weights([k2, b2])
    training = {"learning_rate": 3e-4, "batch_size": 32}  # QAT's rate: a tenth of training's
    rows: dict[str, dict] = {}
    for label in ("base", "qat", "finetuned"):
        chosen = model if label != "finetuned" else finetuned(model, data, training, fine_tune_epochs)
        with tempfile.TemporaryDirectory() as out:
            report = export_model(
                chosen, out, data=data, x_eval=x_test, y_eval=y_test, formats="float32,int8", latency_runs=5,
                compression={"qat": True, "epochs": fine_tune_epochs} if label == "qat" else None,
                training={**training, "learning_rate": 3e-3},
            )  # fmt: skip
        for name, row in report.variants.items():
            if label == "qat" and name != "qat_int8":
                continue
            key = f"finetuned_{name}" if label == "finetuned" else name
            rows[key] = {k: row.get(k) for k in ("accuracy", "size_bytes", "gzip_bytes", "sparsity", "status")}
    return {"task": f"digits-mlp-x{scale:g}", "seed": seed, "rows": rows}


def finetuned(model, data, training: dict, epochs: int):
    """The control: a copy trained on as the pruning is (same epochs, rate and cosine decay), no zeros;
    the pruned rows' accuracy change against it is what pruning costs, not the extra epochs' gain."""
    import keras

    from automl.records import TrialSettings
    from automl.training import fit_model

    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/m.keras")
        copy = keras.saving.load_model(f"{tmp}/m.keras", safe_mode=True)
    tune = {**training, "schedule": "cosine", "warmup_fraction": 0.0}
    settings = TrialSettings(objective="val_loss", direction="minimize", epochs=epochs, patience=None)
    fit_model(copy, data, tune, settings, [])
    return copy


def pareto(task: str, seed: int, trials: int, epochs: int) -> dict:
    """Part 2: the same search with and without a compression section; every completed trial."""
    import optuna

    from automl import Search
    from automl.search import DEFAULT_SPACES
    from automl.space import Categorical, load_space

    splits = suite_tasks.load(task)
    data = dataset(task, splits)
    base = load_space(DEFAULT_SPACES[data.kind])
    sections = {
        "without": None,
        "with": {"sparsity": Categorical(choices=[0.0, 0.5, 0.8, 0.9]), "qat": [False, True], "epochs": 2},
    }
    out: dict = {"task": task, "seed": seed, "trials": trials}
    for label, compression in sections.items():
        from automl.space import SearchSpace

        space = SearchSpace(
            base.raw["architecture"],
            base.raw["training"],
            name=f"{base.name}-{label}",
            start=base.start,
            compression=compression,
        )
        with tempfile.TemporaryDirectory() as tmp:
            result = Search(
                space,
                study_name=f"pareto-{label}",
                max_trials=trials,
                seed=seed,
                objectives=["val_accuracy", "tflite_gzip_bytes:min"],
                storage=f"{tmp}/optuna.journal",
                tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                verbose=False,
                ensemble=False,
            ).fit(data=data, epochs=epochs)
            done = result.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            out[label] = [{"accuracy": t.values[0], "gzip_bytes": t.values[1], "params": t.params} for t in done]
    return out


def cached(kind: str, task: str, seed: int, run, resume: bool) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    space = f"-{SPACE}" if SPACE else ""
    path = RESULTS / f"{kind}{space}-{task}-{seed}-{header.commit()}.json"
    if resume and path.is_file():
        return json.loads(path.read_text())
    row = run()
    row["header"] = header.header()
    path.write_text(json.dumps(row, indent=1))
    return row


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / len(values) ** 0.5:.4f}"


def paired(results: list[dict], name: str, against: str) -> str:
    """Mean ± standard error of the paired accuracy difference, in points, over the seeds."""
    diff = [
        100 * (r["rows"][name]["accuracy"] - r["rows"][against]["accuracy"])
        for r in results
        if r["rows"].get(name, {}).get("accuracy") is not None and r["rows"].get(against, {}).get("accuracy")
    ]
    if len(diff) < 2:
        return f"{diff[0]:+.2f}" if diff else "-"
    return f"{statistics.mean(diff):+.2f} ± {statistics.stdev(diff) / len(diff) ** 0.5:.2f}"


def latency(results: list[dict], name: str) -> str:
    values = [r["rows"][name].get("latency_p50_ms") for r in results]
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.3f}" if values else "-"


def sweep_table(results: list[dict]) -> list[str]:
    lines = [
        "| task | file | sparsity | test accuracy (mean ± SE) | Δ vs float32 (pt, paired) | Δ vs dense fine-tuned "
        "| size KB | gzip KB | gzip vs float32 file | LiteRT p50 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task in dict.fromkeys(r["task"] for r in results):
        runs = [r for r in results if r["task"] == task]
        for name in runs[0]["rows"]:
            acc = [r["rows"][name]["accuracy"] for r in runs if r["rows"].get(name, {}).get("accuracy") is not None]
            row = runs[0]["rows"][name]
            size = statistics.mean(r["rows"][name]["size_bytes"] or 0 for r in runs) / 1024
            gz = statistics.mean(r["rows"][name]["gzip_bytes"] or 0 for r in runs) / 1024
            ratio = statistics.mean(
                (r["rows"][name]["gzip_bytes"] or 0) / r["rows"]["float32"]["size_bytes"] for r in runs
            )
            lines.append(
                f"| {task} | {name.split('@')[0]} | {row.get('sparsity') or 0:.2f} | {mean_se(acc)} | "
                f"{paired(runs, name, 'float32')} | {paired(runs, name, 'finetuned_float32')} | "
                f"{size:.1f} | {gz:.1f} | {ratio:.1%} | {latency(runs, name)} |"
            )
    return lines


def pareto_lines(result: dict) -> list[str]:
    best = max(t["accuracy"] for k in ("with", "without") for t in result[k])
    lines = [f"{result['task']}, seed {result['seed']}, {result['trials']} trials each; best val accuracy {best:.4f}"]
    for label in ("without", "with"):
        near = [t for t in result[label] if t["accuracy"] >= best - 0.01]
        smallest = min((t["gzip_bytes"] for t in near), default=None)
        front = sorted((t["gzip_bytes"] / 1024, t["accuracy"]) for t in result[label])
        kept, top = [], -1.0
        for size, acc in front:
            if acc > top:
                kept.append(f"{size:.1f} KB: {acc:.4f}")
                top = acc
        lines.append(
            f"- {label} compression: front {'; '.join(kept)}; smallest within 1 pt of the best: "
            + (f"{smallest / 1024:.1f} KB" if smallest else "none")
        )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="mnist_test,sms_spam")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--fine-tune-epochs", type=int, default=4)
    p.add_argument("--pareto", action="store_true", help="Part 2 instead of part 1.")
    p.add_argument("--only-qat", action="store_true", help="Part 1 without the pruning rows.")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--resume", action="store_true", help="Reuse results cached for this commit.")
    p.add_argument("--space", help="Part 1 on this shipped space's first start configuration.")
    p.add_argument("--qat-demo", type=float, metavar="SCALE", help="The model where post-training int8 loses.")
    args = p.parse_args(argv)
    global SPACE
    SPACE = args.space
    tasks = suite_tasks.parse_tasks(args.tasks)
    try:
        suite_tasks.check_data(tasks)
    except suite_tasks.MissingData as exc:
        return int(exc.args[0])
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    header.print_header()
    print(f"command: {' '.join(sys.argv)}")
    if args.qat_demo:
        results = []
        for seed in seeds:
            run = lambda s=seed: qat_demo(s, args.qat_demo, args.fine_tune_epochs)  # noqa: E731
            results.append(cached("qatdemo", f"x{args.qat_demo:g}", seed, run, args.resume))
            print(f"seed {seed}: {json.dumps(results[-1]['rows'])}", flush=True)
        print("\n".join(sweep_table(results)))
        return 0
    if args.pareto:
        for task in tasks:
            for seed in seeds:
                run = lambda t=task, s=seed: pareto(t, s, args.trials, args.epochs)  # noqa: E731
                r = cached("pareto", task, seed, run, args.resume)
                print("\n".join(pareto_lines(r)), flush=True)
        return 0
    results = []
    for task in tasks:
        for seed in seeds:
            run = lambda t=task, s=seed: sweep(t, s, args.epochs, args.fine_tune_epochs, args.only_qat)  # noqa: E731
            r = cached("qat" if args.only_qat else "sweep", task, seed, run, args.resume)
            print(f"{task} seed {seed}: {json.dumps(r['rows'])}", flush=True)
            results.append(r)
    print("\n".join(sweep_table(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
