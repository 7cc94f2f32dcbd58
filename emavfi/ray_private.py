"""Ray's private API, fenced: every use emavfi makes of it lives here, each behind one check of Ray's version.

Ray changes its private modules between releases without notice, so each accessor first checks that the
installed Ray is one whose private names these functions were written and tested against (RAY_RANGE, also
the bounds in requirements-ray.txt), and otherwise stops with one line naming that range. Used by
emavfi.ray_cluster (a cluster on 127.0.0.1 only) and emavfi.train.ray_train (a loopback rendezvous).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import DistributedError

# Oldest and newest Ray (major, minor) these functions were tested against: the private names move between
# releases, so only tested ones are accepted (widen both ends, and requirements-ray.txt, after testing another).
RAY_RANGE = ((2, 60), (2, 60))


def supported_range() -> str:
    """The supported Ray releases in words: "2.60", or "2.59 to 2.60"."""
    low, high = (f"{major}.{minor}" for major, minor in RAY_RANGE)
    return low if low == high else f"{low} to {high}"


def check_version(version: str) -> None:
    """DistributedError (one line) unless Ray `version` (e.g. "2.60.0") is in RAY_RANGE."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]]
    if len(parts) < 2 or not RAY_RANGE[0] <= tuple(parts) <= RAY_RANGE[1]:
        raise DistributedError(f"emavfi supports Ray {supported_range()} (it uses parts of Ray that change between "
                               f"releases); this is Ray {version}: pip install -r requirements-ray.txt")


def _checked(ray: Any) -> Any:
    check_version(str(getattr(ray, "__version__", "unknown")))
    return ray


def ray_constants(ray: Any) -> Any:
    """ray._private.ray_constants (ENABLE_RAY_CLUSTER decides how this process resolves 127.0.0.1)."""
    return _checked(ray)._private.ray_constants


def auto_address(ray: Any) -> str | None:
    """The "host:port" of the Ray cluster `--ray auto` means (RAY_ADDRESS, else one started here), or None."""
    from ray._private.services import canonicalize_bootstrap_address

    _checked(ray)
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        return None


def loopback_torch_config(ray: Any, backend: str, open_store: Callable[[int], Any],
                          use_store: Callable[[int], None]) -> Any:
    """A Ray Train TorchConfig whose process group meets through a store that Ray Train's set-up opens
    (open_store(world) -> an object with `port` and `close()`, held by the backend until it shuts down) and every
    worker joins (use_store(port)): Ray's own set-up, with our rendezvous."""
    _checked(ray)
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

    class LoopbackBackend(_TorchBackend):
        store: Any = None  # the open rendezvous store of this run, owned by this backend instance

        def on_start(self, worker_group: Any, backend_config: Any) -> None:
            world = len(worker_group)
            self.store = open_store(world)
            worker_group.execute(use_store, self.store.port)
            worker_group.execute(_set_torch_distributed_env_vars)
            ray.get([worker_group.execute_single_async(
                rank, _setup_torch_process_group, backend=backend_config.backend, world_rank=rank, world_size=world,
                init_method="env://", timeout_s=backend_config.timeout_s) for rank in range(world)])

        def on_shutdown(self, worker_group: Any, backend_config: Any) -> None:
            try:
                super().on_shutdown(worker_group, backend_config)
            finally:
                if self.store is not None:
                    self.store.close()
                    self.store = None

    class LoopbackConfig(TorchConfig):
        @property
        def backend_cls(self) -> Any:
            return LoopbackBackend

    return LoopbackConfig(backend=backend)
