"""ComfyUI-side test helpers.

- `load_pack()`: import this repository as a ComfyUI custom-node package, the way ComfyUI does
  (`spec_from_file_location(<dir>/__init__.py)`), so the nodes' relative imports resolve as in ComfyUI.
- `install_standins()`: puts the real ComfyUI source (../shared/comfyui/ComfyUI) on the import path for
  `comfy_api` (the nodes' V3 schema), and minimal stand-ins for `comfy.model_management`, `comfy.utils` and
  `folder_paths` in front of it (the library venv cannot boot ComfyUI's device setup). They mirror the behaviour the
  nodes rely on (ProgressBar updates are Cancel points, interrupts raise and clear the flag); the real behaviour is
  proven by test_comfy_e2e.py against a real ComfyUI.
- End-to-end helpers: locating ../shared/comfyui and its venv, and a small Chrome DevTools Protocol client
  for headless Chromium (stdlib only).
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
PACK_MODULE = "emavfi_comfy_pack"
STANDIN_MODULES = ("comfy", "comfy.model_management", "comfy.utils", "folder_paths")
# ComfyUI modules the tests keep out: importing them boots devices or the server (the nodes treat them as absent).
BLOCKED_MODULES = ("comfy.model_patcher", "server")


# ----------------------------------------------------------------------------------------------- stand-ins

class InterruptProcessingException(Exception):
    """Stand-in for comfy.model_management.InterruptProcessingException."""


class StandinState:
    """What the stand-ins recorded, and a switch to simulate ComfyUI's Cancel button."""

    def __init__(self, models_dir: Path):
        self.models_dir = models_dir
        self.progress: list[tuple[int, int]] = []
        self.interrupt_after_updates: int | None = None  # set the interrupt flag after this many updates
        self.interrupted = False
        self.free_memory_calls: list[tuple[float, str]] = []

    def reset(self) -> None:
        self.progress.clear()
        self.interrupt_after_updates = None
        self.interrupted = False


def comfy_source() -> Path:
    """The ComfyUI source tree the nodes' `comfy_api` comes from (../shared/comfyui/ComfyUI)."""
    return shared_comfy_dir() / "ComfyUI"


def comfy_source_missing() -> str | None:
    """Why the nodes cannot be imported here (a reason to skip with), or None."""
    if not (comfy_source() / "comfy_api" / "v0_0_2").is_dir():
        return (f"{comfy_source()} is absent: the nodes' V3 schema (comfy_api.v0_0_2) comes from ComfyUI's source "
                "in ../shared/comfyui")
    return None


def install_standins(models_dir: Path) -> StandinState:
    """Put ComfyUI's source on sys.path and install stand-ins for the ComfyUI modules the nodes call at run time;
    returns their state. Raises RuntimeError when the source is absent (see comfy_source_missing)."""
    missing = comfy_source_missing()
    if missing:
        raise RuntimeError(missing)
    if str(comfy_source()) not in sys.path:
        sys.path.append(str(comfy_source()))
    state = StandinState(models_dir)

    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = InterruptProcessingException
    mm.OOM_EXCEPTION = torch.cuda.OutOfMemoryError

    def throw_exception_if_processing_interrupted() -> None:
        if state.interrupted:
            state.interrupted = False
            raise InterruptProcessingException()

    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.processing_interrupted = lambda: state.interrupted
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.get_free_memory = lambda dev=None, torch_free_too=False: 8 << 30
    mm.free_memory = lambda memory_required, device, keep_loaded=(): state.free_memory_calls.append(
        (memory_required, str(device))) or []
    mm.module_size = lambda module: sum(t.nelement() * t.element_size() for t in module.state_dict().values())
    mm.soft_empty_cache = lambda force=False: None
    mm.should_use_fp16 = lambda device=None, model_params=0, prioritize_performance=True, manual_cast=False: False

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        # Like ComfyUI's: main.py's global hook runs on every update and raises when Cancel was pressed.
        def __init__(self, total: int, node_id: str | None = None):
            self.total, self.current, self.node_id = total, 0, node_id

        def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            state.progress.append((self.current, self.total))
            if state.interrupt_after_updates is not None and len(state.progress) >= state.interrupt_after_updates:
                state.interrupted = True
            throw_exception_if_processing_interrupted()

        def update(self, value: int) -> None:
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar

    comfy = types.ModuleType("comfy")
    comfy.__path__ = [str(comfy_source() / "comfy")]  # the rest of `comfy` (cli_args, options) is ComfyUI's own
    comfy.model_management, comfy.utils = mm, utils

    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(models_dir)
    fp.supported_pt_extensions = {".ckpt", ".pt", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    fp.folder_names_and_paths = {}

    def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        paths, exts = fp.folder_names_and_paths.setdefault(folder_name, ([], set()))
        if full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[name][0])

    sys.modules.update({"comfy": comfy, "comfy.model_management": mm, "comfy.utils": utils, "folder_paths": fp})
    sys.modules.update(dict.fromkeys(BLOCKED_MODULES))  # None: `import` raises ImportError
    return state


