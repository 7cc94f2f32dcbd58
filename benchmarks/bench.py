"""Speed and memory benchmark of `emavfi` against naive re-creations of the official inference loops.

Run from the repository root (see benchmarks/README.md):

    PYTHONPATH=. .venv/bin/python benchmarks/bench.py --quick          # smoke test, a few seconds
    PYTHONPATH=. .venv/bin/python benchmarks/bench.py --write          # full run, writes benchmarks/RESULTS.md

For every (variant, size) a fresh worker process (this file with `--worker`) builds the model, measures the
baseline RSS, and times, interleaved round-robin (A B C A B C ...):

* `inference/t`  (naive x2 and x8): what the official `Trainer.Model.inference` does per timestep:
  `extract` + `estimate_flow` + `synthesize` for one pair (B=1, channels-first, no sharing, no chunking).
* `multi_inf`    (naive x8): the official `multi_inference`: backbone once per pair, then heads + refine
  per timestep, one pair at a time (B=1).
* `ours`         (x2 and x8): the library's public API (`emavfi.interpolate_sequence`) over a clip of
  `--frames` frames.

The model, its official-style initialisation and the padding all come from the library itself
(`emavfi.build_model`, `emavfi.inference.pad_amounts`); only the official loops are re-created here.

All three are reported in ms per OUTPUT frame. The naive paths do the same work for every pair (nothing is
shared between pairs), so each repeat runs one pair (rotating through the clip's pairs, so the output check
covers all of them) and its time is exactly the per-frame cost; `ours` always gets the whole clip, which is
where frame-feature sharing and batching can pay off. Outputs of the naive paths are compared with `ours`
(max abs difference; float32 must agree to < 1e-4).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
JSON_TAG = "BENCHJSON "
X8_TIMESTEPS = [k / 8 for k in range(1, 8)]
INITS = ("official init", "PyTorch default init")  # denormal check: emavfi.build_model's init, then torch's
DIFF_LIMIT = 1e-4
CPU_SIZES = ["256x256", "480x640", "720x1280"]
CUDA_EXTRA_SIZES = ["1080x1920", "2160x3840"]

# Official code, spec section 15 (torch 2.13 CPU, 2 threads, fp32, B=1; pass A / pass B).
OFFICIAL = {
    # architecture twin -> size -> (inference s per call, pass B, peak RSS MiB pass A, pass B,
    #                               multi_inference 3 t s, 3x inference s)
    "ours_small": {"256x256": (0.14, 0.15, 534, 538, 0.34, 0.42),
                   "480x640": (0.71, 0.85, 988, 1001, 1.90, 2.13)},
    "ours": {"256x256": (0.51, 0.53, 888, 851, 1.15, 1.53),
             "480x640": (2.95, 2.90, 1656, 1674, 6.41, 8.85)},
}

# One-time denormal check (`--denormal-check`), documented in README.md / RESULTS.md.
DENORMAL_NOTE = (
    "Weights use the official initialisation (Linear trunc-normal std 0.02, Conv2d N(0, sqrt(2/fan_out)) in the "
    "backbone and U-Net, LayerNorm 1/0, heads PyTorch default). No weight is subnormal, but the shifted-window "
    "attention mask value -100 (as in the official model) makes `softmax` emit subnormal float32 values "
    "(exp(-100) is about 4e-44), and a few matmul outputs inherit them. This comes from the architecture, not from "
    "the random weights: the counts are the same with PyTorch's default init. All timings are taken with "
    "`torch.set_flush_denormal` OFF, as users run the library. The check below times one naive x2 call with "
    "flushing off and on, interleaved."
)


# ----------------------------------------------------------------------------------------------- helpers

def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 32 or int(m.group(2)) < 32:
        raise argparse.ArgumentTypeError(f"size must be HxW with both sides >= 32, e.g. 480x640; got {text!r}")
    return int(m.group(1)), int(m.group(2))


def arch_twin(variant: str) -> str:
    return variant[:-2] if variant.endswith("_t") else variant


def read_loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def proc_status_mib(field: str) -> float | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def ru_maxrss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


_LIBC = None


def reset_peak_rss() -> bool:
    """Give freed heap back to the OS and restart the kernel's peak-RSS counter (VmHWM). False if unsupported."""
    global _LIBC
    gc.collect()
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def calibrate(threads: int, device: str) -> str:
    """Raw throughput of this machine right now (GFLOP/s, median of 5): makes figures from other occasions
    or machines comparable. fp32 2048x2048 matmul and a 64->64 3x3 conv on 256x256."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2048, 2048, generator=g).to(device), torch.randn(2048, 2048, generator=g).to(device)
    x = torch.randn(1, 64, 256, 256, generator=g).to(device)
    w = torch.randn(64, 64, 3, 3, generator=g).to(device)
    out = []
    with torch.no_grad():
        for name, fn, flop in (("matmul", lambda: a @ b, 2 * 2048**3),
                               ("conv3x3", lambda: F.conv2d(x, w, padding=1), 2 * 64 * 64 * 9 * 256 * 256)):
            times = []
            for k in range(6):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if device == "cuda":
                    torch.cuda.synchronize()
                if k:
                    times.append(time.perf_counter() - t0)
            out.append(f"{name} {flop / statistics.median(times) / 1e9:,.0f}")
    return ", ".join(out) + " GFLOP/s"


def machine_info(threads: int, device: str) -> dict:
    import torch

    info = {"date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "python": platform.python_version(), "torch": torch.__version__, "threads": threads,
            "interop_threads": torch.get_num_interop_threads(), "logical_cpus": os.cpu_count(),
            "platform": platform.platform()}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for key, name in (("model name", "cpu_model"), ("cpu family", "cpu_family"), ("model", "cpu_model_no"),
                          ("cpu MHz", "cpu_mhz"), ("cache size", "cache")):
            m = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.M)
            if m:
                info[name] = m.group(1).strip()
        if "cpu_family" in info:
            info["cpu_model"] = (f"{info.get('cpu_model', '?')} (family {info.pop('cpu_family')}, "
                                 f"model {info.pop('cpu_model_no', '?')}, {info.pop('cpu_mhz', '?')} MHz)")
        caches = []
        for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
            try:
                level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
                if kind != "Instruction":
                    caches.append(f"L{level} {(index / 'size').read_text().strip()}")
            except OSError:
                pass
        if caches:
            info["cache"] = ", ".join(caches) + " (as seen by cpu0)"
        cores = {(m.group(1), m.group(2)) for m in re.finditer(
            r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", cpuinfo, re.S)}
        if cores:
            info["physical_cores"] = len(cores)
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if m:
            info["ram_gib"] = round(int(m.group(1)) / 2**20, 1)
    except OSError:
        pass
    cfg = torch.__config__.show()
    for pattern, name in ((r"MKL[- ]DNN v?([\w.]+)", "onednn"), (r"Math Kernel Library Version ([\w.]+)", "mkl")):
        m = re.search(pattern, torch.__config__.parallel_info()) or re.search(pattern, cfg)
        if m:
            info[name] = m.group(1)
    if device == "cuda" and torch.cuda.is_available():
        prop = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{prop.name}, {prop.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "emavfi"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["git"] = head + (" + uncommitted changes in emavfi/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ----------------------------------------------------------------------------------------------- worker

def make_clip(n: int, h: int, w: int, seed: int = 0):
    """n frames [n,3,h,w] in 0..1: a smooth random image plus texture, drifting a few pixels per frame."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, max(h // 16, 2), max(w // 16, 2), generator=g), size=(h, w),
                         mode="bicubic", align_corners=False)
    base = (0.7 * base + 0.3 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
    return torch.cat([torch.roll(base, shifts=(2 * k, 3 * k), dims=(2, 3)) for k in range(n)])


def pad_like_official(x):
    """Replicate-pad x [1,3,H,W] centred to multiples of 32 like the official demos' InputPadder, with the
    library's own padding arithmetic; returns (padded, (top, h, left, w))."""
    import torch.nn.functional as F
    from emavfi.inference import pad_amounts, padding_divisor

    h, w = x.shape[-2:]
    box = pad_amounts(h, w, padding_divisor(1.0))
    return (F.pad(x, box, mode="replicate") if any(box) else x), (box[2], h, box[0], w)


class Paths:
    """The timed paths of one (variant, size) measurement: ours, and the re-created official loops."""

    def __init__(self, model, clip, device: str):
        import torch
        import emavfi

        self.torch, self.emavfi, self.model, self.clip, self.device = torch, emavfi, model, clip, device
        self.pairs = clip.shape[0] - 1
        self.api = "emavfi.interpolate_sequence"
        self.naive_model = model
        self.naive_note = None

    def _naive_model(self):
        """The model as the official code would hold it: channels-first weights (the library may change layout)."""
        torch = self.torch
        if self.naive_model is self.model and any(
                p.dim() == 4 and not p.is_contiguous() for p in self.model.parameters()):
            import copy
            self.naive_model = copy.deepcopy(self.model)
            for p in self.naive_model.parameters():
                p.data = p.data.contiguous(memory_format=torch.contiguous_format)
            self.naive_note = "the library changed the model's weight layout; naive paths use a channels-first copy"
        return self.naive_model

    # official `inference` at one timestep: backbone + flow heads + warp/refine, B=1, channels-first
    def _one(self, model, x0, x1, t, feats=None):
        feats = model.extract(x0, x1) if feats is None else feats
        est = model.estimate_flow(x0, x1, feats, t)
        return model.synthesize(x0, x1, feats.appearance, est.flow, est.mask_logit).frame

    def _padded_pair(self, j):
        x0, box = pad_like_official(self.clip[j:j + 1].contiguous())
        x1, _ = pad_like_official(self.clip[j + 1:j + 2].contiguous())
        return x0, x1, box

    def naive_per_t(self, j: int, ts):
        """Official `inference` called once per timestep on pair j: [T,3,H,W]."""
        model = self._naive_model()
        x0, x1, (top, h, left, w) = self._padded_pair(j)
        with self.torch.no_grad():
            return self.torch.cat([self._one(model, x0, x1, t)[:, :, top:top + h, left:left + w] for t in ts])

    def naive_multi(self, j: int, ts):
        """Official `multi_inference` on pair j: backbone once, heads + refine per timestep: [T,3,H,W]."""
        model = self._naive_model()
        x0, x1, (top, h, left, w) = self._padded_pair(j)
        with self.torch.no_grad():
            feats = model.extract(x0, x1)
            return self.torch.cat([self._one(model, x0, x1, t, feats)[:, :, top:top + h, left:left + w]
                                   for t in ts])

    def ours(self, ts):
        """The library over the whole clip ([T, pairs, 3, H, W] as documented), as [pairs, T, 3, H, W]."""
        return self.emavfi.interpolate_sequence(self.model, self.clip, ts).transpose(0, 1)


def worker(args) -> dict:
    import torch

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    import emavfi

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    device = args.device
    h, w = parse_size(args.size)
    variant = args.variant
    torch.manual_seed(0)
    model = emavfi.build_model(variant)  # initialised like the official code (spec section 10)
    model = model.eval().to(device=device, dtype=dtype)
    clip = make_clip(args.frames, h, w).to(device=device, dtype=dtype)
    runner = Paths(model, clip, device)
    pairs = runner.pairs
    cuda = device == "cuda"

    gc.collect()
    res = {"variant": variant, "size": args.size, "frames": args.frames, "pairs": pairs, "repeats": args.repeats,
           "api": runner.api,
           "threads": torch.get_num_threads(), "dtype": args.dtype, "device": device,
           "load_before": read_loadavg(), "baseline_rss_mib": proc_status_mib("VmRSS"),
           "setup_peak_rss_mib": ru_maxrss_mib(), "paths": {}, "errors": {}}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    x8 = getattr(model.config, "arbitrary_t", variant.endswith("_t")) and not args.x2_only
    # name -> (callable(pair index) -> [T,3,H,W] or [P,T,3,H,W], output frames per call, warm-up?)
    paths = {
        "ours_x2": (lambda j: runner.ours([0.5]), pairs, True),
        "naive_x2": (lambda j: runner.naive_per_t(j, [0.5]), 1, True),
    }
    if x8:
        paths.update({
            "ours_x8": (lambda j: runner.ours(X8_TIMESTEPS), pairs * len(X8_TIMESTEPS), True),
            # same kernels and shapes as naive_x2, which already warmed them up
            "naive_x8": (lambda j: runner.naive_per_t(j, X8_TIMESTEPS), len(X8_TIMESTEPS), False),
            "multi_x8": (lambda j: runner.naive_multi(j, X8_TIMESTEPS), len(X8_TIMESTEPS), False),
        })
    reference = {}  # "x2"/"x8" -> ours output [P,T,3,H,W] (kept for the output check)
    diffs: dict[str, float] = {}
    stats = {name: {"wall": [], "cpu": [], "pairs_used": [], "frames_per_call": per, "peak_rss_mib": None,
                    "peak_vram_mib": None} for name, (_, per, _) in paths.items()}

    def check(name, j, out):
        mode = name[-2:]
        ref = reference.get(mode)
        if ref is None or name.startswith("ours"):
            return
        d = (out.to("cpu").float() - ref[j].float()).abs().max().item()
        diffs[name] = max(diffs.get(name, 0.0), d)

    def call(name, j, timed: bool, measure_mem: bool):
        fn, _, _ = paths[name]
        if measure_mem:
            supported = reset_peak_rss()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            out = fn(j)
            sync()
        except Exception as exc:  # keep the other paths' numbers; report the failure
            if cuda:
                torch.cuda.empty_cache()
            res["errors"][name] = f"{type(exc).__name__}: {exc}"[:300]
            print(f"[{variant} {args.size}] {name} failed: {res['errors'][name]}", file=sys.stderr, flush=True)
            return False
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        s = stats[name]
        if measure_mem:
            s["peak_rss_mib"] = proc_status_mib("VmHWM") if supported else None
            if cuda:
                s["peak_vram_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if name.startswith("ours") and name[-2:] not in reference:
            reference[name[-2:]] = out.detach().to("cpu")  # off the GPU, so it does not count as VRAM later
        check(name, j, out)
        del out
        if timed:
            s["wall"].append(wall)
            s["cpu"].append(cpu)
            s["pairs_used"].append(j)
        else:
            s["warmup_s"] = wall
        return True

    order = list(paths)  # ours_x2, naive_x2, ours_x8, naive_x8, multi_x8
    # Warm-up (one call each; also the per-path peak memory since the kernel counter was reset just before).
    for name in order:
        if paths[name][2]:
            call(name, 0, timed=False, measure_mem=True)
    # No resets from here on: they would make the next timed call page memory back in. The paths without a
    # warm-up (naive x8, multi) run B=1 like naive x2; they only count towards the whole-process peak.
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def finish(complete: bool) -> dict:
        res["process_peak_rss_mib"] = max([ru_maxrss_mib(), res["setup_peak_rss_mib"]]
                                          + [s["peak_rss_mib"] or 0 for s in stats.values()])
        if cuda:
            res["process_peak_vram_mib"] = max([torch.cuda.max_memory_allocated() / 2**20]
                                               + [s["peak_vram_mib"] or 0 for s in stats.values()])
        for s in stats.values():
            if s["wall"]:
                s["median_wall_s"] = statistics.median(s["wall"])
                s["median_cpu_s"] = statistics.median(s["cpu"])
                s["ms_per_frame"] = 1000 * s["median_wall_s"] / s["frames_per_call"]
        res.update(paths=stats, max_abs_diff=diffs, naive_note=runner.naive_note, load_after=read_loadavg(),
                   worker_s=time.perf_counter() - t_start, complete=complete)
        return res

    # Partial results after every round, so a worker killed later (memory, timeout) still reports something.
    print(JSON_TAG + json.dumps(finish(False)), flush=True)
    for rep in range(args.repeats):
        for name in order:
            if name in res["errors"]:
                continue
            warm = paths[name][2]
            j = (rep + (1 if warm else 0)) % pairs
            call(name, j, timed=True, measure_mem=False)
        if rep + 1 < args.repeats:
            print(JSON_TAG + json.dumps(finish(False)), flush=True)
    return finish(True)


def denormal_check(args) -> dict:
    """Count subnormal float32 values produced by every aten op of one naive x2 call (the official init, which
    emavfi.build_model uses, and PyTorch's default init), then time that call with flush_denormal off and on."""
    import collections

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    import emavfi

    torch.set_num_threads(args.threads)
    h, w = parse_size(args.size)
    tiny = torch.finfo(torch.float32).tiny

    class CountSubnormals(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.subnormal, self.values = collections.Counter(), collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if func.is_view or str(func).startswith(("aten.clone", "aten._unsafe_view", "aten.expand")):
                return result  # same values as their input; would only double-count
            for t in result if isinstance(result, (tuple, list)) else [result]:
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                    op = str(func).removeprefix("aten.").removesuffix(".default")
                    self.values[op] += t.numel()
                    self.subnormal[op] += int(((t != 0) & (t.abs() < tiny)).sum())
            return result

    out = {"variant": args.variant, "size": args.size, "threads": args.threads, "repeats": args.repeats,
           "load_before": read_loadavg()}
    for init in INITS:
        torch.manual_seed(0)
        model = emavfi.build_model(args.variant)
        if init == INITS[1]:
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        model.eval()
        runner = Paths(model, make_clip(2, h, w), "cpu")
        with CountSubnormals() as counter:
            runner.naive_per_t(0, [0.5])
        total = sum(counter.values.values())
        entry = {"weights_subnormal": sum(int(((p != 0) & (p.abs() < tiny)).sum()) for p in model.parameters()),
                 "op_output_values": total, "op_output_subnormal": sum(counter.subnormal.values()),
                 "subnormal_by_op": {op: f"{n} of {counter.values[op]}" for op, n in
                                     counter.subnormal.most_common() if n}}
        times = {False: [], True: []}
        runner.naive_per_t(0, [0.5])  # warm-up
        for _ in range(args.repeats):
            for flush in (False, True):
                torch.set_flush_denormal(flush)
                t0 = time.perf_counter()
                runner.naive_per_t(0, [0.5])
                times[flush].append(time.perf_counter() - t0)
        torch.set_flush_denormal(False)
        entry["ms_flush_off"] = [round(1000 * v) for v in times[False]]
        entry["ms_flush_on"] = [round(1000 * v) for v in times[True]]
        entry["median_off_over_on"] = round(statistics.median(times[False]) / statistics.median(times[True]), 2)
        out[init] = entry
    out["load_after"] = read_loadavg()
    return out


# ----------------------------------------------------------------------------------------------- parent

def fmt_ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_mib(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def ratio(a, b) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def build_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["variant", "size", "mode", "pairs", "ours ms/frame", "`inference` per t ms/frame", "speed-up",
            "`multi_inference` ms/frame", "speed-up", "CPU/wall", "max abs diff", "load 1m"]
    rows = []
    for r in results:
        if "fatal" in r:
            rows.append([r["variant"], r["size"], "-", "-", f"worker failed: {r['fatal']}"] + ["-"] * 7)
            continue
        p = r["paths"]
        for mode in ("x2", "x8"):
            ours = p.get(f"ours_{mode}")
            if ours is None:
                continue
            naive, multi = p.get(f"naive_{mode}"), p.get(f"multi_{mode}")
            ms = {k: (v or {}).get("ms_per_frame") for k, v in (("ours", ours), ("naive", naive), ("multi", multi))}
            wall = sum(sum(v["wall"]) for v in (ours, naive, multi) if v)
            cpu = sum(sum(v["cpu"]) for v in (ours, naive, multi) if v)
            diffs = [v for k, v in r["max_abs_diff"].items() if k.endswith(mode)]
            err = [f"{k}: {v}" for k, v in r["errors"].items() if k.endswith(mode)]
            label = mode + (" (incomplete)" if "worker" in r["errors"] else "")
            rows.append([r["variant"], r["size"], label, str(r["pairs"]),
                         fmt_ms(ms["ours"]) if not err else "; ".join(err),
                         fmt_ms(ms["naive"]), ratio(ms["naive"], ms["ours"]),
                         fmt_ms(ms["multi"]), ratio(ms["multi"], ms["ours"]),
                         f"{cpu / wall:.2f}" if wall else "-",
                         f"{max(diffs):.1e}" if diffs else "-", r["load_before"].split()[0]])
    return head, rows


def build_memory_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    cuda = any(r.get("device") == "cuda" for r in results)
    head = ["variant", "size", "baseline RSS (Python+torch+model)", "peak RSS ours x2", "peak RSS ours x8",
            "peak RSS `inference` x2", "peak RSS whole process"]
    if cuda:
        head += ["peak VRAM ours x2", "peak VRAM ours x8", "peak VRAM `inference` x2"]
    rows = []
    for r in results:
        if "fatal" in r:
            continue
        p = r["paths"]
        g = lambda name, key: (p.get(name) or {}).get(key)  # noqa: E731
        row = [r["variant"], r["size"], fmt_mib(r["baseline_rss_mib"]), fmt_mib(g("ours_x2", "peak_rss_mib")),
               fmt_mib(g("ours_x8", "peak_rss_mib")), fmt_mib(g("naive_x2", "peak_rss_mib")),
               fmt_mib(r["process_peak_rss_mib"])]
        if cuda:
            row += [fmt_mib(g("ours_x2", "peak_vram_mib")), fmt_mib(g("ours_x8", "peak_vram_mib")),
                    fmt_mib(g("naive_x2", "peak_vram_mib"))]
        rows.append(row)
    return head, rows


def build_runs_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["variant", "size", "path", "frames/call", "warm-up s", "wall s per call (each repeat)",
            "CPU s per call (each repeat)", "pairs used"]
    rows = []
    for r in results:
        for name, s in (r.get("paths") or {}).items():
            if not s["wall"]:
                continue
            rows.append([r["variant"], r["size"], name, str(s["frames_per_call"]),
                         "-" if "warmup_s" not in s else f"{s['warmup_s']:.2f}",
                         ", ".join(f"{v:.2f}" for v in s["wall"]), ", ".join(f"{v:.2f}" for v in s["cpu"]),
                         "all" if name.startswith("ours") else ", ".join(map(str, s["pairs_used"]))])
    return head, rows


def official_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["variant", "size", "official `inference` s/call (pass A / B)", "ours x2 s/frame",
            "official / ours (>1: ours faster)",
            "official peak RSS MiB (A / B)", "ours peak RSS MiB (x2 / whole run)",
            "official `multi_inference` 3 t, s/frame", "ours x8 s/frame"]
    rows = []
    for r in results:
        ref = OFFICIAL.get(arch_twin(r["variant"]), {}).get(r["size"])
        if ref is None or "fatal" in r or r.get("device") != "cpu" or r.get("dtype") != "fp32":
            continue
        p = r["paths"]
        ours2 = (p.get("ours_x2") or {}).get("ms_per_frame")
        ours8 = (p.get("ours_x8") or {}).get("ms_per_frame")
        rows.append([r["variant"], r["size"], f"{ref[0]:.2f} / {ref[1]:.2f}",
                     "-" if ours2 is None else f"{ours2 / 1000:.3f}",
                     "-" if ours2 is None else f"{ref[0] * 1000 / ours2:.2f}x",
                     f"{ref[2]} / {ref[3]}",
                     f"{fmt_mib((p.get('ours_x2') or {}).get('peak_rss_mib'))} / {fmt_mib(r['process_peak_rss_mib'])}",
                     f"{ref[4] / 3:.2f}", "-" if ours8 is None else f"{ours8 / 1000:.3f}"])
    return head, rows


def problem_lines(results: list[dict]) -> list[str]:
    lines = [f"- {r['variant']} {r['size']}: worker failed: {r['fatal']}" for r in results if "fatal" in r]
    for r in results:
        lines += [f"- {r['variant']} {r['size']} {name}: {msg}" for name, msg in (r.get("errors") or {}).items()]
    return lines


def target_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        p = r.get("paths") or {}

        def ms(name):
            return (p.get(name) or {}).get("ms_per_frame")

        checks = []
        if r["size"] == "480x640" and ms("ours_x2") and ms("naive_x2"):
            checks.append(("x2 vs `inference`", ms("naive_x2") / ms("ours_x2"), 1.5))
        if ms("ours_x8") and ms("naive_x8"):
            checks.append(("x8 vs `inference` per t", ms("naive_x8") / ms("ours_x8"), 2.0))
        if ms("ours_x8") and ms("multi_x8"):
            checks.append(("x8 vs `multi_inference`", ms("multi_x8") / ms("ours_x8"), 1.3))
        for label, got, want in checks:
            mark = "PASS" if got >= want else "FAIL"
            lines.append(f"- {mark} {r['variant']} {r['size']} {label}: {got:.2f}x (target >= {want}x)")
        for name, d in (r.get("max_abs_diff") or {}).items():
            if r.get("dtype") == "fp32" and d >= DIFF_LIMIT:
                lines.append(f"- FAIL {r['variant']} {r['size']} output check {name}: max abs diff {d:.1e} "
                             f">= {DIFF_LIMIT}")
    return lines


def md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def is_big(size: str) -> bool:
    h, w = parse_size(size)
    return h * w > 480 * 640


def frames_for(size: str, args) -> int:
    """Clip length: 5 frames (4 pairs) up to 480x640, 3 above, where one call of ours_t takes minutes."""
    return args.frames or (3 if args.quick or is_big(size) else 5)


def repeats_for(size: str, args) -> int:
    """Timed repeats: 3 up to 480x640, 2 above (keeps a default CPU run within about half an hour)."""
    return args.repeats or (1 if args.quick else 2 if is_big(size) else 3)


def parse_worker(stdout: str, stderr: str, problem: str, variant: str, size: str) -> dict:
    """The worker's last JSON line; a partial one (killed, timed out) is kept and marked incomplete."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(JSON_TAG)), None)
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    if line is None:
        return {"variant": variant, "size": size, "fatal": f"{problem}: {tail}"[:300]}
    res = json.loads(line[len(JSON_TAG):])
    if "fatal" not in res and not res.get("complete", True):
        res["errors"]["worker"] = f"stopped early ({problem}: {tail})"[:300]
    return res


def denormal_lines(d: dict) -> list[str]:
    if "fatal" in d:
        return [f"- denormal check failed: {d['fatal']}"]
    lines = [f"Denormal check: {d['variant']} {d['size']}, naive x2 call, {d['threads']} threads, "
             f"{d['repeats']} interleaved repeats, load before {d['load_before']} / after {d['load_after']}."]
    for init in INITS:
        e = d.get(init)
        if e is None:  # a result recorded before the inits were renamed
            continue
        ops = ", ".join(f"{op} {v}" for op, v in e["subnormal_by_op"].items()) or "none"
        lines.append(f"- {init}: subnormal weights {e['weights_subnormal']}; subnormal op outputs "
                     f"{e['op_output_subnormal']:,} of {e['op_output_values']:,} "
                     f"({100 * e['op_output_subnormal'] / max(e['op_output_values'], 1):.2f} %; by op: {ops}); "
                     f"ms flush off {e['ms_flush_off']}, on {e['ms_flush_on']}, median off/on "
                     f"{e['median_off_over_on']}")
    return lines


def run_denormal_check(args, variant: str, size: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--denormal-check", "--variants", variant, "--sizes", size,
           "--threads", str(args.threads), "--repeats", "5"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    print(f"denormal check ({variant} {size}) ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"fatal": f"timed out after {args.timeout} s"}
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(JSON_TAG)), None)
    if line is None:
        return {"fatal": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(line[len(JSON_TAG):])


def run_jobs(args, jobs: list[tuple[str, str]]) -> list[dict]:
    results = []
    for k, (variant, size) in enumerate(jobs, 1):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variant", variant, "--size", size,
               "--frames", str(frames_for(size, args)), "--threads", str(args.threads), "--repeats",
               str(repeats_for(size, args)), "--device", args.device, "--dtype", args.dtype]
        if args.x2_only:
            cmd.append("--x2-only")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        t0 = time.perf_counter()
        print(f"[{k}/{len(jobs)}] {variant} {size} ({frames_for(size, args)} frames, "
              f"{repeats_for(size, args)} repeats) ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
            stdout, stderr, problem = proc.stdout, proc.stderr, f"exit {proc.returncode}"
        except subprocess.TimeoutExpired as exc:
            as_text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
            stdout, stderr, problem = as_text(exc.stdout), as_text(exc.stderr), f"timed out after {args.timeout} s"
        res = parse_worker(stdout, stderr, problem, variant, size)
        if args.verbose and stderr.strip():
            print(stderr.rstrip(), file=sys.stderr)
        res["elapsed_s"] = time.perf_counter() - t0
        results.append(res)
        print(f"    done in {res['elapsed_s']:.0f} s" + (f" - {res['fatal']}" if "fatal" in res else ""),
              file=sys.stderr, flush=True)
    return results


def repeat_summary(results: list[dict]) -> str:
    by_size: dict[str, set] = {}
    for r in results:
        by_size.setdefault(r["size"], set()).add(str(r.get("repeats", "?")))
    return ", ".join(f"{size}: {'/'.join(sorted(reps))}" for size, reps in by_size.items())


def report(args, info: dict, results: list[dict], total_s: float, denormal: dict | None) -> str:
    smoke = args.quick or any(r.get("repeats", 3) < 2 for r in results)
    parts = ["# EMA-VFI benchmark results", ""]
    if smoke:
        parts += ["> **SMOKE RUN** (`--quick` or a single repeat): these numbers only show that the script "
                  "works; they are not representative. Re-run `benchmarks/bench.py --write` on a quiet machine.", ""]
    parts += ["Generated by `benchmarks/bench.py " + " ".join(sys.argv[1:]) + "`.", "", "## Machine", ""]
    keys = [("date", "date"), ("cpu_model", "CPU"), ("cache", "cache"), ("physical_cores", "physical cores"),
            ("logical_cpus", "logical CPUs"), ("affinity", "CPUs usable by this process"), ("ram_gib", "RAM GiB"),
            ("gpu", "GPU"), ("platform", "OS"), ("python", "Python"), ("torch", "torch"), ("mkl", "MKL"),
            ("onednn", "oneDNN"), ("threads", "torch threads"), ("git", "emavfi code (git)")]
    parts += [f"- {label}: {info[key]}" for key, label in keys if key in info]
    parts += [f"- throughput check ({args.threads} threads) before: {info['calibration_before']}; after: "
              f"{info['calibration_after']}",
              f"- load average (1/5/15 min) before: {info['load_before']}; after: {info['load_after']}",
              f"- device {args.device}, dtype {args.dtype}; timed repeats after 1 warm-up per path: "
              f"{repeat_summary(results)}; medians; "
              f"total run time {total_s / 60:.1f} min",
              f"- CPU/wall: process CPU seconds per wall second over all timed calls; about {args.threads} means "
              f"every torch thread was busy, clearly less means other processes took the cores (contention).", ""]
    apis = sorted({r["api"] for r in results if "api" in r})
    notes = sorted({r["naive_note"] for r in results if r.get("naive_note")})
    parts += ["## Speed (ms per output frame, median)", "",
              f"`ours` = {', '.join(apis) or 'the public API'} over a clip (pairs column); `inference` per t = "
              "backbone + heads + refine per timestep, one pair, B=1, channels-first; `multi_inference` = backbone "
              "once per pair then heads + refine per t, B=1. x2 = t 0.5; x8 = t 1/8..7/8 directly (only `_t` "
              "variants). Speed-up = naive ms / ours ms. Max abs diff = naive vs ours outputs (fp32 must be < 1e-4).",
              ""]
    parts += [md_table(*build_rows(results)), ""]
    parts += [f"Note: {n}." for n in notes]
    pl = problem_lines(results)
    if pl:
        parts += ["Problems:", ""] + pl + [""]
    tl = target_lines(results)
    if tl:
        parts += ["## Targets", ""] + tl + [""]
    parts += ["## Memory (MiB)", "",
              "Each (variant, size) runs in its own process. Baseline = RSS after import, model build and input "
              "creation, before the first call. Per-path peaks: the kernel's peak-RSS counter (VmHWM) is reset "
              "(after `malloc_trim`) right before that path's first call, so each includes the baseline. Whole "
              "process = `ru_maxrss`-style peak over everything." + (" VRAM: `torch.cuda.max_memory_allocated`."
                                                                     if args.device == "cuda" else ""), ""]
    parts += [md_table(*build_memory_rows(results)), ""]
    oh, orows = official_rows(results)
    parts += ["## Official code for context (spec section 15, measured earlier on this kind of 2-vCPU machine)", "",
              "Official `Trainer.Model.inference`, torch 2.13 CPU, 2 threads, fp32, B=1, two passes A / B; peak RSS "
              "per process. `multi_inference` used 3 timesteps (0.25/0.5/0.75), so its per-frame cost pays a "
              "larger backbone share than x8 does. The naive paths above run this project's modules, so they "
              "already include any per-module speed-ups. These figures come from another occasion and possibly a "
              "faster host: compare the throughput check under Machine (benchmarks/README.md has the numbers "
              "seen when this script was written). The ratios above, measured in one process, are the reliable "
              "comparison.", ""]
    if orows:
        parts += [md_table(oh, orows), ""]
    else:
        parts += ["Reference figures: ours_small_t 480x640 0.71-0.85 s per x2 call, peak RSS about 1.0 GB; "
                  "ours_t 480x640 about 2.9 s, 1.7 GB; ours_small_t 256x256 0.14 s, 534 MiB; ours_t 256x256 "
                  "0.51 s, 888 MiB.", ""]
    parts += ["## Each run", "", md_table(*build_runs_rows(results)), ""]
    parts += ["## Denormals", "", DENORMAL_NOTE, ""]
    if denormal:
        parts += denormal_lines(denormal) + [""]
    else:
        parts += ["(Not measured in this run: `--quick` or `--no-denormal-check`. benchmarks/README.md has the "
                  "result of an earlier check.)", ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: 256x256, ours_small_t, 3 frames, 1 repeat")
    ap.add_argument("--variants", help="comma-separated (default: all four emavfi.VARIANTS)")
    ap.add_argument("--sizes", help="comma-separated HxW (default: 256x256,480x640,720x1280; "
                                    "plus 1080x1920,2160x3840 on CUDA)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats after 1 warm-up; median (default 3 up to 480x640, 2 above; --quick 1)")
    ap.add_argument("--frames", type=int, default=0,
                    help="clip length for `ours` (default: 5 up to 480x640, 3 above and with --quick); "
                         "pairs = frames - 1")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    ap.add_argument("--x2-only", action="store_true", help="skip the x8 (7 timesteps) measurements")
    ap.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    ap.add_argument("--json", type=Path, help="also dump raw results to this JSON file")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per (variant, size) worker (default 1800)")
    ap.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    ap.add_argument("--no-denormal-check", action="store_true",
                    help="skip the short denormal check a full run ends with")
    ap.add_argument("--denormal-check", action="store_true",
                    help="instead of benchmarking: count subnormal values and time flush_denormal off/on "
                         "(first variant and size)")
    # internal
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.threads < 1 or (args.repeats is not None and args.repeats < 1) or (args.frames and args.frames < 2):
        ap.error("--threads and --repeats must be >= 1 and --frames >= 2")
    if args.worker:
        try:
            res = worker(args)
        except Exception as exc:
            import traceback
            traceback.print_exc()
            res = {"variant": args.variant, "size": args.size, "fatal": f"{type(exc).__name__}: {exc}"[:300]}
        print(JSON_TAG + json.dumps(res), flush=True)
        return 0

    import torch
    import emavfi

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available here")
    if args.quick:
        variants, sizes = ["ours_small_t"], ["256x256"]
    else:
        variants = args.variants.split(",") if args.variants else list(emavfi.VARIANTS)
        default_sizes = CPU_SIZES + (CUDA_EXTRA_SIZES if args.device == "cuda" else [])
        sizes = args.sizes.split(",") if args.sizes else default_sizes
    variants = [v.strip() for v in variants if v.strip()]
    for v in variants:
        if v not in emavfi.VARIANTS:
            ap.error(f"unknown variant {v!r}; choose from {', '.join(emavfi.VARIANTS)}")
    try:
        sizes = ["{}x{}".format(*parse_size(s)) for s in sizes if s.strip()]
    except argparse.ArgumentTypeError as exc:
        ap.error(f"--sizes: {exc}")

    if args.denormal_check:
        args.variant, args.size = variants[0], sizes[0]
        args.repeats = args.repeats or 5
        out = denormal_check(args)
        print(json.dumps(out, indent=1))
        print("\n".join(denormal_lines(out)))
        print(JSON_TAG + json.dumps(out), flush=True)
        return 0

    info = machine_info(args.threads, args.device)
    info["load_before"] = read_loadavg()
    info["calibration_before"] = calibrate(args.threads, args.device)
    t0 = time.perf_counter()
    jobs = [(v, s) for s in sizes for v in variants]
    results = run_jobs(args, jobs)
    denormal = None
    if not (args.quick or args.no_denormal_check) and args.device == "cpu" and args.dtype == "fp32":
        denormal = run_denormal_check(args, "ours_small_t" if "ours_small_t" in variants else variants[0],
                                      "480x640" if "480x640" in sizes else sizes[0])
    total = time.perf_counter() - t0
    info["load_after"] = read_loadavg()
    info["calibration_after"] = calibrate(args.threads, args.device)

    print()
    print(f"machine: {info.get('cpu_model', '?')}, {info.get('logical_cpus')} CPUs, torch {info['torch']}, "
          f"{args.threads} threads, load before {info['load_before']} / after {info['load_after']}, "
          f"total {total / 60:.1f} min")
    print(f"throughput check before: {info['calibration_before']}; after: {info['calibration_after']}")
    print()
    print(md_table(*build_rows(results)))
    print()
    print(md_table(*build_memory_rows(results)))
    oh, orows = official_rows(results)
    if orows:
        print()
        print(md_table(oh, orows))
    for lines in (problem_lines(results), target_lines(results)):
        if lines:
            print()
            print("\n".join(lines))
    if denormal:
        print()
        print("\n".join(denormal_lines(denormal)))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    if args.write:
        RESULTS.write_text(report(args, info, results, total, denormal) + "\n")
        print(f"\nwrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
