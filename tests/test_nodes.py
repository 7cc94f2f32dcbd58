"""The ComfyUI nodes, imported without a ComfyUI server: declarations, frame counts, exact copies, masks, fps,
progress/cancel and every input error. The nodes' V3 schema is ComfyUI's own `comfy_api` (from ../shared/comfyui);
the modules that need a booted ComfyUI are stand-ins here (comfy_helpers.install_standins), and nodes run the way
ComfyUI runs them: `execute` on a locked clone of the class, hidden inputs set on the clone. test_comfy_e2e.py runs
the same nodes inside a real ComfyUI."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

from comfy_helpers import REPO, comfy_source_missing, install_standins, load_pack, remove_standins
from fakehub import FakeHub
from helpers import weight_shapes

# The classic-API declarations before the V3 port, plus the held-region inputs and output appended since (issue 26).
V1_SCHEMA = Path(__file__).with_name("nodes_v1_schema.json")


class NodeCall:
    """Calls one node as ComfyUI's executor does; positional arguments follow the schema's input order."""

    def __init__(self, cls: type):
        self.cls = cls

    def __call__(self, *args: Any, unique_id: str | None = None, prompt: Any = None, **inputs: Any) -> dict:
        from comfy_api.internal import make_locked_method_func
        from comfy_api.v0_0_2 import io

        names = [i.id for i in self.cls.GET_SCHEMA().inputs]
        inputs.update(zip(names, args))
        clone = self.cls.PREPARE_CLASS_CLONE({io.Hidden.unique_id: unique_id, io.Hidden.prompt: prompt})
        out = make_locked_method_func(self.cls, self.cls.FUNCTION, clone)(**inputs)
        return {"result": tuple(out.args), "ui": out.ui}

    run = load = __call__


class Pack:
    """The pack as ComfyUI loads it: the package, its extension (via comfy_entrypoint) and the node classes it lists."""

    def __init__(self, module: Any):
        self.module, self.emavfi, self.nodes = module, module.emavfi, module.nodes
        self.extension = asyncio.run(module.comfy_entrypoint())
        self.state = self.extension.state
        listed = asyncio.run(self.extension.get_node_list())
        self.classes = {cls.GET_SCHEMA().node_id: cls for cls in listed}

    def node(self, node_id: str) -> NodeCall:
        return NodeCall(self.classes[node_id])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if comfy_source_missing():
        pytest.skip(comfy_source_missing())
    state = install_standins(tmp_path_factory.mktemp("models"))
    pack = Pack(load_pack())
    yield pack, state
    remove_standins()  # leave no stand-ins (and no pack bound to them) behind for other test modules


@pytest.fixture(autouse=True)
def _reset(env):
    env[1].reset()
    yield
    env[1].reset()


def wrap(pack, arbitrary_t: bool = True, seed: int = 0):
    """A tiny random network as the EMAVFI_MODEL value the loader would output."""
    lib = pack.emavfi
    torch.manual_seed(seed)
    network = lib.build_model(lib.ModelConfig(width=4, depths=(1, 1, 1, 2, 2), arbitrary_t=arbitrary_t)).eval()
    return pack.nodes.model.EmaVfiModel.create(network, None, torch.float32, torch.device("cpu"),
                                               torch.device("cpu"), "tiny test model")


def clip(n: int = 3, h: int = 40, w: int = 56, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """[N,H,W,C] float32 frames in 0..1: a drifting random texture (ComfyUI IMAGE layout)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, h, w, channels, generator=g)
    frames = [torch.roll(base, shifts=(i, 2 * i), dims=(1, 2)) for i in range(n)]
    return torch.cat(frames).contiguous()


def interpolate(pack, images, model=None, **kwargs):
    kwargs.setdefault("multiplier", 2)
    kwargs.setdefault("mode", "direct")
    out = pack.node("EMAVFI_Interpolate").run(images, model if model is not None else wrap(pack), unique_id="7",
                                              **kwargs)
    return out["result"], out["ui"]["emavfi"][0]