def remove_standins() -> None:
    """Forget the stand-ins, ComfyUI's modules and the pack bound to them (other test modules start clean)."""
    source = str(comfy_source())
    ours = {*STANDIN_MODULES, *BLOCKED_MODULES}
    for name, module in list(sys.modules.items()):
        if (name in ours or name.split(".")[0] == PACK_MODULE
                or str(getattr(module, "__file__", None) or "").startswith(source)):
            del sys.modules[name]
    if str(comfy_source()) in sys.path:
        sys.path.remove(str(comfy_source()))


def load_pack(name: str = PACK_MODULE) -> types.ModuleType:
    """Import the repository root as a custom-node package (as ComfyUI's load_custom_node does)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ----------------------------------------------------------------------------------------------- e2e setup

def shared_comfy_dir() -> Path:
    return Path(os.environ.get("EMAVFI_SHARED", REPO.parent / "shared")) / "comfyui"


def comfy_python() -> Path:
    return Path(os.environ.get("COMFY_PYTHON") or
                Path(os.environ.get("COMFY_VENV", "~/.cache/emavfi-comfy-venv")).expanduser() / "bin" / "python")


def chromium() -> str | None:
    return next((shutil.which(x) for x in ("chromium", "chromium-browser", "google-chrome") if shutil.which(x)), None)


# ----------------------------------------------------------------------------------------------- browser

class DevToolsPage:
    """Headless Chromium driven over the Chrome DevTools Protocol (stdlib websocket from run_comfy.py).

    Only what the web-extension test needs: navigate, evaluate JavaScript (awaiting promises), screenshot.
    """

    def __init__(self, websocket_class: type, width: int = 1400, height: int = 900):
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium not found (apt-get install -y chromium)")
        self.profile = tempfile.mkdtemp(prefix="emavfi_chromium_")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t.get("type") == "page")
        path = page["webSocketDebuggerUrl"].split(f":{port}", 1)[1]
        self.ws = websocket_class("127.0.0.1", port, path, timeout=30)
        self.next_id = 0
        self.console: list[str] = []
        self.send("Runtime.enable")
        self.send("Page.enable")

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        self.next_id += 1
        msg_id = self.next_id
        payload = json.dumps({"id": msg_id, "method": method, "params": params or {}}).encode()
        self.ws._send(0x1, payload)
        deadline = time.time() + timeout
        self.ws.sock.settimeout(timeout)
        while time.time() < deadline:
            kind, data = self.ws.recv()
            message = json.loads(data)
            if message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif message.get("method") == "Runtime.exceptionThrown":
                details = message["params"].get("exceptionDetails", {})
                self.console.append("EXCEPTION " + str(details.get("exception", {}).get("description", details)))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
        raise TimeoutError(f"no answer to {method} within {timeout} s")

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.25) -> Any:
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"{expression!r} stayed falsy for {timeout} s (last value {value!r})")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        # Chromium was started in its own session (process group = its pid): stop it and its helpers.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.profile, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- browser check

def load_run_comfy() -> types.ModuleType:
    """The shared harness as a module (for its stdlib websocket client)."""
    path = shared_comfy_dir() / "run_comfy.py"
    spec = importlib.util.spec_from_file_location("emavfi_run_comfy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TIMING = "[timing]"


def timed_harness(argv: list[str]) -> int:
    """Run the shared harness unchanged, also logging (monotonic seconds, on stderr) when each progress message
    arrives on its websocket and when each POST /interrupt returned: its own log lines carry whole seconds and
    are written when its loop gets round to the messages, too coarse and too late to order them."""
    harness = load_run_comfy()
    recv, post_json = harness.MiniWebSocket.recv, harness.Http.post_json

    def note(text: str) -> None:  # one write (print's end is a second one), on a line of its own: threads interleave
        sys.stderr.write(f"\n{TIMING} {text} at={time.monotonic():.6f}\n")
        sys.stderr.flush()

    def timed_recv(self: Any) -> Any:
        kind, payload = message = recv(self)
        if kind == "text":
            event = json.loads(payload)
            if event.get("type") == "progress":
                data = event.get("data") or {}
                note(f"progress prompt={data.get('prompt_id')} node={data.get('node')}")
        return message

    def timed_post_json(self: Any, path: str, body: Any, timeout: float = 30.0) -> Any:
        result = post_json(self, path, body, timeout)
        if path == "/interrupt":
            note(f"interrupt prompt={(body or {}).get('prompt_id')} returned")
        return result

    harness.MiniWebSocket.recv, harness.Http.post_json = timed_recv, timed_post_json
    sys.argv = [str(shared_comfy_dir() / "run_comfy.py"), *argv]
    return harness.main()


_JS_TEXTS = "Array.from(document.querySelectorAll('.emavfi-info')).map(e => e.className + ': ' + e.textContent)"
_JS_APP = "window.comfyAPI.app.app"


def _js_text(selector: str) -> str:
    return f"(document.querySelector({json.dumps(selector)})?.textContent ?? '')"


def _set_widget(node_type: str, name: str, value: Any) -> str:
    return (f"(() => {{ const n = {_JS_APP}.graph._nodes.find(n => n.type === {json.dumps(node_type)});"
            f" const w = n.widgets.find(w => w.name === {json.dumps(name)}); w.value = {json.dumps(value)};"
            f" w.callback?.(w.value); return true; }})()")


def browser_check(url: str, workflow: Path, out_dir: Path) -> dict[str, Any]:
    """Open the ComfyUI page, load the UI workflow, run it from the browser and read the extension's widgets.

    Returns what was seen (texts, prompt, console) and saves a screenshot; assertions are left to the test.
    """
    result: dict[str, Any] = {"steps": []}
    page = DevToolsPage(load_run_comfy().MiniWebSocket)
    summary = ".emavfi-info.emavfi_summary"
    status = ".emavfi-info.emavfi_status"
    try:
        page.navigate(url)
        page.wait_for("!!(window.comfyAPI?.app?.app?.graph && document.getElementById('emavfi-style')"
                      " && window.LiteGraph?.registered_node_types?.EMAVFI_Interpolate)", timeout=120)
        result["steps"].append("extension loaded")
        data = json.loads(workflow.read_text())
        page.evaluate(f"(async () => {{ await {_JS_APP}.loadGraphData({json.dumps(data)}); return true; }})()")
        result["before_run"] = page.wait_for(f"{_js_text(summary)}.includes('frames out') && {_js_text(summary)}")
        result["loader_status"] = page.wait_for(
            f"!{_js_text(status)}.includes('checking') && {_js_text(status)}", timeout=30)
        result["prompt"] = page.evaluate(f"(async () => (await {_JS_APP}.graphToPrompt()).output)()")
        result["steps"].append("workflow loaded")
        page.evaluate(f"(async () => {{ await {_JS_APP}.queuePrompt(0, 1); return true; }})()")
        result["after_run"] = page.wait_for(
            f"{_js_text(summary)}.startsWith('2 frames in') && {_js_text(summary)}", timeout=180)
        result["steps"].append("ran from the browser")
        page.evaluate(_set_widget("EMAVFI_Interpolate", "multiplier", 8))
        result["multiplier_8"] = page.evaluate(_js_text(summary))
        page.evaluate(_set_widget("EMAVFI_Interpolate", "timesteps", "0.25, 0.5, 0.75"))
        result["timesteps_text"] = page.evaluate(_js_text(summary))
        page.evaluate(_set_widget("EMAVFI_Interpolate", "timesteps", ""))
        page.evaluate(_set_widget("EMAVFI_Interpolate", "multiplier", 4))
        page.evaluate(f"{_JS_APP}.canvas.setDirty(true, true)")
        time.sleep(1.0)
        result["texts"] = page.evaluate(_JS_TEXTS)
        result["screenshot"] = str(page.screenshot(out_dir / "emavfi_ui.png"))
        result["dom_widgets"] = page.evaluate("document.querySelectorAll('.dom-widget .emavfi-info').length")
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with the details
        result["error"] = f"{type(exc).__name__}: {exc}"
        try:
            result["texts"] = page.evaluate(_JS_TEXTS)
            page.screenshot(out_dir / "emavfi_ui_failed.png")
        except Exception:  # noqa: BLE001
            pass
    finally:
        result["console"] = page.console[-50:]
        page.close()
    return result


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Checks run beside a live ComfyUI (see test_comfy_e2e.py).")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("browser-check", help="drive the web extension in headless Chromium")
    check.add_argument("--url", required=True)
    check.add_argument("--workflow", type=Path, required=True)
    check.add_argument("--out-dir", type=Path, required=True)
    check.add_argument("--result", type=Path, required=True)
    sub.add_parser("timed-harness", help="run ../shared/comfyui/run_comfy.py with arrival times of progress "
                   "messages and interrupts (the arguments after timed-harness are the harness's)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["timed-harness"]:
        return timed_harness(argv[1:])
    args = parser.parse_args(argv)
    result = browser_check(args.url, args.workflow, args.out_dir)
    args.result.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "prompt"}, indent=1))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(_main())
