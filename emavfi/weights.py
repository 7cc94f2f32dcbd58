"""Weights: safetensors loading, official key mapping, variant detection, and .pkl conversion."""
from __future__ import annotations

import functools
import logging
import os
import pickle
from pathlib import Path
from typing import Mapping, Union

import torch

from .config import DEFAULT_VARIANT, VARIANTS, ModelConfig, get_config
from .devices import DeviceLike, DTypeLike, as_device, as_dtype
from .errors import WeightsError, one_line
from .files import atomic_write, looks_like_pickle, sha256_of
from .model import EMAVFI
from .optimize import optimize

log = logging.getLogger("emavfi")

StateDict = Mapping[str, torch.Tensor]
VariantOrConfig = Union[str, ModelConfig]

# sha256 of the authors' released .pkl files (see README, "Official checkpoints")
OFFICIAL_PKL_SHA256 = {
    "f9085bb32d8b2eaa70eb1df08cc25bc7e973c50a74d74fb593ebe0d5e100a11f": "ours",
    "c09e82d193e303d7b91f1e36bf535886b820cb56105574355211d60a6b557a99": "ours_t",
    "ef0e455a7fe75c24d415bbcd83c29a9c0134ba853942bde0cd4dc4ed01e3f98f": "ours_small",
    "ad845671f7250d408937718aca19eaf87aa1ca79215070f7641eea332b703233": "ours_small_t",
}
_PREFIXES = ("module.", "model.")
_RUNTIME_BUFFERS = (".attn_mask", ".HW")
METADATA_VARIANT = "emavfi.variant"


def _config(variant: VariantOrConfig) -> ModelConfig:
    return variant if isinstance(variant, ModelConfig) else get_config(variant)