def declared(cls) -> dict:
    """A node's declaration as /object_info serves it, in the shape tests/nodes_v1_schema.json records."""
    info = cls.GET_NODE_INFO_V1()

    def inputs(group: str) -> dict:
        # V3 also says "multiselect": false (combos) and "multiline": false (strings) aloud: the classic defaults
        return {name: [kind, {k: v for k, v in options.items() if (k, v) not in (("multiselect", False),
                                                                             ("multiline", False))}]
                for name, (kind, options) in info["input"].get(group, {}).items()}

    return {"display_name": info["display_name"], "category": info["category"], "description": info["description"],
            "required": inputs("required"), "optional": inputs("optional"),
            "hidden": sorted(v[0] for v in info["input"].get("hidden", {}).values()),
            "outputs": [list(o) for o in zip(info["output"], info["output_name"], info["output_tooltips"])],
            "output_node": info["output_node"]}


# ----------------------------------------------------------------------------------------------- declarations

def test_registration_through_comfy_entrypoint(env):
    pack, _ = env
    assert not hasattr(pack.module, "NODE_CLASS_MAPPINGS")  # else ComfyUI ignores comfy_entrypoint
    assert pack.nodes.spec.API_VERSION == "0.0.2" and "comfy_api.v0_0_2" in (REPO / "nodes" / "spec.py").read_text()
    assert set(pack.classes) == {"EMAVFI_LoadModel", "EMAVFI_Interpolate", "EMAVFI_Retime"}
    assert (REPO / pack.module.WEB_DIRECTORY / "emavfi.js").is_file()
    for cls in pack.classes.values():
        assert cls.state is pack.state and issubclass(cls, pack.nodes.state.PackNode)
    with pytest.raises(RuntimeError, match="not bound to a PackState"):
        pack.nodes.state.PackNode.pack()


@pytest.mark.parametrize("node_id", ["EMAVFI_LoadModel", "EMAVFI_Interpolate", "EMAVFI_Retime"])
def test_declarations_unchanged_from_the_classic_api(env, node_id):
    """Same ids, display names, inputs (names, order, types, defaults, ranges, tooltips), hidden inputs and outputs
    as the classic-API nodes declared, so every saved workflow (UI and API format) loads unchanged. Added since,
    after all the others (and recorded in the file): the held-region inputs and the overlay_mask output."""
    pack, _ = env
    before = json.loads(V1_SCHEMA.read_text())[node_id]
    now = declared(pack.classes[node_id])
    assert now == before
    assert list(now["required"]) == list(before["required"]) and list(now["optional"]) == list(before["optional"])


@pytest.mark.parametrize("node_id", ["EMAVFI_LoadModel", "EMAVFI_Interpolate", "EMAVFI_Retime"])
def test_execute_takes_every_input_with_matching_defaults(env, node_id):
    pack, _ = env
    cls = pack.classes[node_id]
    types = cls.INPUT_TYPES(include_hidden=False)
    params = inspect.signature(cls.execute).parameters
    for group in ("required", "optional"):
        for name, (kind, options) in types.get(group, {}).items():
            assert isinstance(options.get("tooltip"), str) and len(options["tooltip"]) > 10, name
            assert name in params, f"{node_id}.execute does not take input {name!r}"
            if kind == "COMBO":
                assert options["options"] and options.get("default") in options["options"], name
            if group == "optional":
                default = params[name].default
                assert default is not inspect.Parameter.empty, f"optional input {name!r} needs a default"
                if "default" in options:
                    assert default == options["default"], f"{name}: execute default {default!r} != widget default"
            else:
                assert params[name].default is inspect.Parameter.empty or "default" in options
    assert set(params) == {n for group in ("required", "optional") for n in types.get(group, {})}


def test_execute_runs_on_a_locked_class(env):
    """ComfyUI runs execute on a locked clone (setting a class attribute there raises); the nodes run that way here
    (NodeCall), and the hidden inputs arrive on the clone."""
    pack, _ = env
    from comfy_api.internal import make_locked_method_func

    cls = pack.classes["EMAVFI_Interpolate"]
    clone = cls.PREPARE_CLASS_CLONE({"UNIQUE_ID": "12"})
    assert clone.hidden.unique_id == "12" and cls.hidden is None
    assert make_locked_method_func(cls, "validate_inputs", clone)(timesteps="0.5") is True

    class Probe(pack.nodes.state.PackNode):
        @classmethod
        def execute(cls):
            cls.note = 1

    with pytest.raises(AttributeError, match="Cannot modify class attribute"):
        make_locked_method_func(Probe, "execute", Probe)()


# ----------------------------------------------------------------------------------------------- interpolate

