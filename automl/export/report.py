"""The export report: what `export_model` wrote and measured, one row per file.

`ExportReport` is the only reader and writer of `export_report.json` (and `REPORT.md`); `rows()`
is the one flat view of it that the Markdown file, the CLI table, the plots and the HTML report
all render.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import FLOAT32_TOLERANCE, QUANT_ACCURACY_TOLERANCE

REPORT_FILE = "export_report.json"
ROW_KEYS = (
    "agreement",
    "max_abs_diff",
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_per_s",
    "gzip_bytes",
    "sparsity",
)


@dataclass
class ExportReport:
    """What `export_model` wrote and measured; `variants[name]` is one row of the report."""

    out_dir: str
    task: str
    metric: str  # accuracy | mae
    eval_samples: int
    batch_size: int
    threads: int | None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    recommended: str | None = None  # smallest TFLite file as good as float32
    meta: dict[str, Any] = field(default_factory=dict)  # trial, study, parameters...
    extra: dict[str, Any] = field(default_factory=dict)  # selection, student, pareto (nested reports)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.variants[name]

    def ok(self, name: str) -> bool:
        return self.variants.get(name, {}).get("status") == "ok"

    def path(self, name: str) -> Path:
        return Path(self.out_dir) / self.variants[name]["file"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportReport:
        """A report read back (from JSON, or nested in another report); unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        defaults = {
            "out_dir": "",
            "task": "",
            "metric": "accuracy",
            "eval_samples": 0,
            "batch_size": 0,
            "threads": None,
        }
        return cls(**{**defaults, **{k: v for k, v in data.items() if k in known}})

    @classmethod
    def read(cls, path: str | Path) -> ExportReport:
        """`export_report.json`, given the file or the export folder."""
        path = Path(path)
        path = path if path.suffix == ".json" else path / REPORT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no export report (run `automl export` first)")
        return cls.from_dict(json.loads(path.read_text()))

    def write(self) -> None:
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_FILE).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        (out / "REPORT.md").write_text(self.markdown())

    # ------------------------------------------------------------ the one flat view

    def rows(self, include_failed: bool = True, nested: bool = True, prefix: str = "") -> list[dict[str, Any]]:
        """One row per file: variant, file, format, status, size_kb, vs_float32, metric and value,
        agreement, max_abs_diff, latency_p50_ms, latency_p95_ms, throughput_per_s, recommended,
        reason. `nested` adds the rows of Pareto members and of a distilled student."""
        out: list[dict[str, Any]] = []
        base = self.variants.get("float32", {}).get("size_bytes")
        for name, v in self.variants.items():
            status = v.get("status", "ok")
            if status != "ok" and not include_failed:
                continue
            size = _number(v.get("size_bytes"))
            ratio = size / base if size and base and v.get("format") == "tflite" else None
            out.append(
                {
                    "variant": f"{prefix}{name}",
                    "file": v.get("file"),
                    "format": v.get("format"),
                    "status": status,
                    "size_kb": size / 1024 if size is not None else None,
                    "vs_float32": ratio,
                    "metric": self.metric,
                    "value": _number(v.get(self.metric)),
                    **{k: _number(v.get(k)) for k in ROW_KEYS},
                    "recommended": name == self.recommended,
                    "reason": v.get("reason"),
                }
            )
        if nested:
            for trial, member in (self.extra.get("pareto") or {}).items():
                out += ExportReport.from_dict(member).rows(include_failed, nested, f"trial {trial} ")
            if isinstance(self.extra.get("student"), dict):
                out += ExportReport.from_dict(self.extra["student"]).rows(include_failed, False, f"{prefix}student ")
        return out

    # ------------------------------------------------------------ REPORT.md

    def markdown(self) -> str:
        if self.extra.get("pareto"):
            return self._pareto_markdown()
        lines = [f"# Export report{' — ' + self.meta['title'] if self.meta.get('title') else ''}", ""]
        facts = {k: v for k, v in self.meta.items() if k != "title" and not isinstance(v, (dict, list))}
        facts.update(
            {
                "task": self.task,
                "held-out samples": self.eval_samples,
                "throughput batch size": self.batch_size,
                "interpreter threads": self.threads or "default",
            }
        )
        lines += [f"- {k}: {v}" for k, v in facts.items()]
        lines += ["", *self.variant_table(), ""]
        lines += [f"TFLite: {note}." for note in self.extra.get("tflite_notes", [])]
        if self.recommended:
            lines.append(
                f"Recommended for phones: `{self.variants[self.recommended]['file']}` "
                f"(smallest TFLite file within {QUANT_ACCURACY_TOLERANCE * 100:.1f} points of float32)."
            )
        lines.append(
            "Agreement: share of held-out samples where the file predicts the same class as the Keras "
            "model (regression: within 1% of the predictions' spread); float32 TFLite must stay within "
            f"{FLOAT32_TOLERANCE:g} of Keras per output value. Latency: one sample per call (batch 1), "
            "Keras via `model.predict`."
        )
        if sel := self.extra.get("selection"):
            lines += [
                "",
                f"## Quantization-aware selection (top {len(sel['candidates'])} by {sel['ranked_by']})",
                "",
                f"| trial | float value | int8 {self.metric} | float32 TFLite {self.metric} |",
                "| ---: | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {c['trial']} | {fmt(c.get('value'))} | {fmt(c.get('int8'))} | {fmt(c.get('float32'))} |"
                for c in sel["candidates"]
            ]
            lines.append(f"\nChosen: trial {sel['chosen']}.")
        if student := self.extra.get("student"):
            lines += ["", "## Teacher vs student (knowledge distillation)", "", *self._teacher_student_table(student)]
        return "\n".join(lines) + "\n"

    def variant_table(self) -> list[str]:
        m = self.metric
        head = (
            f"| variant | file | size KB | vs float32 | gzip KB | sparsity | {m} | agreement | max abs diff | p50 ms | "
            "p95 ms | samples/s | note |"
        )
        lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in self.rows(nested=False):
            note = r["reason"] or ""
            if r["status"] != "ok":
                note = f"**{r['status']}**: {note}"
            ratio = f"{r['vs_float32']:.0%}" if r["vs_float32"] is not None else ""
            lines.append(
                f"| {r['variant']} | {r['file'] or ''} | {fmt(r['size_kb'], 1)} | {ratio} | "
                f"{fmt(r['gzip_bytes'] / 1024 if r['gzip_bytes'] is not None else None, 1)} | "
                f"{fmt(r['sparsity'], 3)} | "
                f"{fmt(r['value'])} | {fmt(r['agreement'])} | {fmt(r['max_abs_diff'], sci=True)} | "
                f"{fmt(r['latency_p50_ms'], 3)} | {fmt(r['latency_p95_ms'], 3)} | "
                f"{fmt(r['throughput_per_s'], 0)} | {note.replace('|', '/')[:600]} |"
            )
        return lines

    def _teacher_student_table(self, student: dict) -> list[str]:
        m = self.metric
        lines = [
            f"| model | variant | params | size KB | {m} | p50 ms | samples/s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for who, rep in (("teacher", self), ("student", ExportReport.from_dict(student))):
            params = rep.meta.get("param_count", "")
            for r in rep.rows(include_failed=False, nested=False):
                if r["variant"] in ("keras", "float32", "int8"):
                    lines.append(
                        f"| {who} | {r['variant']} | {params} | {fmt(r['size_kb'], 1)} | {fmt(r['value'])} | "
                        f"{fmt(r['latency_p50_ms'], 3)} | {fmt(r['throughput_per_s'], 0)} |"
                    )
        return lines

    def _pareto_markdown(self) -> str:
        lines = [f"# Export report — {self.meta.get('title', '')}", ""]
        for member in self.extra["pareto"].values():
            r = ExportReport.from_dict(member)
            trial = r.meta.get("trial")
            lines += [
                f"## Trial {trial} ({r.meta.get('objective')} {fmt(r.meta.get('value'))}, "
                f"{r.meta.get('param_count')} weights) — `trial-{trial:03d}/`",
                "",
                *r.variant_table(),
                "",
            ]
        return "\n".join(lines)


def fmt(v, digits: int = 4, sci: bool = False) -> str:
    """A number for a table: '-' when missing, integers as they are."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    if sci:
        return f"{v:.2e}"
    return f"{v:.{digits}f}" if digits else f"{v:,.0f}"


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
