"""Where the Ray cluster comes from: this process's own Ray, an embedded one on 127.0.0.1 only, or a joined one.

`probe` fails fast (one line) where nothing listens at an address, instead of ray.init's minutes of waiting;
`start_local` keeps every Ray server and socket on the loopback. `import ray` happens only inside the functions here
and in emavfi.ray_private (what of Ray's private API this needs).
"""
from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from . import ray_private
from .errors import DistributedError, one_line  # both also for distributed.py

RAY_MISSING = "Ray is an optional extra: pip install -r requirements-ray.txt"


def import_ray() -> Any:
    """The ray module, or DistributedError saying how to install the extra."""
    try:
        import ray
    except ImportError:
        raise DistributedError(RAY_MISSING) from None
    return ray


CONNECT_TIMEOUT_S = 5.0
LOCALHOST = "127.0.0.1"
# Clusters on this machine only. Ray resolves "127.0.0.1" as a node address to the machine's outward IP and
# binds its servers there unless its multi-node mode is off; these variables (read by the processes Ray starts,
# and inherited by theirs) keep every socket on the loopback, and turn usage reporting off.
_ERROR_LINE = re.compile(r"^(?:\w+\.)*(\w*(?:Error|Exception|Interrupt|Cancelled))(?:\(\w*\))?: (.+)$")
_LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def connection(ray: Any, address: str | None, workers: int | None, cpus_per_worker: int) -> Iterator[None]:
    """Ray for the duration of a render: reuse this process's, start a local one, or join `address`."""
    target = probe(address) if address is not None else None
    if ray.is_initialized():
        yield
        return
    if target is None:
        start_local(num_cpus=workers * cpus_per_worker if workers else (os.cpu_count() or 1))
    else:
        # A driver joining a cluster on this machine must call itself 127.0.0.1 too, or Ray waits for a raylet
        # at the machine's outward address forever.
        loopback = not address.startswith("ray://") and _is_loopback(target.rpartition(":")[0])
        try:
            with _loopback_only(ray, loopback):
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                         **({"_node_ip_address": LOCALHOST} if loopback else {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DistributedError(f"cannot join the Ray cluster at {address}: {one_line(str(exc))}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _loopback_only(ray: Any, active: bool = True) -> Iterator[None]:
    """While Ray starts (or joins) a cluster on this machine: every Ray address and socket on 127.0.0.1."""
    if not active:
        yield
        return
    constants = ray_private.ray_constants(ray)
    saved_env = {name: os.environ.get(name) for name in _LOCAL_ONLY_ENV}
    saved_cluster_mode = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ.update(_LOCAL_ONLY_ENV)
    # Ray read that variable when it was imported; its copy here decides how this process resolves 127.0.0.1.
    if saved_cluster_mode is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_cluster_mode is not None:
            constants.ENABLE_RAY_CLUSTER = saved_cluster_mode
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _is_loopback(host: str) -> bool:
    return host.strip("[]") in ("localhost", "::1") or host.startswith("127.")


def start_local(*, num_cpus: int, num_gpus: int | None = None) -> None:
    """Start an embedded single-machine Ray whose every server listens on 127.0.0.1 only (no dashboard)."""
    ray = import_ray()
    with _loopback_only(ray):
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, dashboard_host=LOCALHOST,
                 _node_ip_address=LOCALHOST, logging_level=logging.ERROR, log_to_driver=False)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOCALHOST:
        ray.shutdown()
        raise DistributedError(f"the embedded Ray cluster came up on {node_ip}, not {LOCALHOST} (a Ray version this "
                               "module does not know); start one yourself with `ray start --head "
                               f"--node-ip-address {LOCALHOST}` and pass its address")


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """The "host:port" Ray will contact for `address`; one-line error within `timeout` s when nothing listens there
    (ray.init itself would wait for minutes)."""
    target = _bootstrap_address(address)
    if target is None:
        raise DistributedError(f"--ray {address}: no running Ray cluster found on this machine (RAY_ADDRESS is unset "
                               "and `ray start --head` was not run here); start one, or give host:port")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"--ray {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise DistributedError(f"cannot reach the Ray cluster at {address} ({reason}); check that it is running "
                               "(`ray status` on the head node) and that the port is open") from None
    return target


def _bootstrap_address(address: str) -> str | None:
    if address.startswith("ray://"):
        rest = address[len("ray://"):]
        return rest if ":" in rest else f"{rest}:10001"
    if address != "auto":
        return address if ":" in address else f"{address}:6379"
    return ray_private.auto_address(import_ray())


class Slots(NamedTuple):
    """How many Ray workers a job starts, and what each reserves."""

    workers: int
    cpus: int  # Ray CPUs each reserves
    gpu: bool  # one GPU each


def worker_slots(ray: Any, device: str, workers: int | None, cpus_per_worker: int | None, threads: int) -> Slots:
    """Workers for a job (render, evaluate) on the connected cluster: one per GPU (unless `device` is "cpu"), else
    one per `cpus_per_worker` CPUs, by default `threads` (fewer where the cluster has less room per asked-for worker:
    those then share cores); DistributedError where the `workers` asked for do not fit."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    on_gpu = gpus > 0 and device != "cpu"
    if cpus_per_worker is None:  # a worker reserves the cores it computes on, as far as the cluster has them
        cpus_per_worker = 1 if on_gpu else max(1, min(threads, cpus // (workers or 1)))
    room = min(gpus, cpus // cpus_per_worker) if on_gpu else cpus // cpus_per_worker
    count = workers or room
    if count < 1 or count > room:
        what = f"{gpus} GPU(s)" if on_gpu else f"{cpus} CPU(s), {cpus_per_worker} per worker"
        raise DistributedError(f"the Ray cluster has room for {room} worker(s) ({what}); asked for {count}")
    return Slots(count, cpus_per_worker, on_gpu)


def worker_threads(threads: int | None = None) -> int:
    """The torch threads every Ray worker computes with: `threads`, by default this process's (what a one-process
    run uses here). CPU arithmetic depends on the count (oneDNN picks its blocking by it, and element-wise kernels
    round a thread's last few values differently), so workers with the driver's count make its bytes."""
    if threads is not None:
        return threads
    import torch

    return torch.get_num_threads()


def compute_with(threads: int) -> None:
    """In a Ray worker, before its model exists: torch computes with `threads` threads (OpenVINO's and ONNX Runtime's
    threads follow torch's)."""
    import torch

    torch.set_num_threads(threads)


def explain(exc: BaseException, who: str) -> str:
    """One line for a failure on a worker: the package missing there, or the worker's own error message."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not type(cause).__module__.startswith("ray"):
        text = f"{type(cause).__name__}: {cause}" if isinstance(cause, (ImportError, KeyError)) else str(cause)
    else:
        text = _last_error_line(str(exc))
    if "No module named 'emavfi" in text or "No module named \"emavfi" in text:
        return (f"{who} cannot import emavfi ({one_line(text)}): install this package on every node of the Ray "
                "cluster, or pass it with a runtime_env")
    return f"{who} failed: {one_line(text)}"


def _last_error_line(text: str) -> str:
    """The final "SomeError: message" line of a traceback Ray put into an exception's text."""
    lines = [one_line(line) for line in text.splitlines()]
    found = [line for line in lines if _ERROR_LINE.match(line)]
    return found[-1] if found else (lines[0] if lines else "unknown error")
