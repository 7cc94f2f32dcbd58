"""Fine-tuning on an embedded Ray cluster (Ray Train, gloo, 2 CPUs, 127.0.0.1 only): two workers sharing the
global batch give the loss curve and weights of the one-process run (one worker), within float tolerance."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emavfi import ray_cluster
from emavfi.config import ModelConfig
from emavfi.train.checkpoint import read_log
from emavfi.train.options import FinetuneOptions
from emavfi.train.run import finetune
from finetune_footage import dataset
from helpers import TINY

ray = pytest.importorskip("ray", reason="needs the optional Ray extra (pip install -r requirements-ray.txt)")
pytest.importorskip("ray.train.torch", reason="needs Ray Train (pip install -r requirements-ray.txt)")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.usefixtures("one_thread")
CFG = ModelConfig(width=TINY.width, depths=TINY.depths, arbitrary_t=True)


def _addresses_in_use(stop: threading.Event, found: set[str]) -> None:
    """Every local/remote IP address of the sockets of this process and its descendants, until `stop`."""
    me = psutil.Process()
    while not stop.is_set():
        pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
        for conn in psutil.net_connections(kind="inet"):
            if conn.pid in pids:
                found.update(a.ip for a in (conn.laddr, conn.raddr) if a)
        time.sleep(0.2)


def test_two_ray_workers_follow_the_one_process_loss_curve(tmp_path):
    data = dataset(tmp_path / "clips", 10, 72, 80, shots=2)
    options = dict(data=(str(data),), steps=4, batch=2, crop=64, lr=2e-3, device="cpu")
    alone = tmp_path / "alone"
    finetune(FinetuneOptions(output=str(alone), **options), config=CFG)

    assert not ray.is_initialized()
    ray_cluster.start_local(num_cpus=2)
    stop, found = threading.Event(), set()
    watcher = threading.Thread(target=_addresses_in_use, args=(stop, found), daemon=True)
    watcher.start()
    try:
        shared = tmp_path / "ray2"
        outcome = finetune(FinetuneOptions(output=str(shared), **options), config=CFG, ray="local", ray_workers=2)
    finally:
        stop.set()
        watcher.join()
        ray.shutdown()
    assert outcome.step == 4 and not outcome.interrupted
    one, two = read_log(alone), read_log(shared)
    assert [r["step"] for r in two] == [0, 1, 2, 3]
    assert [r["lr"] for r in two] == [r["lr"] for r in one]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    a, b = (load_file(str(folder / "final.safetensors")) for folder in (alone, shared))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert found and found <= {"127.0.0.1", "::ffff:127.0.0.1"}, f"sockets beyond the loopback: {found}"
