"""One `evaluate` command from parsed arguments: settings checked, samples listed, model loaded, sets scored,
progress shown, partial results saved for a rerun, the table and files written."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import RunOptions, Settings, SettingsError
from . import datasets
from .datasets import subsets
from .protocols import Protocol, protocol
from .results import EvalResult, table, to_csv, to_json, write_text
from .run import PartialResults, evaluate_items


@dataclass
class Session:
    """What one evaluate command runs: the settings, the work per set, and where results go."""

    args: argparse.Namespace
    settings: Settings
    work: list[tuple[Protocol, list[datasets.Item]]] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Session:
        """Checked settings and the listed samples of every set asked for (nothing loaded yet)."""
        run = RunOptions(scale=1.0 if args.scale is None else args.scale, chunk=args.chunk)
        settings = Settings(run=run, variant=args.variant, weights=args.weights, offline=args.offline,
                            device=args.device, precision=args.precision)
        session = cls(args, settings)
        if args.frames is None:
            bgr = None if args.channel_order is None else args.channel_order == "bgr"
            for subset in subsets(args.set, args.subset):
                chosen = protocol(args.set, subset).with_options(tta=args.tta, scale=args.scale, bgr=bgr)
                session.work.append((chosen, _listed(args, subset)))
        elif not args.frames.exists():
            raise SettingsError(f"--frames: not found: {args.frames}")
        return session

    @property
    def variant(self) -> str:
        return self.settings.model_variant

    def run_settings(self) -> dict[str, Any]:
        """What decides the scores (a partial file from other settings is not continued)."""
        a = self.args
        weights = None if a.weights is None else str(Path(a.weights).resolve())
        source = a.frames if a.frames is not None else a.root
        common = {"variant": self.variant, "weights": weights, "precision": a.precision, "lpips": a.lpips,
                  "input": str(Path(source).resolve()), "backend": a.backend}
        if a.frames is not None:
            return {**common, "hold_out": a.hold_out, "tta": bool(a.tta), "scale": a.scale or 1.0,
                    "channel_order": a.channel_order or "rgb"}
        return {**common, "sets": {p.name: p.describe(self.variant) for p, _ in self.work}}

    def load_model(self) -> Any:
        """The model on its device, in the chosen precision (weights: --weights, local, or the Hub)."""
        from ..loading import load_model_for
        from ..progress import download_progress

        return load_model_for(self.settings, progress=download_progress())

    def load_state(self) -> tuple[dict[str, Any], Any]:
        """(state dict, variant) of the weights, read once on the driver for Ray workers."""
        from ..loading import weights_path
        from ..progress import download_progress
        from ..weights import read_weights

        return read_weights(weights_path(self.settings, download_progress()), self.variant)

    def scorer(self, extra: Any) -> Callable[..., EvalResult]:
        """score(chosen, items, done, on_sample, progress): in this process, or on Ray with --ray."""
        args = self.args
        if args.ray is None:
            model = self.load_model()
            return lambda chosen, items, **kw: evaluate_items(model, items, chosen, self.variant, chunk=args.chunk,
                                                              extra=extra, **kw)
        from .ray_eval import evaluate_on_ray

        state, spec = self.load_state()
        return lambda chosen, items, **kw: evaluate_on_ray(
            state, spec, items, chosen, self.variant, address=None if args.ray == "local" else args.ray,
            workers=args.ray_workers, device=args.device, precision=args.precision, chunk=args.chunk, **kw)

    def run(self) -> list[EvalResult]:
        """Score every set (or the hold-out clip); results are saved as they come when --json is given."""
        from ..progress import ProgressLine

        extra = _extra_scorer(self.args)
        partial = PartialResults(self.args.json, self.run_settings()) if self.args.json else None
        done = partial.load() if partial else {}
        if self.args.frames is not None:
            model = self.load_model()
        else:
            score = self.scorer(extra)
        progress = ProgressLine()
        results: list[EvalResult] = []
        try:
            if self.args.frames is not None:
                from .clip import evaluate_clip

                results.append(evaluate_clip(model, self.args, done, partial, progress.update, extra))
            for chosen, items in self.work:
                self._note(chosen)
                sys.stderr.write(f"{chosen.name}: {len(items)} samples, "
                                 f"{_describe(chosen.describe(self.variant))}\n")
                started = time.monotonic()
                results.append(score(chosen, items, done=done.get(chosen.name, ()),
                                     on_sample=partial.update if partial else None, progress=progress.update))
                results[-1].seconds = time.monotonic() - started
                if partial:
                    partial.update(results[-1], force=True)
        finally:
            progress.close()
            if partial:
                partial.save()
        self.write(results, partial)
        return results

    def _note(self, chosen: Protocol) -> None:
        from ..config import get_config

        if chosen.name.startswith("x4k") and not get_config(self.variant).arbitrary_t:
            sys.stderr.write(f"note: the official XTest script evaluates `_t` models; {self.variant} reaches "
                             "t = k/8 by bisection at t = 0.5\n")

    def write(self, results: list[EvalResult], partial: PartialResults | None) -> None:
        """The --json and --csv files (atomically); the partial file goes once the JSON is complete."""
        common = {k: v for k, v in self.run_settings().items() if k != "sets"}
        for result in results:
            result.settings = {**common, **result.settings}
        if self.args.json:
            write_text(self.args.json, to_json(results) + "\n")
        if self.args.csv:
            write_text(self.args.csv, to_csv(results))
        if partial:
            partial.finish()

    def report(self, results: list[EvalResult]) -> str:
        """The results table, with frames per second of this run."""
        frames = sum(r.frames for r in results)
        seconds = sum(r.seconds for r in results)
        rate = f"; {frames} frames in {seconds:.1f} s ({frames / seconds:.2f} frames/s)" if frames and seconds else ""
        return f"{table(results)}\n({self.variant}{rate})"


def _listed(args: argparse.Namespace, subset: str | None) -> list[datasets.Item]:
    """The first --limit samples of a set, each checked for missing frames now, before the model loads."""
    try:
        items = datasets.items(args.set, args.root, subset)[:args.limit]
        for item in items:
            item.check()
    except datasets.LayoutError as exc:
        raise SettingsError(str(exc)) from None
    return items


def _describe(choices: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in choices.items())


def _extra_scorer(args: argparse.Namespace) -> Any:
    """None, or with --lpips the LPIPS scorer (checked before the model loads; weights never downloaded)."""
    if not args.lpips:
        return None
    from ..devices import run_device
    from .perceptual import lpips_scorer

    return lpips_scorer(run_device(args.device))