@pytest.mark.parametrize("multiplier", [2, 3, 4])
def test_frame_count_exact_copies_and_fps(env, multiplier):
    pack, state = env
    images = clip(n=3)
    before = images.clone()
    (out, fps, mask, overlays), ui = interpolate(pack, images, multiplier=multiplier, fps=24.0)
    assert out.shape == ((3 - 1) * multiplier + 1, 40, 56, 3)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous()
    for k in range(3):
        assert torch.equal(out[k * multiplier], images[k]), f"source frame {k} changed"
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.equal(images, before), "the input batch was modified"
    assert fps == pytest.approx(24.0 * multiplier)
    assert mask.shape == (out.shape[0], 64, 64) and not mask.any()
    assert overlays.shape == (3, 40, 56) and not overlays.any()  # protect_overlays is off: zeros per input frame
    assert ui["frames_in"] == 3 and ui["frames_out"] == out.shape[0] and ui["fps_out"] == fps
    # ProgressBar: total = output frames, increasing, ends full
    values = [v for v, _ in state.progress]
    assert values == sorted(values) and state.progress[-1] == (out.shape[0], out.shape[0])


def test_timesteps_string_replaces_multiplier(env):
    pack, _ = env
    images = clip(n=2)
    (out, fps, _, _), ui = interpolate(pack, images, multiplier=2, timesteps="0.25, 0.5, 0.75", fps=10.0)
    assert out.shape[0] == 5 and fps == pytest.approx(40.0)
    assert torch.equal(out[0], images[0]) and torch.equal(out[4], images[1])
    (out3, _, _, _), _ = interpolate(pack, images, timesteps="1/3, 2/3")
    assert out3.shape[0] == 4
    # the same t from the multiplier and from the text give the same frame
    (out_m, _, _, _), _ = interpolate(pack, images, multiplier=4)
    assert torch.allclose(out_m, out, atol=1e-6)


def test_ntsc_fps_and_unknown_fps(env):
    pack, _ = env
    (_, fps, _, _), _ = interpolate(pack, clip(n=2), multiplier=2, fps=23.976)
    assert fps == pytest.approx(48000 / 1001, abs=1e-9)
    (_, fps0, _, _), _ = interpolate(pack, clip(n=2), multiplier=2, fps=0.0)
    assert fps0 == 0.0


@pytest.mark.parametrize("text, message", [
    ("0.5, abc", "numbers such as 0.25"),
    ("1.5", "in (0, 1)"),
    ("0.7, 0.3", "increasing"),
    ("0", "in (0, 1)"),
])
def test_bad_timesteps(env, text, message):
    pack, _ = env
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        interpolate(pack, clip(n=2), timesteps=text)
    assert repr(text) in str(info.value)
    checked = pack.classes["EMAVFI_Interpolate"].validate_inputs(timesteps=text)
    assert isinstance(checked, str) and message in checked


def test_validate_inputs_accepts_good_and_linked_values(env):
    cls = env[0].classes["EMAVFI_Interpolate"]
    assert cls.validate_inputs(timesteps="") is True
    assert cls.validate_inputs(timesteps="0.25, 0.5") is True
    assert cls.validate_inputs(timesteps="1/3; 2/3") is True
    assert cls.validate_inputs(timesteps=None) is True  # linked: checked at run time
    assert list(inspect.signature(cls.validate_inputs).parameters) == ["timesteps"]  # ComfyUI range-checks the rest


def test_recursive_needs_power_of_two(env):
    pack, _ = env
    with pytest.raises(ValueError, match="power-of-two multiplier \\(2, 4, 8, 16\\); got 3"):
        interpolate(pack, clip(n=2), multiplier=3, mode="recursive")
    with pytest.raises(ValueError, match="from 2 to 16"):
        interpolate(pack, clip(n=2), multiplier=17)
    with pytest.raises(ValueError, match="k/2\\^d"):
        interpolate(pack, clip(n=2), mode="recursive", timesteps="1/3, 2/3")


@pytest.mark.filterwarnings("ignore:.*t = 0.5 only")
def test_recursive_mode_runs_any_variant(env, caplog):
    pack, _ = env
    images = clip(n=3)
    model = wrap(pack, arbitrary_t=False)
    with caplog.at_level(logging.WARNING, logger="emavfi"):
        (out, _, _, _), ui = interpolate(pack, images, model, multiplier=4, mode="recursive")
    assert out.shape[0] == 9 and ui["warning"] is None
    assert all(torch.equal(out[4 * k], images[k]) for k in range(3))
    assert not [r for r in caplog.records if "t = 0.5 only" in r.getMessage()]


