"""Load EMA-VFI Model (`EMAVFI_LoadModel`): weights from the models folder or the Hub, loaded once and reused."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from ..emavfi import backends, hub, load_model, local_weights
from ..emavfi.config import DEFAULT_VARIANT, VARIANTS
from ..emavfi.devices import as_device, mps_available, run_dtype
from ..emavfi.errors import SettingsError, one_line
from ..emavfi.settings import PRECISIONS
from . import host, weights_folder
from .model import EmaVfiModel
from .spec import CATEGORY, MODEL, io
from .state import PackNode, PackState

PRECISION_CHOICES = ("auto", *PRECISIONS)
DOWNLOAD_EVENT = "emavfi.download"


def device_choices() -> list[str]:
    """Values of the loader's device input: auto, cpu, then each CUDA device and MPS where present."""
    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if mps_available():
        choices.append("mps")
    return choices


def node_device(choice: str) -> torch.device:
    """The loader's device: "auto" = ComfyUI's inference device (the CPU with --cpu); otherwise the named device."""
    if choice == "auto":
        return torch.device(host.model_management().get_torch_device())
    try:
        return as_device(choice)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{exc} (the choices here: {', '.join(device_choices())})") from None


def node_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The loader's dtype. auto: fp16 where ComfyUI considers it safe and fast on `device` (CUDA, MPS), else fp32
    (always on CPU); bf16 on a CPU without native bf16 is refused as the CLI refuses it (emavfi.devices.run_dtype)."""
    if precision == "auto":
        if device.type != "cpu" and host.model_management().should_use_fp16(device, prioritize_performance=True):
            return torch.float16
        return torch.float32
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"bf16 is not supported on {torch.cuda.get_device_name(device)}; choose fp16, fp32 or auto")
    try:
        return run_dtype(precision, device)  # the CLI's rule for bf16 on a CPU without native bf16, and its line
    except SettingsError as exc:
        raise ValueError(str(exc).replace("--precision", "precision")) from None


def node_backend(choice: str, device: torch.device) -> tuple[str, torch.device]:
    """(backend, device it runs on): auto -> the fastest installed for `device`; the CPU runtimes run on the CPU."""
    reason = backends.problem(choice, device.type if choice == "tensorrt" else "auto")
    if reason:
        raise ValueError(reason.replace("--backend", "backend").replace("--device", "device"))
    backend = backends.resolve(choice, device.type)
    return backend, (torch.device("cpu") if backend in backends.CPU_RUNTIMES else device)


def parse_repo(text: str) -> hub.WeightsSource | None:
    """"owner/name" or "owner/name@revision" -> the Hub source of `model.safetensors` there; "" -> None."""
    text = (text or "").strip()
    if not text:
        return None
    repo_id, _, revision = text.partition("@")
    try:
        return hub.WeightsSource(repo_id.strip(), revision=revision.strip() or "main")
    except ValueError as exc:
        raise ValueError(f"repo override {text!r} is not 'owner/name' or 'owner/name@revision': {exc}") from None


def hub_cache_dir() -> str:
    """Downloads live in a hidden Hub cache inside the first emavfi models folder (not listed as a local file)."""
    return os.path.join(weights_folder.download_dir(), ".hub")


def weights_status(variant: str, repo: str = "", downloads: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """State of a variant's weights for the web extension: local / cached / missing, or a running download (one
    of `downloads`, PackState.downloads)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    running = (downloads or {}).get(variant)
    if running is not None:
        return dict(running)
    source = parse_repo(repo)
    status = local_weights.weights_status(variant, source=source, cache_dir=hub_cache_dir(),
                                          models_dirs=() if source else weights_folder.folders())
    return {"variant": variant, **status}


class _DownloadReporter:
    """Relays download bytes to a ComfyUI ProgressBar and, a few times a second, to the web extension."""

    def __init__(self, variant: str, repo: str, node_id: str | None, downloads: dict[str, dict[str, Any]]):
        self.variant, self.repo, self.node_id, self.downloads = variant, repo, node_id, downloads
        self.bar = host.progress_bar(100, node_id)
        self.last_sent = 0.0
        self.percent = -1

    def __call__(self, done: int, total: int) -> None:
        status = {"variant": self.variant, "state": "downloading", "downloaded": done, "total": total,
                  "node": self.node_id}
        self.downloads[self.variant] = status
        percent = int(100 * done / total) if total else 0
        now = time.monotonic()
        if percent != self.percent or now - self.last_sent > 0.5:
            self.percent = percent
            self.bar.update_absolute(percent, 100)  # also a Cancel point: ComfyUI's hook raises when interrupted
        if now - self.last_sent > 0.2 or (total and done >= total):
            self.last_sent = now
            host.send_event(DOWNLOAD_EVENT, status)

    def finish(self, error: BaseException | None = None) -> None:
        """Tell the web extension how it ended: the weights' state now (local / cached), or the error."""
        self.downloads.pop(self.variant, None)
        if error is None:
            status = weights_status(self.variant, self.repo, self.downloads)
        else:
            message = one_line(error, first=True)
            status = {"variant": self.variant, "state": "error", "message": message}
        host.send_event(DOWNLOAD_EVENT, {**status, "node": self.node_id})


def offline_remedy(variant: str, repo: str = "") -> str:
    """How a ComfyUI user does without the Hub, for offline and network errors."""
    folder = weights_folder.download_dir()
    if repo.strip():
        return f"put the file into {folder} (models/frame_interpolation/emavfi) and choose it as the loader's weights"
    return (f"put {variant}.safetensors into {folder} (models/frame_interpolation/emavfi), where the loader "
            "finds it without the Hub")


