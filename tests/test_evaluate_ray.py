"""`evaluate SET ROOT --ray`: two workers of an embedded Ray cluster (127.0.0.1 only) give the one-process scores."""
from __future__ import annotations

import json

import pytest

from emavfi import cli
from emavfi.evaluate.session import Session
from evaluate_helpers import write_ucf
from helpers import TINY, tiny_model

ray = pytest.importorskip("ray", reason="the Ray tests need the optional extra (pip install -r requirements-ray.txt)")
pytest.importorskip("OpenImageIO", reason="evaluate reads frames with OpenImageIO (requirements-cli.txt)")


def test_two_ray_workers_give_the_one_process_scores_and_resume(tmp_path, monkeypatch):
    net = tiny_model(seed=7)
    monkeypatch.setattr(Session, "load_model", lambda self: net)
    monkeypatch.setattr(Session, "load_state", lambda self: ({k: v.clone() for k, v in net.state_dict().items()},
                                                             TINY))
    monkeypatch.setattr("emavfi.evaluate.ray_eval.SHARD_ITEMS", 2)
    write_ucf(tmp_path / "ucf", samples=5)
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
    for a, b in zip(one["samples"], two["samples"]):
        assert b["psnr"] == pytest.approx(a["psnr"], abs=1e-3) and b["ssim"] == pytest.approx(a["ssim"], abs=1e-5)
    assert two["frames"] == 3 and not (tmp_path / "two.partial.json").exists()
