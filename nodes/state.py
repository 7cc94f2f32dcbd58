"""What the pack keeps between runs, in one object its ComfyExtension owns (no module globals).

V3 nodes are classes that ComfyUI runs on a locked clone, so a node cannot keep anything on itself; the extension
creates one `PackState` and binds the node classes to it (`PackNode.bound`), and the web route reads the same one.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, ClassVar

from .metabatch import MAX_OPEN, CarryStore
from .spec import io


class PackState:
    """models:    loaded models by (file, variant, dtype, device, backend), kept while anything (ComfyUI's output
                  cache, another loader node) holds them, so the cache never outgrows the open workflows.
    downloads: downloads in progress by variant, for GET /emavfi/status (a download runs inside a node).
    carries:   frames carried between the batches of a meta batch (each batch is a separate queued prompt)."""

    def __init__(self, open_meta_batches: int = MAX_OPEN):
        self.models: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()
        self.load_lock = threading.Lock()
        self.downloads: dict[str, dict[str, Any]] = {}
        self.carries = CarryStore(open_meta_batches)


class PackNode(io.ComfyNode):
    """Base of the pack's nodes: `state` is the PackState of the extension that listed them."""

    state: ClassVar[PackState | None] = None

    @classmethod
    def bound(cls, state: PackState) -> type[PackNode]:
        """This node class bound to `state` (a subclass with the same name, schema and behaviour)."""
        return type(cls.__name__, (cls,), {"state": state, "__module__": cls.__module__,
                                           "__qualname__": cls.__qualname__})

    @classmethod
    def pack(cls) -> PackState:
        """The bound state; an unbound class is a programming error (ComfyUI always gets bound ones)."""
        if cls.state is None:
            raise RuntimeError(f"{cls.__name__} is not bound to a PackState: list it through EmaVfiExtension")
        return cls.state
