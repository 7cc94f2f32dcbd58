"""End to end in a real ComfyUI (../shared/comfyui, CPU): the pack imports and registers, the example API workflow
downloads weights from a fake Hugging Face Hub and interpolates x4, an interrupt ends a long run cleanly, and the
web extension shows its widgets in headless Chromium (screenshot in artifacts/).

One server runs everything (run_comfy.py: two workflows, then the browser check while it is still up).
Skips with the reason when ../shared/comfyui or its venv is absent; the browser part needs `chromium`.
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


METABATCH_PACK = REPO / "tests" / "comfy_metabatch_pack"
META_RUNS = 6  # index of the first meta-batch workflow among the runs


def _metabatch_workflows(tmp: Path) -> list[tuple[Path, str]]:
    """A 30-frame clip x2 in 3 meta batches of 10 (one prompt each, `requeue` counted as VHS counts it), then as
    one whole run. The manager, loader and saver are the test-only nodes of tests/comfy_metabatch_pack."""
    from test_nodes_metabatch import photo_clip

    np.save(tmp / "metabatch_clip.npy", photo_clip(30, cut_at=12).numpy())
    base = json.loads(WORKFLOW_API.read_text())
    out = []
    for batch in (0, 1, 2, None):
        meta = {} if batch is None else {"meta_batch": ["20", 0]}
        workflow = {"4": base["4"],
                    "21": {"class_type": "EMAVFITest_LoadClip", "inputs": {"clip": "metabatch_clip.npy", **meta}},
                    "22": {"class_type": "EMAVFI_Interpolate",
                           "inputs": {**base["5"]["inputs"], "images": ["21", 0], "multiplier": 2,
                                      "scene_cut_threshold": 2.5, **meta}},
                    "23": {"class_type": "EMAVFITest_SaveClip",
                           "inputs": {"images": ["22", 0], "fps": ["22", 1], "name": f"metabatch_{batch}"}}}
        if batch is not None:
            workflow["20"] = {"class_type": "VHS_BatchManager", "inputs": {"frames_per_batch": 10, "requeue": batch}}
        path = tmp / f"metabatch_{batch}_api.json"
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
           "--timeout", "120", "--extra-arg=--disable-api-nodes", "--verbose-progress"]
    for path, expect in _variant_workflows(tmp) + _metabatch_workflows(tmp):
        cmd += ["--workflow", str(path), "--expect", expect]
    cmd += ["--node-pack", f"{METABATCH_PACK}=emavfi-test-metabatch", "--input-file", str(tmp / "metabatch_clip.npy")]
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
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
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
            "browser_expected": browser, "stderr": proc.stderr}


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


def test_meta_batch_of_three_equals_one_whole_run(e2e):
    """The Meta Batch protocol in a real ComfyUI (with test-only stand-ins for VideoHelperSuite's manager,
    loader and saver): 3 queued batches of 10 frames x2 join into the 59 frames of one whole run, bit for bit."""
    runs = [_run(e2e, META_RUNS + i) for i in range(4)]
    for run in runs:
        assert run["status"] == "success", run.get("execution_error") or run
    batches = [np.load(e2e["out"] / f"metabatch_{i}.npy") for i in range(3)]
    whole = np.load(e2e["out"] / "metabatch_None.npy")
    assert whole.shape[0] == 59 and all(0 < len(b) for b in batches)
    assert np.array_equal(np.concatenate(batches), whole)
    saved = [next(o["value"] for o in run["outputs"] if o["node"] == "23") for run in runs]
    assert {s["fps"] for s in saved} == {48.0}
    reports = [next(o["value"] for o in run["outputs"] if o["node"] == "22")["report"] for run in runs[:3]]
    assert reports[0].startswith("meta batch 1:") and reports[2].startswith("meta batch 3 (last):")