@functools.lru_cache(maxsize=8)
def _shapes_for(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = EMAVFI(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def canonical_keys(state: Mapping[str, object]) -> dict[str, object]:
    """Strip `module.`/`model.` prefixes and drop the attention-mask buffers the reference recomputes."""
    out = {}
    for key, value in state.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        if not key.endswith(_RUNTIME_BUFFERS):
            out[key] = value
    return out


def _mismatch(shapes: Mapping[str, tuple[int, ...]], cfg: ModelConfig) -> tuple[list[str], list[str], list[str]]:
    want = _shapes_for(cfg)
    missing = [k for k in want if k not in shapes]
    unexpected = [k for k in shapes if k not in want]
    wrong = [f"{k} {list(shapes[k])} (expected {list(want[k])})"
             for k in want if k in shapes and tuple(shapes[k]) != want[k]]
    return missing, unexpected, wrong


def _architectures() -> dict[str, ModelConfig]:
    """One representative variant name per distinct architecture, `_t` names first."""
    found: dict[tuple, str] = {}
    for name in sorted(VARIANTS, key=lambda v: not v.endswith("_t")):
        found.setdefault(get_config(name).architecture, name)
    return {name: get_config(name) for name in found.values()}


def match_variant(shapes: Mapping[str, tuple[int, ...]], variant: VariantOrConfig | None = None,
                  hint: str | None = None) -> str:
    """Name of the variant whose keys and shapes `shapes` (canonical keys) match exactly, else WeightsError.

    Shapes cannot tell `ours` from `ours_t`: `variant`, then `hint` (file metadata) decide; without
    either the `_t` twin is assumed, since it accepts any timestep.
    """
    if variant is not None:
        cfg = _config(variant)
        missing, unexpected, wrong = _mismatch(shapes, cfg)
        if not (missing or unexpected or wrong):
            return variant if isinstance(variant, str) else (hint or "custom")
        raise WeightsError(_mismatch_message(shapes, variant if isinstance(variant, str) else "the given config",
                                             missing, unexpected, wrong))
    for name, cfg in _architectures().items():
        if not any(_mismatch(shapes, cfg)):
            if hint in VARIANTS and get_config(hint).architecture == cfg.architecture:
                return hint
            return name
    closest = _closest(shapes)
    raise WeightsError(_mismatch_message(shapes, closest, *_mismatch(shapes, get_config(closest)), detected=False))


def _closest(shapes: Mapping[str, tuple[int, ...]]) -> str:
    def score(name: str) -> int:
        want = _shapes_for(get_config(name))
        return sum(1 for k, s in shapes.items() if want.get(k) == tuple(s))
    return max(_architectures(), key=score)


def _mismatch_message(shapes, name: str, missing: list[str], unexpected: list[str], wrong: list[str],
                      detected: bool = True) -> str:
    if not shapes:
        return "the weights contain no tensors; is this an EMA-VFI checkpoint?"
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches (first: {'; '.join(wrong[:2])})")
    head = (f"weights do not match variant {name!r}" if detected
            else f"weights match no EMA-VFI variant; closest is {name!r}")
    return f"{head}: {', '.join(parts)}. Use the file made for this variant or pick the variant it was made for."


def _open_safetensors(path: Path):
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{path} is not a valid safetensors file ({exc}); it may be truncated or corrupt: "
                           "delete it and download or convert it again") from exc


def inspect_safetensors(path: str | os.PathLike, variant: VariantOrConfig | None = None) -> str:
    """Check a .safetensors header against the variant's keys and shapes without loading tensors."""
    path = Path(path)
    with _open_safetensors(path) as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        hint = (f.metadata() or {}).get(METADATA_VARIANT)
    return match_variant(canonical_keys(shapes), variant, hint)


def refuse_pickle(path: Path) -> None:
    """WeightsError naming the convert command if `path` is a pickle (by extension or content): pickles run code."""
    if looks_like_pickle(path):
        target = path.with_suffix(".safetensors")
        if target == path:
            target = path.with_name(f"{path.stem}-converted.safetensors")
        raise WeightsError(f"{path} is a pickle checkpoint; pickles can run code, so they are not loaded directly. "
                           f"Convert it once: python -m emavfi convert {path} -o {target}")


def check_weights_file(path: str | os.PathLike, variant: VariantOrConfig | None = None) -> str:
    """Refuse pickles, then check a .safetensors header against `variant`; returns the variant name.

    Every error names the file.
    """
    path = Path(path)
    refuse_pickle(path)
    try:
        return inspect_safetensors(path, variant)
    except WeightsError as exc:
        if str(path) in str(exc):
            raise
        raise WeightsError(f"{path}: {exc}") from exc


def read_weights(path: str | os.PathLike,
                 variant: VariantOrConfig | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Load a .safetensors file and return (canonical state dict, variant name), verifying the header first."""
    from safetensors.torch import load_file

    path = Path(path)
    name = check_weights_file(path, variant)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"could not read tensors from {path} ({exc}); the file is corrupt: "
                           "download or convert it again") from exc
    return canonical_keys(state), name


def build_model(variant: VariantOrConfig = DEFAULT_VARIANT) -> EMAVFI:
    """A randomly initialised EMA-VFI for a variant name or a ModelConfig."""
    cfg = _config(variant)
    return EMAVFI(cfg, variant if isinstance(variant, str) else None)


def load_model(weights: str | os.PathLike | StateDict, variant: VariantOrConfig | None = None,
               device: DeviceLike = "cpu", dtype: DTypeLike = torch.float32, channels_last: bool = True) -> EMAVFI:
    """The PyTorch network for `weights` (a .safetensors path or a state dict) in eval mode on device/dtype.

    Only loads: a runtime backend, and settings' devices and weights files, are emavfi.loading's.
    dtype: see `devices.as_dtype`; device: see `devices.as_device`; both are checked before the weights are read.
    channels_last stores convolution weights NHWC, which is faster on CPU and GPU (see `emavfi.optimize`).
    """
    dtype, device = as_dtype(dtype), as_device(device)
    if isinstance(weights, Mapping):
        state = canonical_keys(weights)
        bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise WeightsError(f"state dict entry {bad[0]!r} is not a tensor")
        name = match_variant({k: tuple(v.shape) for k, v in state.items()}, variant)
    else:
        state, name = read_weights(weights, variant)
    cfg = variant if isinstance(variant, ModelConfig) else get_config(name)
    with torch.device("meta"):
        model = EMAVFI(cfg, name if name in VARIANTS else None)
    cast = {k: v.detach().to(device=device, dtype=dtype) for k, v in state.items()}
    for tensor in cast.values():
        if not torch.isfinite(tensor).all():
            raise WeightsError("the weights contain NaN or Inf values; the file is corrupt")
    model.load_state_dict(cast, strict=True, assign=True)
    return optimize(model.eval(), channels_last=channels_last)


def save_safetensors(state: StateDict, path: str | os.PathLike, variant: str) -> None:
    """Write canonical weights atomically (mode from the umask), recording the variant in the file's metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in canonical_keys(state).items()}
    match_variant({k: tuple(v.shape) for k, v in tensors.items()}, variant)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, writer=lambda tmp: save_file(tensors, str(tmp), metadata={METADATA_VARIANT: variant}))


def convert_pkl(src: str | os.PathLike, dst: str | os.PathLike, variant: str | None = None) -> str:
    """Convert an official .pkl checkpoint to .safetensors without executing pickled code; returns the variant."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise WeightsError(f"checkpoint not found: {src}")
    official = OFFICIAL_PKL_SHA256.get(sha256_of(src))
    if official and variant and variant != official:
        raise WeightsError(f"{src.name} is the official {official!r} checkpoint, not {variant!r}")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text advises retrying with weights_only=False, which would run the code the file carries
        raise WeightsError(f"refusing {src.name}: it holds pickled objects other than tensors (possibly code), "
                           "so it was not converted") from None
    except Exception as exc:
        raise WeightsError(f"could not read {src.name} as a PyTorch checkpoint ({_checkpoint_error(exc)}); "
                           "is it truncated?") from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{src.name} does not hold a state dict of tensors")
    state = canonical_keys(state)
    name = match_variant({k: tuple(v.shape) for k, v in state.items()}, variant or official)
    if not official:
        log.warning("%s is not one of the official EMA-VFI files (unknown sha256); converted as %r", src.name, name)
    save_safetensors(state, dst, name)
    return name


def _checkpoint_error(exc: BaseException) -> str:
    """An error's first line, never torch's advice to load untrusted pickles with weights_only=False."""
    return type(exc).__name__ if "weights_only" in str(exc) else one_line(exc, first=True, limit=200)