@pytest.mark.filterwarnings("ignore:.*t = 0.5 only")  # the library's own warning; the node's is checked
def test_non_t_model_in_direct_mode_warns(env, caplog):
    pack, _ = env
    model = wrap(pack, arbitrary_t=False)
    with caplog.at_level(logging.WARNING, logger="emavfi"):
        _, ui = interpolate(pack, clip(n=2), model, multiplier=4, mode="direct")
    assert "t = 0.5 only" in ui["warning"]
    assert any("t = 0.5 only" in r.getMessage() for r in caplog.records)
    _, ui2 = interpolate(pack, clip(n=2), model, multiplier=2, mode="direct")
    assert ui2["warning"] is None  # t = 0.5 is what it was trained for


def test_one_frame_is_an_error(env):
    pack, _ = env
    with pytest.raises(ValueError, match="at least 2 frames.*got 1"):
        interpolate(pack, clip(n=1))


def test_nan_and_bad_layout_are_errors(env):
    pack, _ = env
    images = clip(n=3)
    images[1, 5, 5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf.*frames \[1\]"):
        interpolate(pack, images)
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\]"):
        interpolate(pack, clip(n=3).movedim(-1, 1))  # NCHW by mistake
    with pytest.raises(ValueError, match="Load EMA-VFI Model"):
        interpolate(pack, clip(n=2), model=torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="scale must be one of"):
        interpolate(pack, clip(n=2), scale="0.3")


def test_mask_is_interpolated_alongside(env):
    pack, _ = env
    images = clip(n=3)
    mask = torch.zeros(3, 40, 56)
    mask[:, 10:30, 10 + torch.arange(3)] = 1.0  # something to warp
    mask[1, :, :5] = 0.25
    (out, _, out_mask, _), _ = interpolate(pack, images, multiplier=2, mask=mask)
    assert out.shape == (5, 40, 56, 3) and out_mask.shape == (5, 40, 56)
    assert out_mask.dtype == torch.float32 and out_mask.is_contiguous() and out.is_contiguous()
    for k in range(3):
        assert torch.equal(out_mask[2 * k], mask[k]) and torch.equal(out[2 * k], images[k])
    assert out_mask.min() >= 0 and out_mask.max() <= 1 and out_mask[1].sum() > 0
    # the RGB result does not depend on whether a mask rides along
    (plain, _, _, _), _ = interpolate(pack, images, multiplier=2)
    assert torch.allclose(plain, out, atol=1e-5)


@pytest.mark.parametrize("mask_shape, message", [
    ((2, 40, 56), "mask is \\[2, 40, 56\\].*images are 3 frames of 40x56"),
    ((3, 20, 28), "mask is \\[3, 20, 28\\]"),
    ((1, 64, 64), "does not match"),
])
def test_mask_must_match_images(env, mask_shape, message):
    pack, _ = env
    with pytest.raises(ValueError, match=message):
        interpolate(pack, clip(n=3), mask=torch.zeros(mask_shape))


def test_rgba_images_keep_alpha(env):
    pack, _ = env
    images = clip(n=2, channels=4)
    (out, _, _, _), _ = interpolate(pack, images, multiplier=2)
    assert out.shape == (3, 40, 56, 4)
    assert torch.equal(out[0], images[0]) and torch.equal(out[2], images[1])


def test_scene_cut_repeats_the_nearer_frame(env):
    pack, _ = env
    similar = clip(n=2, seed=1)
    other = torch.zeros(1, 40, 56, 3)
    other[..., 2] = 0.9  # a blue frame: another scene
    images = torch.cat([similar, other])
    (out, _, _, _), ui = interpolate(pack, images, multiplier=4)  # the default sensitivity
    assert ui["cuts"] == [1]
    # pair 1 is a cut: t = 0.25, 0.5 repeat frame 1, t = 0.75 repeats frame 2
    assert torch.equal(out[5], images[1]) and torch.equal(out[6], images[1]) and torch.equal(out[7], images[2])
    assert not torch.equal(out[2], images[0]) and not torch.equal(out[2], images[1])  # pair 0 interpolated
    _, ui_off = interpolate(pack, images, multiplier=4, scene_cut_threshold=0.0)
    assert ui_off["cuts"] == []


