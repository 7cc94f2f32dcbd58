"""Scores of one evaluation: per-sample figures and their means, as the JSON and CSV files hold them.

JSON: {"set": ..., "psnr": mean, "ssim": mean, ["ie": mean,] "samples": [{"name": ..., "psnr": ...}, ...],
plus "settings" (what was run) and "frames" (frames scored)}. Means are plain means over samples, as every
official script reports them; a metric a set does not use is absent.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS = ("psnr", "ssim", "ie", "lpips")  # in table and CSV column order


@dataclass(frozen=True)
class Sample:
    """One scored sample: its name (e.g. a triplet "00001/0266", a held-out frame) and its figures."""

    name: str
    scores: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """{"name": ..., metric: value ...}."""
        return {"name": self.name, **self.scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """The inverse of as_dict (unknown keys are kept as scores when numeric)."""
        scores = {k: float(v) for k, v in data.items() if k != "name" and isinstance(v, (int, float))}
        return cls(str(data["name"]), scores)


@dataclass
class EvalResult:
    """Scores of a set (or a hold-out clip): samples in order, their means (`psnr`, `ssim`, `ie` ...)."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    frames: int = 0  # frames interpolated and scored
    seconds: float = 0.0  # time spent interpolating and scoring (this run only)

    @property
    def metrics(self) -> list[str]:
        """Metrics every sample has, in METRICS order."""
        if not self.samples:
            return []
        have = set.intersection(*(set(s.scores) for s in self.samples))
        return [m for m in METRICS if m in have] + sorted(have - set(METRICS))

    def mean(self, metric: str) -> float:
        """Mean of a metric over the samples (nan with no samples)."""
        values = [s.scores[metric] for s in self.samples]
        return math.fsum(values) / len(values) if values else math.nan

    @property
    def psnr(self) -> float:
        return self.mean("psnr")

    @property
    def ssim(self) -> float:
        return self.mean("ssim")

    def as_dict(self) -> dict[str, Any]:
        """The JSON document: set name, mean per metric, settings, frame count and samples."""
        means = {m: self.mean(m) for m in self.metrics}
        return {"set": self.name, **means, "frames": self.frames, "settings": self.settings,
                "samples": [s.as_dict() for s in self.samples]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """A result read back from its JSON document."""
        if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
            raise ValueError("not an emavfi evaluate result (expected an object with a 'samples' list)")
        return cls(str(data.get("set", "")), [Sample.from_dict(s) for s in data["samples"]],
                   dict(data.get("settings") or {}), int(data.get("frames", 0)))


def to_json(results: Sequence[EvalResult]) -> str:
    """One result as its document; several (e.g. SNU-FILM levels) as {"sets": [...]} with overall means."""
    if len(results) == 1:
        return json.dumps(results[0].as_dict(), indent=1)
    merged = EvalResult("all", [s for r in results for s in r.samples])
    doc = {m: merged.mean(m) for m in merged.metrics}
    return json.dumps({**doc, "sets": [r.as_dict() for r in results]}, indent=1)


def from_json(text: str) -> list[EvalResult]:
    """The results of a JSON file written by to_json."""
    data = json.loads(text)
    return [EvalResult.from_dict(d) for d in data["sets"]] if isinstance(data, dict) and "sets" in data \
        else [EvalResult.from_dict(data)]


def to_csv(results: Iterable[EvalResult]) -> str:
    """One row per sample: set, name, then every metric (empty where a set does not have it)."""
    results = list(results)
    columns = [m for m in METRICS if any(m in r.metrics for r in results)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["set", "name", *columns])
    for result in results:
        for sample in result.samples:
            writer.writerow([result.name, sample.name, *(_cell(sample.scores.get(m)) for m in columns)])
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def table(results: Iterable[EvalResult]) -> str:
    """A plain-text table: one row per set with its sample count and mean figures."""
    results = list(results)
    columns = [m for m in METRICS if any(m in r.metrics for r in results)]
    width = max([len(r.name) for r in results] + [3])
    lines = [f"{'set':<{width}}  {'samples':>7}" + "".join(f"  {m.upper():>8}" for m in columns)]
    for r in results:
        cells = "".join(f"  {format_metric(m, r.mean(m)) if m in r.metrics else '-':>8}" for m in columns)
        lines.append(f"{r.name:<{width}}  {len(r.samples):>7}{cells}")
    return "\n".join(lines)


def format_metric(metric: str, value: float) -> str:
    """PSNR and IE with 2 decimals, SSIM and LPIPS with 4 (as the paper's tables)."""
    return f"{value:.4f}" if metric in ("ssim", "lpips") else f"{value:.2f}"


def partial_path(json_path: Path) -> Path:
    """Where a run with --json keeps what it has scored so far: NAME.partial.json beside NAME.json."""
    return json_path.with_name(f"{json_path.stem}.partial.json")


def write_text(path: Path, text: str) -> None:
    """Write a report file atomically (never a half-written file)."""
    from ..files import atomic_write

    atomic_write(path, text.encode())
