"""Reporting on one finished tiny search (conftest's `finished_search`): the plots on the MLflow parent
run, `automl report`'s HTML, the live progress lines, a real `mlflow server` serving the runs over its
REST API, and both notebooks executed top to bottom."""

import base64
import json
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SEARCH_PLOTS = {
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "learning_curves",
    "training_diagnostics",
}
PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Tables by id (rows of cell texts) and the sources of the images of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str, str] = {}  # enclosing figure id -> img src
        self.pres: list[str] = []
        self._table = self._row = self._cell = self._figure = self._pre = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "figure":
            self._figure = attrs.get("id")
        elif tag == "img":
            self.images[self._figure or attrs.get("alt")] = attrs["src"]
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "figure":
            self._figure = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre.append(data)


def _fake_export(out: Path) -> Path:
    """An `automl export` folder as `ExportReport.write` leaves it (numbers made up, shape real)."""
    from automl.export import ExportReport

    out.mkdir(exist_ok=True)
    ok = {"status": "ok", "format": "tflite", "agreement": 1.0}
    ExportReport(
        out_dir=str(out),
        task="classification",
        metric="accuracy",
        eval_samples=60,
        batch_size=32,
        threads=None,
        recommended="dynamic_int8",
        variants={
            "keras": {"status": "ok", "format": "keras", "file": "model.keras", "size_bytes": 40960, "accuracy": 0.85},
            "float32": {
                **ok,
                "file": "model_float32.tflite",
                "size_bytes": 20480,
                "accuracy": 0.85,
                "latency_p50_ms": 0.21,
                "latency_p95_ms": 0.3,
            },
            "dynamic_int8": {
                **ok,
                "file": "model_dynamic_int8.tflite",
                "size_bytes": 8192,
                "accuracy": 0.84,
                "latency_p50_ms": 0.18,
                "latency_p95_ms": 0.25,
            },
            "int16x8": {"status": "unsupported", "format": "tflite", "reason": "no int16x8 kernel"},
        },
    ).write()
    return out


# ---------------------------------------------------------------- plots on the parent run


def test_plots_are_artifacts_of_the_parent_run(finished_search):
    from mlflow.tracking import MlflowClient

    result = finished_search.result
    assert len([t for t in result.study.trials if t.state == TrialState.COMPLETE]) >= 2, "plots need 2 complete"
    client = MlflowClient(finished_search.tracking_uri)
    listed = {a.path for a in client.list_artifacts(result.mlflow_run_id, "plots")}
    assert listed == {f"plots/{name}.png" for name in SEARCH_PLOTS}  # no Pareto (1 objective), no export yet
    for artifact in client.list_artifacts(result.mlflow_run_id, "plots"):
        assert artifact.file_size > 5000, artifact
    local = Path(
        client.download_artifacts(
            result.mlflow_run_id, "plots/learning_curves.png", str(finished_search.root / "download")
        )
    )
    assert local.read_bytes().startswith(PNG)


# ---------------------------------------------------------------- automl report