@pytest.mark.filterwarnings("ignore:.*t = 0.5 only")
@pytest.mark.parametrize("arbitrary_t, mode, depth", [(False, "auto", 2), (True, "recursive", 2), (True, "auto", None),
                                                      (False, "direct", None)])
def test_nodes_pass_the_schedule_as_it_is(env, monkeypatch, arbitrary_t, mode, depth):
    """The node runs the Schedule make_schedule decided (bisection depth included) through the one engine."""
    pack, _ = env
    lib = pack.emavfi
    seen, made = [], []
    original = lib.clips.render_clip

    def spy(network, frames, plan, **kwargs):
        seen.append(plan)
        backend = lib.runner.backend_for(network, kwargs["tta"], kwargs["scale"])
        kwargs["backend"] = lambda *args: made.append(tuple(args[3])) or backend(*args)
        return original(network, frames, plan, **kwargs)

    monkeypatch.setattr(lib.clips, "render_clip", spy)
    images, model = clip(n=3), wrap(pack, arbitrary_t=arbitrary_t)
    (out, _, _, _), _ = interpolate(pack, images, model, multiplier=4, mode=mode)
    expected = lib.schedule.make_schedule(pack.nodes.interpolate.make_request(4, mode, fps=24.0), 3, arbitrary_t)
    assert seen == [expected] and seen[0].bisection_depth == depth
    assert set(made) == ({(0.5,)} if depth else {(0.25, 0.5, 0.75)})
    library = original(model.network, images.movedim(-1, 1), expected, cut_threshold=2.5).frames
    assert torch.equal(out, library.movedim(1, -1))


def test_cancel_stops_within_one_chunk(env):
    pack, state = env
    images = clip(n=9)
    state.interrupt_after_updates = 1  # "Cancel" pressed while the first chunk is reported
    with pytest.raises(Exception) as info:
        interpolate(pack, images, multiplier=2, chunk_size=1)
    assert type(info.value).__name__ == "InterruptProcessingException"
    assert len(state.progress) == 1 and state.progress[0][0] <= 3  # one pair (1 new frame + copies) was done


def test_chunk_size_does_not_change_results(env):
    pack, _ = env
    images = clip(n=4)
    (auto, _, _, _), _ = interpolate(pack, images, multiplier=3, chunk_size=0)
    (one, _, _, _), _ = interpolate(pack, images, multiplier=3, chunk_size=1)
    assert torch.allclose(auto, one, atol=1e-5)


# ----------------------------------------------------------------------------------------------- retime

@pytest.mark.filterwarnings("ignore:.*t = 0.5 only")
def test_retime_counts_fps_and_report(env):
    pack, _ = env
    images = clip(n=5)
    node = pack.node("EMAVFI_Retime")
    result = node.run(images, wrap(pack), source_fps=24.0, target_fps=60.0, scene_cut_threshold=0.0)
    out, fps, report, overlays = result["result"]
    assert out.shape[0] == 4 * 60 // 24 + 1  # 11 frames: k * 0.4 source frames for k = 0..10
    assert fps == 60.0
    assert torch.equal(out[0], images[0]) and torch.equal(out[5], images[2]) and torch.equal(out[10], images[4])
    assert "5 frames at 24 fps -> 11 frames at 60 fps" in report and "detection off" in report
    assert overlays.shape == (5, 40, 56) and not overlays.any()
    ui = result["ui"]["emavfi"][0]
    assert ui["frames_out"] == 11 and ui["report"] == report
    # a t = 0.5-only model gets there by bisection (t snapped to 1/16)
    out_non_t, _, _, _ = node.run(images, wrap(pack, arbitrary_t=False), source_fps=24.0, target_fps=60.0)["result"]
    assert out_non_t.shape == out.shape


def test_retime_reports_cuts(env):
    pack, _ = env
    other = torch.zeros(2, 40, 56, 3)
    other[..., 0] = 0.8
    images = torch.cat([clip(n=2, seed=3), other])
    node = pack.node("EMAVFI_Retime")
    _, _, report, _ = node.run(images, wrap(pack), source_fps=10.0, target_fps=20.0)["result"]
    assert "1 scene cut(s) between frames 1|2" in report


# ----------------------------------------------------------------------------------------------- loader

@pytest.fixture(scope="module")
def small_t_weights(env, tmp_path_factory):
    """Random ours_small_t weights with the official key names (fp16 to keep the file small)."""
    pack, _ = env
    lib = pack.emavfi
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(shape, generator=g) * 0.02).half()
             for k, shape in weight_shapes("ours_small_t", lib).items()}
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    lib.weights.save_safetensors(state, path, "ours_small_t")
    return path


