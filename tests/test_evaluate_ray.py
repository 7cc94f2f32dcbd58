"""`evaluate SET ROOT --ray`: two workers of an embedded Ray cluster (127.0.0.1 only) give the one-process scores,
bit for bit: they compute with the driver's torch thread count (emavfi.ray_cluster.worker_threads), as render
workers do."""
from __future__ import annotations

import json

import pytest
import torch

from emavfi import cli
from emavfi.loading import load_model
from emavfi.evaluate.session import Session
from evaluate_helpers import write_ucf
from helpers import TINY, tiny_model

ray = pytest.importorskip("ray", reason="the Ray tests need the optional extra (pip install -r requirements-ray.txt)")
pytest.importorskip("OpenImageIO", reason="evaluate reads frames with OpenImageIO (requirements-cli.txt)")


@pytest.fixture
def three_threads():
    """The driver computes with 3 torch threads on any machine, as on a 3-core one: oneDNN's blocking and the
    rounding of element-wise kernels follow the count, so a worker computing with its own would score differently."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("three_threads")
def test_two_ray_workers_give_the_one_process_scores_exactly_and_resume(tmp_path, monkeypatch):
    state = tiny_model(seed=7).state_dict()
    # Both sides build the model as the CLI does (emavfi.loading: NHWC convolution weights), from the same state.
    monkeypatch.setattr(Session, "load_model", lambda self: load_model(state, variant=TINY))
    monkeypatch.setattr(Session, "load_state", lambda self: ({k: v.clone() for k, v in state.items()}, TINY))
    monkeypatch.setattr("emavfi.evaluate.ray_eval.SHARD_ITEMS", 2)
    write_ucf(tmp_path / "ucf", samples=5, h=128, w=160)  # large enough for 1 and 3 threads to differ
    root = str(tmp_path / "ucf")
    assert cli.main(["evaluate", "ucf101", root, "--json", str(tmp_path / "one.json")]) == 0
    # An earlier interrupted run scored samples 1 and 2: the Ray run keeps them and makes the other three.
    one = json.loads((tmp_path / "one.json").read_text())
    argv = ["evaluate", "ucf101", root, "--ray", "--ray-workers", "2", "--json", str(tmp_path / "two.json")]
    session = Session.from_args(cli.build_parser().parse_args(argv))
    (tmp_path / "two.partial.json").write_text(json.dumps({"run": session.run_settings(),
                                                           "results": {**one, "samples": one["samples"][:2]}}))
    monkeypatch.setattr(Session, "load_model", lambda self: pytest.fail("with --ray the driver loads no model"))
    assert cli.main(argv) == 0
    assert not ray.is_initialized()  # the embedded cluster is shut down after the run
    two = json.loads((tmp_path / "two.json").read_text())
    assert [s["name"] for s in two["samples"]] == [s["name"] for s in one["samples"]]
    assert two["samples"] == one["samples"]  # every figure, to the last bit
    assert two["frames"] == 3 and not (tmp_path / "two.partial.json").exists()