def test_report_command_writes_leaderboard_plots_architecture_and_export(finished_search, tmp_path):
    result = finished_search.result
    export_dir = _fake_export(tmp_path / "export")
    out = tmp_path / "report.html"
    cmd = [
        sys.executable,
        "-m",
        "automl.cli",
        "report",
        "--study",
        finished_search.study_name,
        "--out",
        str(out),
        "--storage",
        finished_search.storage,
        "--export-dir",
        str(export_dir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())  # rich wraps at the terminal width
    assert f"({len(result.study.trials)} trials, 6 plots, export table) written to {out}" in said
    text = out.read_text()
    assert "<script" not in text and 'src="http' not in text and "<link" not in text  # self-contained
    page = _Page(text)

    # the leaderboard: every trial, with its state and value as Optuna has them
    header, *rows = page.tables["leaderboard"]
    assert header[:3] == ["trial", "state", "value"]
    assert sorted(int(r[0]) for r in rows) == [t.number for t in result.study.trials]
    by_number = {int(r[0]): r for r in rows}
    for t in result.study.trials:
        assert by_number[t.number][1] == t.state.name
        if t.state == TrialState.COMPLETE:
            assert float(by_number[t.number][2]) == pytest.approx(t.value, abs=6e-4)  # printed with 4 digits
    assert int(rows[0][0]) == result.best_trial.number  # best first
    # a parameter a trial did not have (its condition was false) shows as "-", not "nan"
    assert not [cell for r in rows for cell in r if cell.lower() == "nan"]
    one_block = [int(r[0]) for r in rows if r[header.index("num_blocks")] == "1"]
    for r in rows:
        if "blocks.1.filters" in header and int(r[0]) in one_block:
            assert r[header.index("blocks.1.filters")] == "-"

    # every plot embedded as a PNG data URI, the export comparison too (an export was given)
    assert set(page.images) == {f"plot-{n}" for n in SEARCH_PLOTS | {"export_comparison"}}
    for src in page.images.values():
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert text.count('src="data:image/png;base64,') == len(SEARCH_PLOTS) + 1

    # best architecture: the sampled configuration and the Keras summary of the saved model
    assert f"Trial {result.best_trial.number}'s sampled configuration" in text
    assert any("Total params" in pre for pre in page.pres)
    # the export table: one row per file, the unsupported one with its reason
    header, *rows = page.tables["export"]
    variants = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(variants) == {"keras", "float32", "dynamic_int8", "int16x8"}
    assert variants["int16x8"]["status"] == "unsupported" and variants["int16x8"]["reason"] == "no int16x8 kernel"
    assert float(variants["dynamic_int8"]["size_kb"]) == 8.0
    # the parent run's settings and where it lives
    assert result.mlflow_run_id in text and page.tables["leaderboard"]


def test_report_of_an_unknown_study_is_one_error_line(finished_search, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "automl.cli",
        "report",
        "--study",
        "nope",
        "--out",
        str(tmp_path / "r.html"),
        "--storage",
        finished_search.storage,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "no study 'nope'" in done.stderr and "reportable" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------- live progress


def test_progress_draws_a_bar_in_a_terminal_and_plain_lines_elsewhere(finished_search):
    from rich.console import Console

    from automl.progress import SearchProgress

    study = finished_search.result.study
    trials = study.trials
    for terminal in (True, False):
        out = StringIO()
        progress = SearchProgress(
            len(trials),
            "val_accuracy",
            timeout=600,
            console=Console(file=out, force_terminal=terminal, width=200, highlight=False),
        )
        assert progress.live is terminal
        for t in trials:
            progress.trial_finished(study, t)
        progress.close()
        text = out.getvalue()
        for t in trials:
            assert f"trial {t.number:>3}" in text
        best = finished_search.result.best_trial
        assert f"best {best.value:.4f} (trial {best.number})" in text
        assert f"{len(trials)}/{len(trials)} finished" in text
        assert ("ETA" in text) is terminal and ("\x1b[" in text) is terminal  # the bar only in a terminal


# ---------------------------------------------------------------- a real mlflow server


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def _post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def test_mlflow_server_serves_the_experiment_parent_and_every_trial_run(finished_search, served_search):
    result = finished_search.result
    api = f"{served_search}/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name={finished_search.study_name}")["experiment"]
    runs = _post(f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    by_id = {r["info"]["run_id"]: r for r in runs}

    parent = by_id[result.mlflow_run_id]
    assert tags[result.mlflow_run_id]["automl.role"] == "search" and parent["info"]["status"] == "FINISHED"
    assert parent["info"]["run_name"] == finished_search.study_name
    parent_metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    assert parent_metrics["best_val_accuracy"] == pytest.approx(result.best_value)
    assert parent_metrics["trials_complete"] == sum(t.state == TrialState.COMPLETE for t in result.study.trials)
    listed = _get(f"{api}/artifacts/list?run_id={result.mlflow_run_id}&path=plots")["files"]
    assert {f["path"] for f in listed} == {f"plots/{n}.png" for n in SEARCH_PLOTS}

    children = {
        int(t["automl.trial_number"]): by_id[run_id]
        for run_id, t in tags.items()
        if t.get("mlflow.parentRunId") == result.mlflow_run_id
    }
    assert len(runs) == 1 + len(children)
    assert sorted(children) == [t.number for t in result.study.trials]
    for trial in result.study.trials:
        run = children[trial.number]
        run_id = run["info"]["run_id"]
        assert run_id == trial.user_attrs["mlflow_run_id"]
        assert run["info"]["run_name"] == f"trial-{trial.number:03d}"
        assert tags[run_id]["automl.state"] == trial.state.name and tags[run_id]["automl.role"] == "trial"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params == {k: str(v) for k, v in trial.user_attrs["params"].items()}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["best_val_accuracy"] == pytest.approx(max(trial.intermediate_values.values()))
        if trial.state == TrialState.COMPLETE:
            assert metrics["best_val_accuracy"] == pytest.approx(trial.value)
        assert metrics["epochs_run"] == trial.user_attrs["epochs_run"] and metrics["param_count"] > 0
        history = _get(f"{api}/metrics/get-history?run_id={run_id}&metric_key=val_accuracy")["metrics"]
        assert {m["step"]: pytest.approx(m["value"]) for m in history} == trial.intermediate_values


# ---------------------------------------------------------------- notebooks


def _parameters_cell(nb) -> int:
    found = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(found) == 1, "one cell tagged 'parameters' (papermill)"
    return found[0]


def execute_notebook(path: Path, cwd: Path, **parameters):
    """Run a notebook top to bottom the way papermill does: the given parameters in a cell right after
    the one tagged `parameters`. Returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    i = _parameters_cell(nb)
    source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(str(out.get("data", {}).get("text/plain", "")))
        parts.append(str(out.get("data", {}).get("text/markdown", "")))
    return "".join(parts)


@pytest.mark.parametrize("name", ["report.ipynb", "quickstart.ipynb"])
def test_notebooks_are_committed_without_outputs_and_with_a_parameters_cell(name):
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    _parameters_cell(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_report_notebook_executes_on_a_finished_search(finished_search, tmp_path):
    result = finished_search.result
    nb = execute_notebook(
        NOTEBOOKS / "report.ipynb", tmp_path, study_name=finished_search.study_name, storage=finished_search.storage
    )  # tracking URI: the one the study records
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "\n".join(_text(c) for c in code)
    assert f"**{finished_search.study_name}**" in text and result.mlflow_run_id in text
    leaderboard = next(c for c in code if c.source.strip() == "report.leaderboard")
    assert "text/html" in leaderboard.outputs[0]["data"]
    html = leaderboard.outputs[0]["data"]["text/html"]
    for t in result.study.trials:
        assert f"<td>{t.state.name}</td>" in html
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(SEARCH_PLOTS)
    assert "Total params" in text  # the best trial's model summary
    assert f"trial {result.best_trial.number}:" in text
    for t in result.study.trials:  # the trials as MLflow serves them
        assert f"trial-{t.number:03d}" in text
    assert "no export yet" in text


def test_quickstart_notebook_runs_a_small_search_end_to_end(tmp_path):
    nb = execute_notebook(
        NOTEBOOKS / "quickstart.ipynb",
        tmp_path,
        trials=2,
        epochs=1,
        samples=300,
        study_name="quick",
        home=str(tmp_path / "mlruns"),
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "\n".join(_text(c) for c in code)
    assert "SearchResult(study='quick', trials=2)" in text
    assert "best val_accuracy:" in text and "held-out accuracy:" in text and "Total params" in text
    assert len([o for c in code for o in c.outputs if "image/png" in o.get("data", {})]) == 2
    # the stores went where `home` said, with the plots on the search's run
    assert (tmp_path / "mlruns" / "optuna.journal").is_file() and (tmp_path / "mlruns" / "mlflow.db").is_file()
    plots = list((tmp_path / "mlruns" / "artifacts").rglob("plots/optimization_history.png"))
    assert len(plots) == 1


def test_importances_keep_a_parameter_whose_range_depends_on_another():
    """image_cnn's learning rate has SGD's range beside Adam's (`one_of`); Optuna leaves a parameter
    with changing ranges out of its importances, so the plots read it over the union of its ranges."""
    import optuna

    from automl import plots
    from automl.space import load_space

    space = load_space("image_cnn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: 10 * space.sample(t).training["learning_rate"], n_trials=30)
    assert len({str(t.distributions["learning_rate"]) for t in study.trials}) == 2  # both ranges were sampled
    ranked = list(plots.importances(study))
    assert ranked[0] == "learning_rate"
    figure = plots.param_importances(study)
    assert "learning_rate" in [label.get_text() for ax in figure.axes for label in ax.get_yticklabels()]


def test_trials_that_all_score_the_same_skip_the_importances_not_fail_them(tmp_path):
    """Two trials at one value (a search of a trivially separable set): fANOVA has nothing to explain
    and raised "zero total variance", which every search printed as a failed plot; now the
    importances are skipped with the reason and parallel coordinates still drawn, over every parameter."""
    import optuna

    from automl import plots

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("a", 0, 1) * 0 + t.suggest_int("b", 1, 4) * 0 + 1.0, n_trials=3)
    made = plots.search_plots(study, tmp_path)
    assert made.failed == {}
    assert "every complete trial scored the same" in made.skipped["param_importances"]
    assert "parallel_coordinate" in made.files