def test_loader_local_file_cached_and_listed(env, small_t_weights):
    pack, state = env
    folder = Path(state.models_dir) / "frame_interpolation" / "emavfi"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "my_small_t.safetensors"
    target.write_bytes(small_t_weights.read_bytes())
    choices = pack.classes["EMAVFI_LoadModel"].INPUT_TYPES()["optional"]["weights"][1]["options"]
    assert choices[0] == "(download)" and "my_small_t.safetensors" in choices
    node = pack.node("EMAVFI_LoadModel")
    first = node.load("ours_small_t", "auto", "cpu", weights="my_small_t.safetensors")
    model = first["result"][0]
    assert model.variant == "ours_small_t" and model.dtype == torch.float32 and model.arbitrary_t
    assert not model.network.training
    again = node.load("ours_small_t", "auto", "cpu", weights="my_small_t.safetensors")["result"][0]
    assert again is model  # reused, not loaded twice
    half = node.load("ours_small_t", "fp16", "cpu", weights="my_small_t.safetensors")["result"][0]
    assert half is not model and next(half.network.parameters()).dtype == torch.float16
    with pytest.raises(ValueError, match="do not match variant 'ours_t'"):
        node.load("ours_t", "auto", "cpu", weights="my_small_t.safetensors")
    # the model runs end to end through the interpolate node
    (out, _, _, _), _ = interpolate(pack, clip(n=2, h=32, w=32), model, multiplier=2)
    assert out.shape == (3, 32, 32, 3)
    target.unlink()


def test_loader_downloads_from_hub_with_progress(env, small_t_weights, monkeypatch):
    pack, state = env
    loader = pack.nodes.loader
    source = pack.emavfi.hub.DEFAULT_SOURCES["ours_small_t"]
    with FakeHub() as hub:
        hub.add_repo(source.repo_id, {source.filename: small_t_weights.read_bytes()})
        hub.add_repo("someone/other-small", {"model.safetensors": small_t_weights.read_bytes()}, branch="v2")
        monkeypatch.setenv("EMAVFI_HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        assert loader.weights_status("ours_small_t", "", pack.state.downloads)["state"] == "missing"
        node = pack.node("EMAVFI_LoadModel")
        state.interrupt_after_updates = 1  # Cancel pressed as the download starts
        with pytest.raises(Exception) as info:
            node.load("ours_small_t", "auto", "cpu")
        assert type(info.value).__name__ == "InterruptProcessingException"
        # nothing half-downloaded kept
        assert loader.weights_status("ours_small_t", "", pack.state.downloads)["state"] == "missing"
        assert not pack.state.downloads
        state.reset()
        interrupted_downloads = hub.body_downloads()
        result = node.load("ours_small_t", "auto", "cpu")
        assert result["result"][0].variant == "ours_small_t"
        assert state.progress and state.progress[-1] == (100, 100)  # download progress in percent
        status = loader.weights_status("ours_small_t", "", pack.state.downloads)
        assert status["state"] == "cached"
        assert Path(status["path"]).is_relative_to(Path(state.models_dir) / "frame_interpolation" / "emavfi")
        # the Hub cache is not offered as a local file
        assert pack.classes["EMAVFI_LoadModel"].INPUT_TYPES()["optional"]["weights"][1]["options"] == ["(download)"]
        other = node.load("ours_small_t", "auto", "cpu", repo="someone/other-small@v2")["result"][0]
        assert other.source != result["result"][0].source
        assert hub.body_downloads() == interrupted_downloads + 2  # one per repo, reused afterwards
    with pytest.raises(ValueError, match="repo override 'not a repo'"):
        node.load("ours_small_t", "auto", "cpu", repo="not a repo")


def test_device_and_precision_choices(env):
    loader = env[0].nodes.loader
    cpu = torch.device("cpu")
    assert loader.node_dtype("auto", cpu) == torch.float32
    with pytest.raises(ValueError, match="unknown precision"):
        loader.node_dtype("fp8", cpu)
    assert loader.node_device("auto") == cpu
    assert loader.device_choices()[:2] == ["auto", "cpu"]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            loader.node_device("cuda:0")
    with pytest.raises(ValueError, match="unknown variant"):
        loader.weights_status("ours_huge")


# /proc/cpuinfo flags of a CPU without native bf16 and of one with it (as in test_precision.py).
AMD_ZEN3 = {"sse2", "avx", "avx2", "fma", "f16c"}
AMD_ZEN4 = AMD_ZEN3 | {"avx512f", "avx512bw", "avx512_bf16"}


def test_bf16_on_a_cpu_without_native_bf16_is_refused_as_the_cli_refuses_it(env, monkeypatch):
    """The loader takes the library's decision (emavfi.devices.run_dtype) and its line, before any weights are
    read; the CPU's flags are given as each kind of CPU reports them, so both branches run on any machine."""
    pack = env[0]
    loader, devices, cpu = pack.nodes.loader, pack.emavfi.devices, torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(AMD_ZEN3))
    cli_line = devices.cpu_bf16_problem(AMD_ZEN3)
    with pytest.raises(ValueError) as refused:
        loader.node_dtype("bf16", cpu)
    assert str(refused.value) == cli_line.replace("--precision", "precision") and "\n" not in str(refused.value)
    assert "native bf16" in str(refused.value) and "use precision fp32 or auto" in str(refused.value)
    with pytest.raises(pack.emavfi.errors.SettingsError, match=re.escape(cli_line)):
        devices.run_dtype("bf16", cpu)  # what the CLI says (exit code 2)
    with pytest.raises(ValueError, match="needs native bf16"):  # the node refuses before it resolves any weights
        pack.node("EMAVFI_LoadModel").load("ours_small_t", "bf16", "cpu", weights="no-such-file.safetensors")
    assert loader.node_dtype("fp32", cpu) == torch.float32 == loader.node_dtype("auto", cpu)
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(AMD_ZEN4))
    assert loader.node_dtype("bf16", cpu) == torch.bfloat16


