"""The run folder: its record and lock, checkpoints (safetensors + JSON, never pickle), the loss log.

RUN/
  run.json                       what this run is (settings, clips, variant): --resume must match it
  .emavfi.lock                   held while a run trains here (a second run fails at once)
  checkpoints/step-00000500/     model.safetensors, optimizer.safetensors (AdamW moments + RNG state),
                                 state.json (step, schedule, best validation, optimiser hyper-parameters)
  latest.json                    names the newest complete checkpoint; written last, so a checkpoint
                                 interrupted half-way is never used
  log.csv                        step, lr, loss, val_psnr, val_ssim
  final.safetensors, best.safetensors   weights with the variant in their metadata (load anywhere)
Every file is written with emavfi.files.atomic_write. Older checkpoints are removed only file by file,
by the names written here; anything else in the folder is left alone.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from ..files import atomic_write, check_space, disk_full, no_space, try_lock
from ..weights import canonical_keys, save_safetensors

RECORD, LATEST, LOG, LOCK = "run.json", "latest.json", "log.csv", ".emavfi.lock"
CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "state.json")
LOG_HEADER = "step,lr,loss,val_psnr,val_ssim\n"
FULL_FIX = "free some space, then run the same command with --resume"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (exists, belongs to another run, is locked)."""


@dataclass
class TrainState:
    """What besides weights and optimiser moments a resumed run needs: the next step and the best validation."""

    step: int = 0
    best: dict[str, float] = field(default_factory=dict)  # {"step", "psnr", "ssim"} of best.safetensors

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best}


def open_run(folder: Path, record: dict[str, Any], resume: bool) -> IO[bytes]:
    """Create (or, with resume, re-open) the run folder and lock it; returns the lock handle to keep open."""
    check_run_folder(folder, resume)
    folder.mkdir(parents=True, exist_ok=True)
    handle = try_lock(folder / LOCK)
    if handle is None:
        raise RunFolderError(f"another emavfi run is training in {folder}; wait for it or choose another folder")
    try:
        if resume:
            _check_record(folder, record)
        else:
            atomic_write(folder / RECORD, json.dumps(record, indent=1, sort_keys=True).encode())
    except BaseException:
        handle.close()
        raise
    return handle


def check_run_folder(folder: Path, resume: bool) -> None:
    """Refuse an existing folder (unless resuming) and, when resuming, a folder that is not a run's."""
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder} exists and is not a folder; choose a new run folder")
    if folder.exists() and not resume:
        raise RunFolderError(f"run folder {folder} already exists; add --resume to continue the run in it, or "
                             "choose a new folder (nothing in it is touched)")
    if resume and not (folder / RECORD).is_file():
        raise RunFolderError(f"{folder} is not a fine-tuning run folder (no {RECORD}); --resume needs the folder "
                             "of an earlier `emavfi finetune` run")


def _check_record(folder: Path, record: dict[str, Any]) -> None:
    try:
        before = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        raise RunFolderError(f"{folder / RECORD} is damaged; start a new run in another folder") from None
    now = json.loads(json.dumps(record, sort_keys=True))
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise RunFolderError(f"{folder} is a run with different settings ({', '.join(changed)} differ); resume it "
                             "with the same command, or start a new run in another folder")


def save_weights(state: Mapping[str, torch.Tensor], path: Path, variant: str | None) -> None:
    """Weights as safetensors, the variant in the metadata (an official variant) or unnamed (custom config)."""
    needed = _size(state)
    check_space(path.parent, needed, path.name, FULL_FIX)
    try:
        _write_weights(state, path, variant)
    except Exception as exc:  # noqa: BLE001 - safetensors reports a full disk as its own error type
        if disk_full(exc):
            raise no_space(path.parent, needed, path.name, FULL_FIX) from exc
        raise


def _write_weights(state: Mapping[str, torch.Tensor], path: Path, variant: str | None) -> None:
    if variant is not None:
        save_safetensors(state, path, variant)
        return
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in canonical_keys(state).items()}
    atomic_write(path, writer=lambda tmp: save_file(tensors, str(tmp)))