def resolve_weights_path(variant: str, weights: str, repo: str, node_id: str | None,
                         downloads: dict[str, dict[str, Any]]) -> Path:
    """The verified .safetensors file for the loader's inputs, downloading it when needed (reported in `downloads`)."""
    if weights and weights != weights_folder.DOWNLOAD_CHOICE:
        return local_weights.resolve_weights(variant, weights=weights, models_dirs=weights_folder.folders())
    source = parse_repo(repo)
    reporter = _DownloadReporter(variant, repo, node_id, downloads)
    try:
        # An explicit repo means "these weights": a local <variant>.safetensors must not take precedence.
        path = local_weights.resolve_weights(
            variant, source=source, models_dirs=() if source else weights_folder.folders(),
            cache_dir=hub_cache_dir(), progress=reporter, remedy=offline_remedy(variant, repo))
    except BaseException as exc:  # including Cancel: the widget must not stay at "downloading"
        reporter.finish(exc)
        raise
    reporter.finish()
    return path


def load(state: PackState, variant: str, precision: str, device: str, weights: str, repo: str, backend: str,
         node_id: str | None) -> tuple[EmaVfiModel, dict[str, Any]]:
    """The model for the loader's inputs, loaded once per file, variant, dtype, device and backend while anything
    holds it (state.models), and the line the web extension shows."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    load_device = node_device(device)
    backend, load_device = node_backend(backend, load_device)
    dtype = torch.float32 if backend in backends.CPU_RUNTIMES else node_dtype(precision, load_device)
    path = resolve_weights_path(variant, weights, repo, node_id, state.downloads)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, variant, dtype, str(load_device), backend)
    with state.load_lock:
        model = state.models.get(key)
        if model is None:
            model = _load_new(path, variant, dtype, load_device, backend)
            state.models[key] = model
    info = {"variant": variant, "dtype": str(dtype).removeprefix("torch."), "device": str(load_device),
            "file": path.name, "state": "loaded", "backend": backend}
    return model, info


def _load_new(path: Path, variant: str, dtype: torch.dtype, load_device: torch.device, backend: str) -> EmaVfiModel:
    """Load the weights: a compiled runtime on its device, or a torch network handed to ComfyUI's model management."""
    if backend != "torch":
        host.logger.info("loading EMA-VFI %s for %s on %s from %s", variant, backend, load_device, path)
        network = load_model(path, variant=variant, device=load_device, dtype=dtype, backend=backend,
                             cache_dir=os.path.join(weights_folder.download_dir(), ".compiled"))
        return EmaVfiModel(network, variant, dtype, load_device, load_device, str(path))
    host.logger.info("loading EMA-VFI %s (%s) from %s for %s", variant, dtype, path, load_device)
    network = load_model(path, variant=variant, device="cpu", dtype=dtype)
    mm = host.model_management()
    offload = (torch.device(mm.unet_offload_device()) if load_device == torch.device(mm.get_torch_device())
               else torch.device("cpu"))
    return EmaVfiModel.create(network, variant, dtype, load_device, offload, str(path))


class LoadModelNode(PackNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMAVFI_LoadModel", display_name="Load EMA-VFI Model", category=CATEGORY,
            description=("Loads EMA-VFI frame-interpolation weights (downloaded on first use into "
                         "models/frame_interpolation/emavfi) for the EMA-VFI Interpolate and Retime nodes."),
            inputs=[
                io.Combo.Input("variant", options=list(VARIANTS), default=DEFAULT_VARIANT, tooltip="Model size and "
                               "training: ours_small_t (fast, any timestep), ours_t (larger, better on big motion), "
                               "ours / ours_small (trained for t = 0.5 only: use recursive mode)."),
                io.Combo.Input("precision", options=list(PRECISION_CHOICES), default="auto", tooltip="Weights and "
                               "activations precision. auto: fp16 on GPUs that run it well, fp32 otherwise and "
                               "always on the CPU."),
                io.Combo.Input("device", options=device_choices(), default="auto", tooltip="Where to run: auto "
                               "follows ComfyUI (its GPU, or the CPU with --cpu)."),
                io.Combo.Input("weights", options=weights_folder.choices(), default=weights_folder.DOWNLOAD_CHOICE,
                               optional=True, tooltip="(download): the variant's official weights from the Hugging "
                               "Face Hub, cached in models/frame_interpolation/emavfi. Or a .safetensors file from "
                               "that folder."),
                io.String.Input("repo", default="", placeholder="owner/name[@revision]", optional=True,
                                tooltip="Optional Hugging Face repo to download from instead of the default, as "
                                "owner/name or owner/name@revision (file model.safetensors). Used with weights = "
                                "(download)."),
                io.Combo.Input("backend", options=list(backends.BACKENDS), default="torch", optional=True,
                               tooltip="What runs the network. torch (default): PyTorch. openvino / onnxruntime: "
                               "compiled for the CPU (openvino is faster than torch there; onnxruntime is not), "
                               "tensorrt: compiled for NVIDIA GPUs; each compiles once per frame size (cached in "
                               "models/frame_interpolation/emavfi/.compiled) and needs requirements-runtimes.txt. "
                               "auto: openvino on the CPU, tensorrt on CUDA, where installed; else torch."),
            ],
            outputs=[MODEL.Output(display_name="model",
                                  tooltip="The loaded EMA-VFI model, for EMA-VFI Interpolate / Retime.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, variant: str, precision: str = "auto", device: str = "auto",
                weights: str = weights_folder.DOWNLOAD_CHOICE, repo: str = "", backend: str = "torch") -> io.NodeOutput:
        model, info = load(cls.pack(), variant, precision, device, weights, repo, backend, cls.hidden.unique_id)
        return io.NodeOutput(model, ui={"emavfi": [info]})