def test_weights_folder_honours_extra_model_paths(env):
    pack, state = env
    import folder_paths

    folder = pack.nodes.weights_folder
    default = str(Path(state.models_dir) / "frame_interpolation" / "emavfi")
    saved = folder_paths.folder_names_and_paths.pop("emavfi", None)
    try:
        folder_paths.add_model_folder_path("emavfi", "/extra/emavfi")  # what extra_model_paths.yaml does first
        folder.register()
        assert folder_paths.get_folder_paths("emavfi") == ["/extra/emavfi", default]
        assert ".safetensors" in folder_paths.folder_names_and_paths["emavfi"][1]
        assert folder.download_dir() == "/extra/emavfi"
    finally:
        folder_paths.folder_names_and_paths.pop("emavfi", None)
        if saved is not None:
            folder_paths.folder_names_and_paths["emavfi"] = saved
    assert not Path(default).exists() or any(Path(default).iterdir()), "the folder is not created at import"


def test_widgets_make_the_library_request(env):
    make = env[0].nodes.interpolate.make_request
    assert make(4, "direct").per_pair == (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4))
    assert make(4, "recursive").method == "bisection" and make(4, "auto").method == "auto"
    assert make(2, "direct", "0.1, 0.2, 0.3").per_pair == (Fraction(1, 10), Fraction(1, 5), Fraction(3, 10))
    with pytest.raises(ValueError, match="mode must be one of auto, direct, recursive"):
        make(2, "fast")


