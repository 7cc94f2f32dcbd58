"""End to end in a real ComfyUI (../shared/comfyui, CPU): the pack (V3 schema) imports and registers, the example
API workflows run as saved (x4 with weights from a fake Hugging Face Hub, retime 24 -> 60, and the meta-batch one
with the real VideoHelperSuite), an interrupt ends a long run cleanly, and the web extension loads the UI-format
example and shows its widgets in headless Chromium (screenshot in artifacts/).

One server runs everything (run_comfy.py: the workflows in turn, then the browser check while it is still up).
Skips with the reason when ../shared/comfyui or its venv is absent; the browser part needs `chromium`, the
meta-batch part VideoHelperSuite's dependencies in ComfyUI's venv.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import emavfi
import emavfi.hub
import emavfi.weights
from comfy_helpers import REPO, TIMING, chromium, comfy_python, shared_comfy_dir
from fakehub import FakeHub
from helpers import random_state

WORKFLOW_API = REPO / "examples" / "workflows" / "interpolate_x4_api.json"
RETIME_API = REPO / "examples" / "workflows" / "retime_24_to_60_api.json"
WORKFLOW_UI = REPO / "examples" / "workflows" / "interpolate_x4.json"
FRAMES = [REPO / "examples" / "frames" / f"frame_00{i}.png" for i in range(2)]
ARTIFACTS = REPO / "artifacts"
PACK_NAME = "ComfyUI-EMA-VFI"
NODE_IDS = ("EMAVFI_LoadModel", "EMAVFI_Interpolate", "EMAVFI_Retime")


def _skip_reason() -> str | None:
    harness = shared_comfy_dir() / "run_comfy.py"
    if not harness.is_file():
        return f"{harness} is absent (a real ComfyUI snapshot and harness live in ../shared/comfyui)"
    if not comfy_python().exists():
        return (f"ComfyUI's venv python {comfy_python()} is absent: run ../shared/comfyui/setup_venv.sh "
                "(or set COMFY_PYTHON)")
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _frames(tmp: Path) -> list[Path]:
    """The example frames, or two generated ones with the same names when the examples are absent."""
    if all(f.is_file() for f in FRAMES):
        return FRAMES
    out = []
    y, x = np.mgrid[0:96, 0:128]
    for i, f in enumerate(FRAMES):
        rgb = np.stack([(x * 2 + 12 * i) % 256, (y * 2) % 256, ((x + y + 9 * i) * 3) % 256], -1).astype(np.uint8)
        path = tmp / f.name
        Image.fromarray(rgb).save(path)
        out.append(path)
    return out


def _interrupt_workflow(tmp: Path) -> Path:
    """The example at half size, 128 frames, automatic chunk size: 127 pairs (0.1-3 s each on a CPU), far more
    than fit before the interrupt on any CPU, so it lands mid-run (if it did not work: 'success' or 'timeout')."""
    workflow = json.loads(WORKFLOW_API.read_text())
    workflow["10"] = {"class_type": "ImageScaleBy",
                      "inputs": {"image": ["3", 0], "upscale_method": "area", "scale_by": 0.5}}
    workflow["11"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["10", 0], "amount": 64}}
    workflow["5"]["inputs"].update(images=["11", 0], chunk_size=0)
    path = tmp / "interrupt_api.json"
    path.write_text(json.dumps(workflow))
    return path


def _variant_workflows(tmp: Path) -> list[tuple[Path, str]]:
    """Retime (success), one frame (error at run time), bad timesteps (rejected when queued)."""
    base = json.loads(WORKFLOW_API.read_text())
    retime = json.loads(RETIME_API.read_text())
    one_frame = json.loads(json.dumps(base))
    one_frame["5"]["inputs"]["images"] = ["1", 0]
    bad_timesteps = json.loads(json.dumps(base))
    bad_timesteps["5"]["inputs"]["timesteps"] = "0.5, 0.25"
    two_pairs = json.loads(json.dumps(base))  # 3 frames, x2: two pairs, automatic chunk size
    two_pairs["12"] = {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["1", 0]}}
    two_pairs["5"]["inputs"].update(images=["12", 0], multiplier=2, chunk_size=0)
    out = []
    for name, workflow, expect in (("retime", retime, "success"), ("one_frame", one_frame, "error"),
                                   ("bad_timesteps", bad_timesteps, "invalid_prompt"), ("two_pairs", two_pairs, "success")):
        path = tmp / f"{name}_api.json"
        path.write_text(json.dumps(workflow))
        out.append((path, expect))
    return out


METABATCH_API = REPO / "examples" / "workflows" / "metabatch_x2_api.json"
VHS_PACK = shared_comfy_dir() / "custom_nodes" / "ComfyUI-VideoHelperSuite"
META_FRAMES, META_PER_BATCH = 24, 10  # 3 batches: 10, 10 and a short last one of 4 (CPU time: ~1 s per pair)
META_RUNS = 6  # index of the meta-batch workflow among the runs; the whole run follows it


def _vhs_missing() -> str | None:
    """Why the meta-batch runs cannot use the real VideoHelperSuite here (a reason to skip with), or None."""
    if not (VHS_PACK / "__init__.py").is_file():
        return f"{VHS_PACK} is absent (VideoHelperSuite's source lives in ../shared/comfyui/custom_nodes)"
    probe = subprocess.run([str(comfy_python()), "-c", "import cv2, imageio_ffmpeg"], capture_output=True)
    if probe.returncode:
        return (f"VideoHelperSuite needs opencv and imageio-ffmpeg in ComfyUI's venv: {comfy_python()} -m pip "
                "install opencv-python-headless imageio-ffmpeg")
    return None


def _input_video(tmp: Path) -> Path:
    """input.mp4 (the name the example loads): a pan over one photograph, a cut, a pan over another, 24 fps."""
    import av
    import torch

    from test_nodes_metabatch import photo_clip

    frames = (photo_clip(META_FRAMES, cut_at=12) * 255).round().to(torch.uint8).numpy()
    path = tmp / "input.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _metabatch_workflows(tmp: Path) -> list[tuple[Path, str]]:
    """The example meta-batch workflow as saved (VideoHelperSuite's manager, Load Video and Video Combine, which
    queues the next batches itself; only frames_per_batch set smaller), with a Save Image beside Video Combine;
    then the same graph as one whole run."""
    meta = json.loads(METABATCH_API.read_text())
    meta["1"]["inputs"]["frames_per_batch"] = META_PER_BATCH
    meta["7"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "frames_meta"}}
    whole = json.loads(json.dumps(meta))
    del whole["1"]
    for node in whole.values():
        node["inputs"].pop("meta_batch", None)
    whole["6"]["inputs"]["filename_prefix"] = "emavfi_whole"
    whole["7"]["inputs"]["filename_prefix"] = "frames_whole"
    out = []
    for name, workflow in (("metabatch", meta), ("whole", whole)):
        path = tmp / f"{name}_api.json"
        path.write_text(json.dumps(workflow))
        out.append((path, "success"))
    return out


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("comfy_e2e")
    ARTIFACTS.mkdir(exist_ok=True)
    weights = tmp / "model.safetensors"
    emavfi.weights.save_safetensors({k: v.half() for k, v in random_state("ours_small_t").items()}, weights,
                                    "ours_small_t")
    source = emavfi.hub.DEFAULT_SOURCES["ours_small_t"]
    frames = _frames(tmp)
    base = tmp / "base"
    summary_path = tmp / "summary.json"
    browser_result = tmp / "browser.json"
    browser = chromium() is not None
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_HOME=str(tmp / "hf_home"), EMAVFI_HOME=str(tmp / "emavfi_home"),
               HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("HF_ENDPOINT", None)
    cmd = [sys.executable, str(REPO / "tests" / "comfy_helpers.py"), "timed-harness", "--python", str(comfy_python()),
           "--node-pack", f"{REPO}={PACK_NAME}", "--base-dir", str(base), "--out-dir", str(tmp / "out"),
           "--summary-json", str(summary_path), "--user-setting", "Comfy.TutorialCompleted=true",
           "--workflow", str(WORKFLOW_API), "--expect", "success",
           "--workflow", str(_interrupt_workflow(tmp)), "--expect", "interrupted", "--interrupt-after", "5",
           "--timeout", "300", "--extra-arg=--disable-api-nodes", "--verbose-progress"]
    vhs_missing = _vhs_missing()
    for path, expect in _variant_workflows(tmp) + ([] if vhs_missing else _metabatch_workflows(tmp)):
        cmd += ["--workflow", str(path), "--expect", expect]
    if not vhs_missing:
        cmd += ["--node-pack", str(VHS_PACK), "--input-file", str(_input_video(tmp))]
    for f in frames:
        cmd += ["--input-file", str(f)]
    for node_id in NODE_IDS:
        cmd += ["--require-node", node_id]
    if browser:
        check = [sys.executable, str(REPO / "tests" / "comfy_helpers.py"), "browser-check", "--url", "{url}",
                 "--workflow", str(WORKFLOW_UI), "--out-dir", str(ARTIFACTS), "--result", str(browser_result)]
        cmd += ["--while-running", " ".join(shlex.quote(c) if c != "{url}" else c for c in check)]
    with FakeHub() as hub:
        hub.add_repo(source.repo_id, {source.filename: weights.read_bytes()})
        env["EMAVFI_HF_ENDPOINT"] = hub.url
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
        seconds = time.monotonic() - started
        hub_requests = [(r.method, r.path, r.status) for r in hub.requests]
    (ARTIFACTS / "comfy_e2e_harness.log").write_text(proc.stderr)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if summary.get("server_log") and Path(summary["server_log"]).exists():
        (ARTIFACTS / "comfy_e2e_server.log").write_text(Path(summary["server_log"]).read_text(errors="replace"))
    assert summary, f"run_comfy.py wrote no summary (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return {"summary": summary, "frames": frames, "base": base, "out": tmp / "out", "seconds": seconds,
            "hub_requests": hub_requests,
            "browser": json.loads(browser_result.read_text()) if browser_result.exists() else None,
            "browser_expected": browser, "stderr": proc.stderr, "vhs_missing": vhs_missing}


def _run(e2e, index: int) -> dict:
    runs = e2e["summary"].get("runs") or []
    assert len(runs) > index, f"workflow {index + 1} did not run: {json.dumps(e2e['summary'], indent=1)[-3000:]}"
    return runs[index]


def test_pack_registers_in_real_comfyui(e2e):
    summary = e2e["summary"]
    assert summary.get("status") not in ("boot_failed", "pack_import_failed", "missing_nodes"), summary
    pack = next(p for p in summary["packs"] if p["name"] == PACK_NAME)
    assert not pack["import_failed"], pack["tracebacks"]
    assert set(NODE_IDS) <= set(pack["registered_nodes"])
    assert pack["display_names"]["EMAVFI_Interpolate"] == "EMA-VFI Interpolate"
    served = pack["web_extensions"]
    assert list(served) == [f"/extensions/{PACK_NAME}/emavfi.js"] and served[next(iter(served))]["status"] == 200
    assert "warning" not in pack  # the extension is registered once (no [tool.comfy] web)


def test_example_workflow_interpolates_x4(e2e):
    run = _run(e2e, 0)
    assert run["status"] == "success", run.get("execution_error") or run
    images = [o for o in run["outputs"] if o["node"] == "6" and o.get("path")]
    assert len(images) == (2 - 1) * 4 + 1
    first, last = (np.asarray(Image.open(f).convert("RGB")) for f in e2e["frames"])
    outputs = [np.asarray(Image.open(o["path"]).convert("RGB")) for o in images]
    assert np.array_equal(outputs[0], first) and np.array_equal(outputs[-1], last), "input frames changed"
    assert all(o.shape == first.shape for o in outputs)
    assert not any(np.array_equal(o, first) or np.array_equal(o, last) for o in outputs[1:-1])
    ui = [o["value"] for o in run["outputs"] if o["node"] == "5" and o.get("key") == "emavfi"]
    assert ui and ui[0]["frames_in"] == 2 and ui[0]["frames_out"] == 5 and ui[0]["fps_out"] == 96.0
    # progress reached the websocket: download (loader) and per-chunk frames (interpolate)
    assert run["progress_events"] >= 2
    assert run["last_progress"][0] == "5" and run["last_progress"][1:] == [5, 5]
    downloads = [e for e in run["custom_events"]["last"] if e["type"] == "emavfi.download"]
    assert run["custom_events"]["count"] >= 1 and downloads and downloads[-1]["data"]["state"] == "cached"
    # the weights were downloaded once from the fake Hub into the models folder
    assert any(m == "GET" and s in (200, 206) for m, _, s in e2e["hub_requests"])
    cached = list((e2e["base"] / "models" / "frame_interpolation" / "emavfi" / ".hub").rglob("model.safetensors"))
    assert cached, "weights not under models/frame_interpolation/emavfi"


def _progress_of(e2e, run: dict, node: str = "5") -> tuple[int, int]:
    """(progress events of `node` received before the POST /interrupt of this run returned, received after it), by
    the arrival times the timed harness logs (comfy_helpers.timed_harness); no interrupt: all are before."""
    prompt = run["prompt_id"]
    arrivals, interrupted = [], None
    timing = re.compile(re.escape(TIMING) + r" (progress|interrupt) prompt=(\S+) (?:node=(\S+) |returned )"
                        r"at=(\d+\.\d{6})")
    for kind, for_prompt, for_node, at in timing.findall(e2e["stderr"]):
        if for_prompt != prompt:
            continue
        if kind == "interrupt" and interrupted is None:
            interrupted = float(at)
        elif kind == "progress" and for_node == node:
            arrivals.append(float(at))
    assert arrivals or interrupted is not None, f"no timing lines for prompt {prompt}: was the timed harness run?"
    after = sum(1 for at in arrivals if interrupted is not None and at > interrupted)
    return len(arrivals) - after, after


def test_progress_moves_per_pair_on_the_cpu(e2e):
    run = _run(e2e, 5)
    assert run["status"] == "success", run.get("execution_error") or run
    before, _ = _progress_of(e2e, run)
    assert before >= 2, "a 2-pair run must report progress at least once per pair"
    assert run["last_progress"][0] == "5" and run["last_progress"][1:] == [5, 5]


def test_interrupt_ends_the_run_cleanly(e2e):
    run = _run(e2e, 1)
    assert run["status"] == "interrupted", run.get("execution_error") or run
    assert run["interrupted"]["node_type"] == "EMAVFI_Interpolate"
    assert "6" not in run["executed_nodes"]
    assert run["server_alive_after"]
    # honoured before the next pair finished: fewer progress events after the interrupt than one pair's 4 frames
    # (on a slow machine the interrupt may land while the first pair is still being made: then before == 0)
    before, after = _progress_of(e2e, run)
    assert after < 4, (before, after)
    # progress stopped short of all (128 - 1) * 4 + 1 frames (the update after an interrupt raises, unsent)
    last = run["last_progress"]
    assert last is None or (last[0] == "5" and last[1] < last[2] == 509), last


def test_retime_and_clear_errors(e2e):
    retime, one_frame, bad_timesteps = (_run(e2e, i) for i in (2, 3, 4))
    assert retime["status"] == "success", retime.get("execution_error") or retime
    assert len([o for o in retime["outputs"] if o["node"] == "6" and o.get("path")]) == 3  # t = 0, 0.4, 0.8
    report = next(o["value"] for o in retime["outputs"] if o["node"] == "5")["report"]
    assert report.startswith("2 frames at 24 fps -> 3 frames at 60 fps")
    assert one_frame["status"] == "error" and one_frame["server_alive_after"]
    error = one_frame["execution_error"]
    assert error["node_type"] == "EMAVFI_Interpolate" and error["exception_type"].endswith("ValueError")
    assert "needs at least 2 frames" in error["exception_message"]
    assert bad_timesteps["status"] == "invalid_prompt"
    errors = bad_timesteps["node_errors"]["5"]["errors"]
    assert len(errors) == 1 and "strictly increasing; got 0.25 after 0.5" in errors[0]["details"]


def test_web_extension_in_browser(e2e):
    if not e2e["browser_expected"]:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    result = e2e["browser"]
    assert result is not None, f"browser check wrote no result:\n{e2e['stderr'][-3000:]}"
    assert "error" not in result, json.dumps(result, indent=1)
    assert result["before_run"] == "N frames in \u2192 (N\u22121)\u00d74+1 frames out (fps 24 \u2192 96)"
    assert result["after_run"] == "2 frames in \u2192 5 frames out (fps 24 \u2192 96)"
    assert result["multiplier_8"] == "2 frames in \u2192 9 frames out (fps 24 \u2192 192)"
    assert result["timesteps_text"] == "2 frames in \u2192 5 frames out (fps 24 \u2192 96)"  # 3 in-betweens
    assert "ours_small_t: downloaded" in result["loader_status"]
    assert result["dom_widgets"] == 2
    assert Path(result["screenshot"]).stat().st_size > 10_000
    # the UI workflow is the same prompt as the API workflow
    api = json.loads(WORKFLOW_API.read_text())
    prompt = result["prompt"]
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == \
        {k: (v["class_type"], v["inputs"]) for k, v in api.items()}
    assert not [line for line in result["console"] if "emavfi" in line.lower() and "error" in line.lower()]


def _frames_saved(out: Path, prefix: str) -> np.ndarray:
    """Every PNG Save Image wrote under `prefix` (NAME_00001_.png ...), in order: its counter runs on across prompts."""
    return np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob(f"{prefix}_*_.png"))])


def _video_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_meta_batch_example_with_videohelpersuite_equals_one_whole_run(e2e):
    """examples/workflows/metabatch_x2_api.json in a real ComfyUI with the real VideoHelperSuite: queued once, its
    Video Combine queues the other batches; the frames of the 3 batches join into those of one whole run, bit for
    bit, and both videos hold all (24 - 1) x 2 + 1 frames."""
    if e2e["vhs_missing"]:
        pytest.skip(e2e["vhs_missing"])
    meta, whole = _run(e2e, META_RUNS), _run(e2e, META_RUNS + 1)
    for run in (meta, whole):
        assert run["status"] == "success", run.get("execution_error") or run
    vhs = next(p for p in e2e["summary"]["packs"] if p["name"] == VHS_PACK.name)
    assert not vhs["import_failed"] and {"VHS_BatchManager", "VHS_LoadVideo", "VHS_VideoCombine"} <= set(
        vhs["registered_nodes"])
    expected = (META_FRAMES - 1) * 2 + 1
    batched, single = _frames_saved(e2e["out"], "frames_meta"), _frames_saved(e2e["out"], "frames_whole")
    assert single.shape[0] == expected and batched.shape == single.shape
    assert np.array_equal(batched, single)
    first = next(o["value"] for o in meta["outputs"] if o["node"] == "5" and o.get("key") == "emavfi")
    assert first["report"].startswith("meta batch 1:") and not first["last_batch"] and first["fps_out"] == 48.0
    videos = {prefix: sorted(e2e["out"].glob(f"{prefix}_*.mp4")) for prefix in ("emavfi_x2", "emavfi_whole")}
    assert all(len(v) == 1 for v in videos.values()), videos  # one file per clip, appended to batch by batch
    joined, one = (_video_frames(v[0]) for v in videos.values())
    assert joined.shape[0] == one.shape[0] == expected
    assert np.array_equal(joined, one)
