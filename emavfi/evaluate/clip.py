"""`evaluate --frames PATH --hold-out K`: drop-frame scoring of any clip or folder, streamed window by window.

Frames are read with emavfi.media (the CLI's reader: any folder of EXR/DPX/TIFF/PNG/JPEG or a video, in the
working encoding), K + 1 at a time: each window is two kept frames and the K - 1 held out between them,
scored by holdout.score_holdout. Samples are named by file name (folders) or frame index (videos).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from ..settings import SettingsError
from .holdout import kept_indices, score_holdout
from .results import EvalResult, Sample


def _names(source: Any, count: int) -> list[str]:
    paths = getattr(source, "paths", None)
    return [p.name for p in paths] if paths is not None else [str(i) for i in range(count)]


def evaluate_clip(model: Any, args: argparse.Namespace, done: dict[str, list[Sample]], partial: Any,
                  progress: Callable[[int, int], None], extra: Any = None) -> EvalResult:
    """Scores of the held-out frames of args.frames (first args.limit kept pairs when given)."""
    from .. import media

    source = media.open_source(args.frames)
    count = source.count()
    try:
        kept = kept_indices(count, args.hold_out)
    except ValueError as exc:
        raise SettingsError(f"{args.frames}: {exc}") from None
    hold = args.hold_out
    windows = min(len(kept) - 1, args.limit or len(kept))
    names = _names(source, count)
    result = EvalResult(args.frames.name, settings={"hold_out": hold})
    known = {s.name: s for s in done.get(result.name, ())}
    options = {"tta": bool(args.tta), "scale": args.scale or 1.0, "chunk": args.chunk,
               "bgr": args.channel_order == "bgr", "extra": extra}
    total = windows * (hold - 1)
    window: list[torch.Tensor] = []
    for index, frame in enumerate(source.frames()):
        window.append(frame[:3])
        if len(window) < hold + 1:
            continue
        start = index - hold
        wanted = names[start + 1:index]
        if all(name in known for name in wanted):
            result.samples.extend(known[name] for name in wanted)
        else:
            part = score_holdout(model, torch.stack(window), hold, names=names[start:index + 1], **options)
            result.samples.extend(part.samples)
            result.frames += part.frames
            result.seconds += part.seconds
            if partial is not None:
                partial.update(result)
        progress(len(result.samples), total)
        window = [window[-1]]
        if len(result.samples) >= total:
            break
    return result
