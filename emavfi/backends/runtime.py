"""RuntimeModel: the network compiled for a runtime, per padded frame size, behind the runner.Backend seam.

Two graphs per size: `extract` (the backbone of one pair, run once per pair) and `synth` (flow, warp and
refinement for one timestep, run once per t), so x4/x8 keep one backbone pass per pair as on the torch path.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..devices import DTYPES, cpu_bf16_problem
from ..errors import EmaVfiError
from ..files import default_models_dir
from ..inference import pad_amounts, padding_divisor
from ..model import EMAVFI
from ..model.network import blend
from .cache import CacheKey, CompiledCache
from .runtimes import ADAPTERS, Session, Stalled

PARTS = ("extract", "synth")
MAX_LOADED_SIZES = 4  # compiled sizes kept loaded per model (each holds the runtime's memory)
# Lanes (several runs in flight at once, one stream each) measured faster up to 480x640 and slower at 1088x1920,
# where memory bandwidth bounds each stream and their buffers doubled the peak (benchmarks/RESULTS.md): larger
# padded frames keep one run at a time on all threads.
LANES_MAX_PIXELS = 480 * 640
# The longest one runtime run (one graph, one pair) may go without a result before the job is stopped: minutes,
# more for larger frames. A run of ours_small_t at 480x640 takes about 1 s on 2 idle cores (benchmarks/RESULTS.md),
# ours_t about 4x that; the limit is over 100x those, so a process starved on a busy machine is not taken for a
# stalled one (5 min at 192x144, 47 min at 2160x3840).
STALL_BASE_SECONDS, STALL_SECONDS_PER_MEGAPIXEL = 300.0, 300.0
# what each runtime computes in besides fp32 (frames always come in and go out as float32)
RUNTIME_PRECISIONS = {"tensorrt": ("fp32", "fp16"), "openvino": ("fp32", "bf16")}


class Lanes(NamedTuple):
    """A padded size's graphs compiled for several runs in flight at once (OpenVINO's streams), and how many."""

    graphs: dict[str, Session]
    count: int


class BackendStalled(EmaVfiError, RuntimeError):
    """A runtime backend gave no result for far longer than a run takes: the job stops instead of waiting."""


def stall_limit(height: int, width: int) -> float:
    """Seconds one runtime run on a padded height x width pair may take before the job is stopped as stalled."""
    return STALL_BASE_SECONDS + STALL_SECONDS_PER_MEGAPIXEL * height * width / 1e6


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, shapes and float32 bytes (the same for a file and the dict read from it)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to(device="cpu", dtype=torch.float32).contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


class RuntimeModel:
    """An EMA-VFI network run by OpenVINO, ONNX Runtime or TensorRT; accepted wherever an EMAVFI is.

    config / device / dtype: as for the torch model (frames go in and come out as float32).
    as_backend(tta, scale): the runner.Backend for the engine. Compiled graphs are cached under `cache`.
    """

    def __init__(self, network: EMAVFI, variant: str, weights_sha256: str, backend: str, device: torch.device,
                 precision: str, cache: CompiledCache):
        self.network = network
        self.config: ModelConfig = network.config
        self.variant, self.weights_sha256, self.backend = variant, weights_sha256, backend
        self.adapter = ADAPTERS[backend]
        self.device, self.dtype, self.precision, self.cache = device, torch.float32, precision, cache
        self._loaded: OrderedDict[tuple, dict[str, Session]] = OrderedDict()
        self._lanes: dict[tuple, Lanes | None] = {}  # per loaded size: the graphs for runs in flight at once
        self.timings: dict[tuple, dict[str, float | bool]] = {}  # per size: seconds to get ready, built or loaded

    def __repr__(self) -> str:
        return f"RuntimeModel({self.variant}, backend={self.backend}, {self.precision}, {self.device})"

    def key(self, height: int, width: int, scale: float) -> CacheKey:
        """The cache key of the graphs for a padded size."""
        return CacheKey(self.variant, self.weights_sha256, height, width, 1, self.precision, float(scale),
                        self.backend, self.adapter.version(), self.adapter.target(self.device))

    def sessions(self, height: int, width: int, scale: float) -> dict[str, Session]:
        """The loaded graphs for a padded size: from memory, else the disk cache, else compiled now."""
        size = (height, width, float(scale))
        if size in self._loaded:
            self._loaded.move_to_end(size)
            return self._loaded[size]
        key = self.key(height, width, scale)
        files = [name for part in PARTS for name in self.adapter.files(part)]
        started = time.perf_counter()
        folder, built = self.cache.get(key, files, lambda tmp: self._build(tmp, height, width, scale))
        try:
            loaded = self._load(folder)
        except Exception:  # noqa: BLE001 - a file that verifies but does not load (other build): rebuild once
            self.cache.invalidate(key)
            folder, built = self.cache.get(key, files, lambda tmp: self._build(tmp, height, width, scale))
            loaded = self._load(folder)
        self.timings[size] = {"seconds": time.perf_counter() - started, "built": built}
        self._loaded[size] = loaded
        while len(self._loaded) > MAX_LOADED_SIZES:
            self._lanes.pop(self._loaded.popitem(last=False)[0], None)
        return loaded

    def lanes(self, height: int, width: int, scale: float) -> Lanes | None:
        """The graphs of a padded size for several independent runs in flight at once: None where the runtime has
        no lanes (ONNX Runtime, TensorRT), the process has one thread, or frames are large."""
        size = (height, width, float(scale))
        if height * width > LANES_MAX_PIXELS:
            return None
        if size not in self._lanes:
            load_lanes = getattr(self.adapter, "load_lanes", None)
            self.sessions(height, width, scale)  # built or loaded, verified, and kept as the size's entry
            found = None
            if callable(load_lanes) and torch.get_num_threads() > 1:
                folder = self.cache.folder(self.key(height, width, scale))
                made = {part: load_lanes(folder, part, self.device, self.precision) for part in PARTS}
                count = min(n for _, n in made.values())
                found = Lanes({part: session for part, (session, _) in made.items()}, count) if count > 1 else None
            self._lanes[size] = found
        return self._lanes[size]

    def _load(self, folder: Path) -> dict[str, Session]:
        return {part: self.adapter.load(folder, part, self.device, self.precision) for part in PARTS}

    def _build(self, out: Path, height: int, width: int, scale: float) -> None:
        from .graphs import ExtractGraph, SynthesisGraph, feature_names
        from .writers import onnx_export

        names = feature_names(scale)
        g = torch.Generator().manual_seed(0)
        img0, img1 = torch.rand(2, 1, 3, height, width, generator=g)
        extract, synth = ExtractGraph(self.network, scale).eval(), SynthesisGraph(self.network, scale).eval()
        with torch.no_grad():
            feats = extract(img0, img1)
        with tempfile.TemporaryDirectory(dir=out, prefix=".onnx-") as tmp:
            onnx_extract, onnx_synth = Path(tmp) / "extract.onnx", Path(tmp) / "synth.onnx"
            onnx_export(extract, (img0, img1), onnx_extract, ["img0", "img1"], names)
            onnx_export(synth, (img0, img1, torch.tensor([0.5]), *feats), onnx_synth,
                        ["img0", "img1", "timestep", *names], ["frame", "flow", "weight0"])
            for part, path in (("extract", onnx_extract), ("synth", onnx_synth)):
                self.adapter.build(path, out, part, self.precision)

    def as_backend(self, tta: bool = False, scale: float = 1.0, stall_seconds: float | None = None) -> RuntimeBackend:
        """The runner.Backend running this model with test-time augmentation and flow scale as given; stall_seconds:
        how long one run may go without a result (default: stall_limit of the frame size)."""
        padding_divisor(scale)  # checks scale
        return RuntimeBackend(self, bool(tta), float(scale), stall_seconds)


class RuntimeBackend:
    """runner.Backend over a RuntimeModel: pads each pair, runs extract once per pair and synth per t, crops.

    Independent runs (the pairs of a call, their timesteps, the rotated TTA pass) go to the runtime's lanes
    in flight at once where it has them; a single run takes the graphs that use every thread. Every run is
    started and waited for from the calling thread.
    """

    def __init__(self, model: RuntimeModel, tta: bool, scale: float, stall_seconds: float | None = None):
        self.model, self.tta, self.scale, self.stall_seconds = model, tta, scale, stall_seconds

    def pairs_in_flight(self, height: int, width: int) -> int:
        """Pairs worth sending in one call for frames of this size (runner.Runner's automatic CPU chunk)."""
        left, right, top, bottom = pad_amounts(height, width, padding_divisor(self.scale))
        lanes = self.model.lanes(height + top + bottom, width + left + right, self.scale)
        return lanes.count if lanes else 1

    def __call__(self, frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor, timesteps: Sequence[float],
                 aux: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """See runner.Backend: frames [F,3,H,W] -> (rgb [T,P,3,H,W], aux [T,P,K,H,W] or None)."""
        from .graphs import feature_names

        height, width = frames.shape[-2:]
        left, right, top, bottom = pad_amounts(height, width, padding_divisor(self.scale))
        work = self.model.device if self.model.device.type == "cuda" else torch.device("cpu")

        def prep(x: torch.Tensor) -> torch.Tensor:
            x = x.to(device=work, dtype=torch.float32)
            return F.pad(x, (left, right, top, bottom), mode="replicate") if left + right + top + bottom else x

        padded, extra = prep(frames), None if aux is None else prep(aux)
        size = (padded.shape[-2], padded.shape[-1], self.scale)
        names = feature_names(self.scale)
        views = [_same, _rot180] if self.tta else [_same]
        pairs = list(zip(first.tolist(), second.tolist()))

        def images(v: int, p: int) -> dict[str, torch.Tensor]:
            (i, j), view = pairs[p], views[v]
            return {"img0": view(padded[i:i + 1]), "img1": view(padded[j:j + 1])}

        def synth_feed(v: int, p: int, k: int) -> dict[str, torch.Tensor]:
            step = torch.tensor([float(timesteps[k])], dtype=torch.float32, device=padded.device)
            return {**images(v, p), "timestep": step, **feats[(v, p)]}

        def finish(v: int, p: int, outputs: list[torch.Tensor]) -> tuple:
            (i, j), view, (frame, flow, weight0) = pairs[p], views[v], outputs
            fused = None if extra is None else blend(view(extra[i:i + 1]), view(extra[j:j + 1]),
                                                     flow.to(padded.device), weight0.to(padded.device))[2]
            return view(frame.to(padded.device)), None if fused is None else view(fused)

        rgb = torch.empty((len(timesteps), len(pairs), 3, height, width), dtype=frames.dtype, device=frames.device)
        fused = None if aux is None else torch.empty((len(timesteps), len(pairs), aux.shape[1], height, width),
                                                     dtype=frames.dtype, device=frames.device)
        lanes = self.model.lanes(*size)
        group = lanes.count if lanes else 1  # pairs held at once: one per lane, else one
        for start in range(0, len(pairs), group):
            members = range(start, min(start + group, len(pairs)))
            jobs = [(v, p) for v in range(len(views)) for p in members]
            extracted = self._run("extract", size, [images(*job) for job in jobs])
            feats = {job: dict(zip(names, out)) for job, out in zip(jobs, extracted)}
            jobs3 = [(v, p, k) for v in range(len(views)) for p in members for k in range(len(timesteps))]
            made = {job: finish(job[0], job[1], out)
                    for job, out in zip(jobs3, self._run("synth", size, [synth_feed(*job) for job in jobs3]))}
            for (p, k) in ((p, k) for p in members for k in range(len(timesteps))):
                runs = [made[(v, p, k)] for v in range(len(views))]
                rgb[k, p] = (sum(r[0] for r in runs) / len(runs))[0, :, top:top + height, left:left + width]
                if fused is not None:
                    fused[k, p] = (sum(r[1] for r in runs) / len(runs))[0, :, top:top + height, left:left + width]
        return rgb, fused

    def _run(self, part: str, size: tuple, feeds: list[dict[str, torch.Tensor]]) -> list[list[torch.Tensor]]:
        """Each feed through graph `part`: whole rounds of lanes in flight at once where there are several feeds and
        lanes, the feeds left over one by one on all threads (a lone run would idle a core). A run with no result
        within the stall limit stops the job with one line (BackendStalled)."""
        limit = self.stall_seconds if self.stall_seconds is not None else stall_limit(size[0], size[1])
        lanes = self.model.lanes(*size) if len(feeds) > 1 else None
        rounds = len(feeds) - len(feeds) % lanes.count if lanes else 0
        try:
            done = lanes.graphs[part](feeds[:rounds], limit) if rounds else []
            return done + self.model.sessions(*size)[part](feeds[rounds:], limit)
        except Stalled as exc:
            raise BackendStalled(
                f"the {self.model.backend} backend gave no result for {exc.seconds:g} s on one {size[1]}x{size[0]} "
                "frame pair (padded) and was stopped: run the job again with --backend torch") from None


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _rot180(x: torch.Tensor) -> torch.Tensor:
    """The 180-degree rotation of x [..., H, W]: its own inverse (test-time augmentation)."""
    return x.flip(-2, -1)


def load_runtime(network: EMAVFI, variant: str, state: Mapping[str, torch.Tensor], backend: str,
                 device: torch.device, dtype: torch.dtype, cache_dir: str | Path | None = None) -> RuntimeModel:
    """A RuntimeModel of `network` (CPU, float32) for `backend` on `device`; compiled graphs cached under
    cache_dir (default $EMAVFI_HOME/compiled). dtype: float16 gives an fp16 TensorRT engine, bfloat16 OpenVINO's
    bf16 inference; otherwise float32. The caller checks first that `backend` can run here (backends.load_runtime)."""
    if backend != "tensorrt" and not (backend == "onnxruntime" and device.type == "cuda"):
        device = torch.device("cpu")
    allowed = RUNTIME_PRECISIONS.get(backend, ("fp32",))
    precision = next((name for name in allowed if DTYPES[name] == dtype), None)
    if precision is None:
        raise ValueError(f"the {backend} backend runs {' or '.join(allowed)} here; got "
                         f"{str(dtype).removeprefix('torch.')} (use precision {', '.join(allowed)} or auto)")
    if precision == "bf16" and (reason := cpu_bf16_problem()):  # OpenVINO would compute in f32 without a word
        raise ValueError(reason)
    root = Path(cache_dir) if cache_dir is not None else default_models_dir() / "compiled"
    return RuntimeModel(network.float().cpu().eval(), variant, weights_digest(state), backend, device, precision,
                        CompiledCache(root))
