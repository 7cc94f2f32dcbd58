"""The same frame gives the same bytes, whichever process, machine or temporary file wrote it.

OpenImageIO stamps files with the time of writing (TIFF DateTime, EXR capDate, DPX creation time) and a DPX
header carries the name of the file written, which is our hidden temporary: both are taken out here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def reproducible(spec: Any) -> Any:
    """spec without what would differ between two writes of the same frame: OpenImageIO stamps TIFF, EXR and
    DPX files with the time of writing unless a DateTime is given (an empty one writes none; a source's own
    DateTime is kept)."""
    if not spec.getattribute("DateTime"):
        spec.attribute("DateTime", "")
    return spec


_DPX_NAME = (36, 100)  # offset and length of the DPX file header's file-name field


def finish_dpx(tmp: Path, path: Path) -> None:
    """A DPX header names the file it was written to: the final name, not the temporary (nor its folder)."""
    if tmp.suffix.lower() != ".dpx":
        return
    offset, size = _DPX_NAME
    with open(tmp, "r+b") as f:
        if f.read(4) not in (b"SDPX", b"XPDS"):
            return
        f.seek(offset)
        f.write(path.name.encode("utf-8", "replace")[:size - 1].ljust(size, b"\0"))