def test_cli_and_retime_node_give_the_same_frames_for_a_t05_only_model(env, tmp_path, monkeypatch):
    """One bisection policy: 24 -> 60 fps with `ours_small` is the same in ComfyUI and on the command line."""
    oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO")
    import numpy as np
    from emavfi import cli, loading

    pack, _ = env
    model = wrap(pack, arbitrary_t=False)
    source = (clip(n=4, h=32, w=48) * 255).round().to(torch.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(source):
        assert oiio.ImageBuf(frame.numpy()).write(str(folder / f"f{i}.png"))
    node = pack.node("EMAVFI_Retime")
    images = source.float() / 255
    node_out = node.run(images, model, source_fps=24.0, target_fps=60.0, scene_cut_threshold=0.0)["result"][0]

    monkeypatch.setattr(loading, "load_model_for", lambda job, state=None, progress=None: model.network)
    assert cli.main(["interpolate", str(folder), "-o", str(tmp_path / "out"), "--variant", "ours_small",
                     "--source-fps", "24", "--fps", "60", "--cut-threshold", "0", "--device", "cpu"]) == 0
    files = sorted((tmp_path / "out").glob("frame_*.png"))
    cli_out = np.stack([oiio.ImageBuf(str(p)).get_pixels(oiio.UINT8) for p in files])
    assert cli_out.shape[0] == node_out.shape[0] == 8
    assert np.array_equal(cli_out, np.rint(node_out.numpy() * 255).astype(np.uint8))


# ----------------------------------------------------------------------------------------------- dedupe

def _on_twos(n_drawings: int = 5) -> tuple[torch.Tensor, list[int]]:
    """A pan over scikit-image's astronaut drawn on twos, ComfyUI layout [N,H,W,C], with its held frames."""
    cut_dataset = pytest.importorskip("benchmarks.cut_dataset", reason="the clip is rendered from skimage photos")
    photo = cut_dataset.photos()["astronaut"]
    cx, cy = photo.shape[-1] / 2, photo.shape[-2] / 2
    drawings = cut_dataset.render(photo, cut_dataset.track(cut_dataset.View(cx, cy, 1.3), n_drawings, dx=3.0))
    frames = drawings[:, :, 16:56, 24:80].repeat_interleave(2, 0)
    held = list(range(1, 2 * n_drawings - 1, 2))  # the repeats, not the last frame (it ends the timeline)
    return frames.movedim(1, -1).contiguous(), held


@pytest.mark.parametrize("node_id", ["EMAVFI_Interpolate", "EMAVFI_Retime"])
def test_dedupe_on_twos_gives_the_library_frames_and_reports_holds(env, node_id, caplog):
    pack, _ = env
    caplog.set_level(logging.INFO)
    lib = pack.emavfi
    images, held = _on_twos()
    model = wrap(pack)
    node = pack.node(node_id)
    if node_id == "EMAVFI_Interpolate":
        request = lib.schedule.Request(multiplier=2, source_fps=Fraction(24))
        out = node.run(images, model, multiplier=2, mode="direct", fps=24.0, dedupe=True, unique_id="3")
    else:
        request = lib.schedule.Request(target_fps=Fraction(60), source_fps=Fraction(24))
        out = node.run(images, model, source_fps=24.0, target_fps=60.0, dedupe=True, unique_id="3")
    frames, ui = out["result"][0], out["ui"]["emavfi"][0]
    timeline = lib.dedupe.held_timeline(images.movedim(-1, 1), images.shape[0], request, True, threshold=None,
                                        cut_threshold=lib.cuts.DEFAULT_CUT_THRESHOLD)
    assert timeline.held == held and ui["held"] == held
    kept = images.movedim(-1, 1)[timeline.kept]
    library = lib.clips.render_clip(model.network, kept, timeline.schedule, cut_threshold=lib.cuts.DEFAULT_CUT_THRESHOLD)
    assert torch.equal(frames, library.frames.movedim(1, -1))
    assert frames.shape[0] == (2 * (images.shape[0] - 1) + 1 if node_id == "EMAVFI_Interpolate" else 23)
    text = f"{len(held)} held frame(s) dropped (dedupe)"
    assert text in (ui["report"] if node_id == "EMAVFI_Retime" else caplog.text)
    plain = node.run(images, model, **({"multiplier": 2, "mode": "direct"} if node_id == "EMAVFI_Interpolate"
                                       else {"source_fps": 24.0, "target_fps": 60.0}))["result"][0]
    assert plain.shape == frames.shape and not torch.equal(plain, frames)  # off by default: old workflows unchanged


def test_dedupe_reports_cuts_in_input_numbering(env):
    pack, _ = env
    images, _ = _on_twos(4)
    other = torch.zeros(4, *images.shape[1:])
    other[..., 2] = 0.9  # a blue shot after the cut, held for 4 frames
    clip_ = torch.cat([images, other])
    out = interpolate(pack, clip_, dedupe=True, fps=24.0)[1]
    assert out["cuts"] == [7]  # between input frames 7 and 8, whatever was dropped before it
    assert 7 not in out["held"] and out["held"][-2:] == [9, 10]


def test_dedupe_bad_values_are_one_line_errors(env):
    pack, _ = env
    with pytest.raises(ValueError, match="EMA-VFI Interpolate: .*timesteps"):
        interpolate(pack, clip(n=3), timesteps="0.5", dedupe=True)
    with pytest.raises(ValueError, match="EMA-VFI Interpolate: dedupe threshold"):
        interpolate(pack, clip(n=3), dedupe=True, dedupe_threshold=-1.0)