def _size(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes a safetensors file of these tensors takes, about: the data plus a header line per tensor."""
    return sum(t.numel() * t.element_size() + 160 for t in tensors.values()) + 4096


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    saved = optimizer.state_dict()
    tensors = {f"state.{index}.{name}": value.detach().contiguous().cpu()
               for index, entry in saved["state"].items() for name, value in entry.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors, saved["param_groups"]


def save_checkpoint(folder: Path, model_state: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    state: TrainState, variant: str | None, keep: int) -> Path:
    """Write checkpoints/step-N (all three files), then point latest.json at it; drop older ones beyond `keep`.

    The space is checked first; a disk that fills up anyway leaves no part of step-N and the last one intact."""
    from safetensors.torch import save_file

    where = folder / "checkpoints" / f"step-{state.step:08d}"
    tensors, groups = _optimizer_tensors(optimizer)
    needed = _size(model_state) + _size(tensors)
    check_space(where.parent, needed, "a checkpoint", FULL_FIX)
    try:
        where.mkdir(parents=True, exist_ok=True)
        _write_weights(model_state, where / "model.safetensors", variant)
        atomic_write(where / "optimizer.safetensors", writer=lambda tmp: save_file(tensors, str(tmp)))
        atomic_write(where / "state.json", json.dumps({**state.as_dict(), "param_groups": groups}, indent=1).encode())
        atomic_write(folder / LATEST, json.dumps({"step": state.step, "path": where.relative_to(folder).as_posix()})
                     .encode())
    except Exception as exc:  # noqa: BLE001 - safetensors reports a full disk as its own error type
        if not disk_full(exc):
            raise
        error = no_space(where.parent, needed, "a checkpoint", FULL_FIX)  # what was free when it failed
        if _latest_path(folder) != where:  # never remove the checkpoint latest.json names
            _remove(where)
        raise error from exc
    _prune(folder / "checkpoints", keep, state.step)
    return where


def _latest_path(folder: Path) -> Path | None:
    try:
        return folder / str(json.loads((folder / LATEST).read_text()).get("path", ""))
    except (OSError, ValueError, AttributeError):
        return None


def _remove(where: Path) -> None:
    """Remove a checkpoint folder's files (only the names written here) and the folder if that empties it."""
    for name in CHECKPOINT_FILES:
        (where / name).unlink(missing_ok=True)
    try:
        where.rmdir()
    except OSError:
        pass


def _prune(checkpoints: Path, keep: int, newest: int) -> None:
    ours = sorted(p for p in checkpoints.iterdir() if p.is_dir() and p.name.startswith("step-")
                  and p.name[5:].isdigit() and int(p.name[5:]) <= newest)
    for old in ours[:-keep]:
        _remove(old)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None before the first one."""
    try:
        latest = json.loads((folder / LATEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise RunFolderError(f"{folder / LATEST} is damaged; start a new run in another folder") from None
    where = folder / str(latest.get("path", ""))
    if where.parent != folder / "checkpoints" or not all((where / n).is_file() for n in CHECKPOINT_FILES):
        raise RunFolderError(f"{folder / LATEST} names an incomplete checkpoint {where}; start a new run")
    return where


def checkpoint_before(folder: Path, step: int) -> Path | None:
    """The newest complete checkpoint of a step below `step`, or None."""
    found = [p for p in (folder / "checkpoints").glob("step-*") if p.name[5:].isdigit() and int(p.name[5:]) < step
             and all((p / n).is_file() for n in CHECKPOINT_FILES)] if (folder / "checkpoints").is_dir() else []
    return max(found, key=lambda p: int(p.name[5:]), default=None)


def load_checkpoint(where: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    """Restore weights, optimiser moments and hyper-parameters, and the RNG state; returns the train state."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(where / "model.safetensors")), strict=True)
    info = json.loads((where / "state.json").read_text())
    tensors = load_file(str(where / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.cpu"))
    cuda_rng = tensors.pop("rng.cuda", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng)
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        moments.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": info["param_groups"]})
    return TrainState(step=int(info["step"]), best=dict(info.get("best") or {}))


class LossLog:
    """log.csv, one row per step; on resume, rows from the resumed step on are dropped (they are redone)."""

    def __init__(self, folder: Path, start: int):
        self.path = folder / LOG
        rows = []
        if start and self.path.is_file():
            rows = [r for r in self.path.read_text().splitlines()[1:] if r and int(r.split(",")[0]) < start]
        self.text = LOG_HEADER + "".join(r + "\n" for r in rows)
        atomic_write(self.path, self.text.encode())
        self._handle = open(self.path, "a")

    def write(self, step: int, lr: float, loss: float, val: tuple[float, float] | None = None) -> None:
        """Append one row (full float precision) and flush."""
        psnr, ssim = (repr(val[0]), repr(val[1])) if val else ("", "")
        self._handle.write(f"{step},{lr!r},{loss!r},{psnr},{ssim}\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_log(folder: Path) -> list[dict[str, float | None]]:
    """Rows of a run's log.csv as dicts (empty validation cells are None)."""
    rows = []
    for line in (folder / LOG).read_text().splitlines()[1:]:
        step, lr, loss, psnr, ssim = line.split(",")
        rows.append({"step": int(step), "lr": float(lr), "loss": float(loss),
                     "val_psnr": float(psnr) if psnr else None, "val_ssim": float(ssim) if ssim else None})
    return rows


STOP_FILE = ".stop-request"  # in the run folder: asks every worker (Ray ones too) to stop


class StopSwitch:
    """A request to stop at the next step boundary: a flag in this process, a file in the run folder for Ray
    workers (which may run elsewhere but share the folder)."""

    def __init__(self, folder: Path):
        self.path = folder / STOP_FILE
        self.flag = False

    def request(self) -> None:
        """Ask every worker to save a checkpoint and stop after the step it is in."""
        self.flag = True
        if self.path.parent.is_dir():
            atomic_write(self.path, b"stop\n")

    def requested(self) -> bool:
        return self.flag or self.path.exists()

    def clear(self) -> None:
        self.flag = False
        self.path.unlink(missing_ok=True)
