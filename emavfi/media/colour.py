"""Colour through OpenColorIO: plates (scene-linear EXR, log DPX, ...) to the working encoding and back.

The network was trained on display-referred sRGB images, so every frame is converted into the config's
sRGB-encoded Rec.709 texture space ("sRGB Encoded Rec.709 (sRGB)", alias "sRGB - Texture") before it reaches
the model, and back into the source's own space before it is written. The conversion is OCIO's analytic
transforms applied to float32 (no baked LUT, no clamp): values above 1 and below 0 survive the round trip.
Scene-linear highlights therefore arrive as working values above 1; the runner's HDR curve maps those into
the network's 0..1 range.
"""
from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import one_line
from .base import FrameFormat, FramesIOError, MediaOptionError, import_ocio

DEFAULT_CONFIG = "ocio://studio-config-latest"
# The working space by its OCIO 2.5 interop id first, then the names other configs use for it.
WORKING_NAMES = ("srgb_rec709_scene", "sRGB - Texture", "srgb_tx", "sRGB Encoded Rec.709 (sRGB)",
                 "Utility - sRGB - Texture")
LINEAR_REC709_NAMES = ("lin_rec709_scene", "Linear Rec.709 (sRGB)", "Utility - Linear - sRGB")

# Cineon printing-density log (Kodak): code 95 = black, 685 = white, 0.002 density per code, gamma 0.6.
# The ACES configs have no generic Cineon space, so one is added to the loaded config (Rec.709 primaries).
CINEON = "Cineon Log"
CINEON_ALIASES = ("cineon", "KodakLog")  # OpenImageIO names a log DPX "KodakLog"
_CINEON_BLACK = 10.0 ** ((95 - 685) / 300)

# Primaries + white point (x, y) * 4 as OpenEXR's "chromaticities" stores them -> interop id.
_CHROMATICITIES = {
    "lin_ap1_scene": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
    "lin_ap0_scene": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767),
    "lin_rec709_scene": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    "lin_p3d65_scene": (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),
    "lin_rec2020_scene": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
}
# DPX transfer characteristics (SMPTE 268M) that are display-referred video: treated like sRGB images.
_VIDEO_TRANSFERS = ("ITU-R 709-4", "ITU-R 601-5 system B or G", "ITU-R 601-5 system M", "SMPTE 274M",
                    "NTSC composite video", "PAL composite video", "Unspecified video")


def config_reference(ocio: str | None = None) -> str:
    """The config to use: ocio (a path or an ocio:// URI), else $OCIO, else the built-in ACES studio config."""
    return ocio or os.environ.get("OCIO") or DEFAULT_CONFIG


def load_config(ocio: str | None = None) -> Any:
    """The OCIO config named by config_reference(ocio), with a Cineon log space added when it has none."""
    return _load_config(config_reference(ocio))


@functools.lru_cache(maxsize=4)
def _load_config(reference: str) -> Any:
    lib = import_ocio()
    try:
        config = lib.Config.CreateFromFile(reference)
    except Exception as exc:  # OCIO raises its own Exception type for missing files and bad configs
        raise FramesIOError(f"cannot load the OCIO config {reference}: {one_line(exc)}") from None
    _add_cineon(lib, config)
    return config


def _find(config: Any, names: tuple[str, ...]) -> str | None:
    for name in names:
        space = config.getColorSpace(name)
        if space is not None:
            return space.getName()
    return None


def _add_cineon(lib: Any, config: Any) -> None:
    if config.getColorSpace(CINEON) is not None or config.getColorSpace("cineon") is not None:
        return
    linear_name = _find(config, LINEAR_REC709_NAMES) or config.getColorSpace("scene_linear").getName()
    log = lib.LogAffineTransform(direction=lib.TRANSFORM_DIR_INVERSE)  # forward is linear -> log
    log.setBase(10.0)
    log.setLogSideSlopeValue([300 / 1023] * 3)
    log.setLogSideOffsetValue([685 / 1023] * 3)
    log.setLinSideSlopeValue([1 - _CINEON_BLACK] * 3)
    log.setLinSideOffsetValue([_CINEON_BLACK] * 3)
    # Cineon code values -> linear Rec.709 -> whatever the config's reference space is.
    to_reference = lib.GroupTransform([log, lib.ColorSpaceTransform(src=linear_name, dst=_reference_name(config))])
    space = lib.ColorSpace(lib.REFERENCE_SPACE_SCENE, CINEON, aliases=list(CINEON_ALIASES), family="Log",
                           encoding="log", description="Kodak Cineon printing-density log (95 black, 685 white), "
                           "Rec.709 primaries; added by emavfi")
    space.setTransform(to_reference, lib.COLORSPACE_DIR_TO_REFERENCE)
    config.addColorSpace(space)


def _reference_name(config: Any) -> str:
    """A colour space equal to the scene reference (no transform), so ColorSpaceTransform can end there."""
    for role in ("aces_interchange", "reference"):
        space = config.getColorSpace(role)
        if space is not None:
            return space.getName()
    return config.getColorSpace("scene_linear").getName()


def all_names(config: Any) -> list[str]:
    """Every colour-space name, alias and role the config accepts."""
    names: list[str] = []
    for space in config.getColorSpaces():
        names.append(space.getName())
        names.extend(space.getAliases())
    names.extend(config.getRoleNames())
    return names


def resolve(config: Any, name: str, reference: str = "") -> str:
    """The config's own name for colour space `name` (a name, alias, interop id or role; case-insensitive);
    unknown names raise FramesIOError listing the closest ones."""
    space = config.getColorSpace(name)
    if space is not None:
        return space.getName()
    names = all_names(config)
    by_fold = {n.casefold(): n for n in names}
    close = [by_fold[n] for n in difflib.get_close_matches(name.casefold(), list(by_fold), n=5, cutoff=0.4)]
    where = f" in the OCIO config {reference}" if reference else ""
    hint = f"; close names: {', '.join(repr(n) for n in close)}" if close else \
        f"; it has e.g. {', '.join(repr(s.getName()) for s in list(config.getColorSpaces())[:6])}"
    raise MediaOptionError(f"unknown colour space {name!r}{where}{hint}")


def working_space(config: Any) -> str:
    """The config's sRGB-encoded Rec.709 texture space (the network's own encoding)."""
    name = _find(config, WORKING_NAMES)
    if name is None:
        raise FramesIOError("the OCIO config has no sRGB-encoded Rec.709 texture space (looked for "
                            f"{', '.join(WORKING_NAMES)}); use a config that has one, e.g. ocio://studio-config-latest")
    return name


def guess_colorspace(config: Any, fmt: FrameFormat, attributes: dict[str, Any]) -> str:
    """The colour space a frame is most likely in, from its format and the metadata it carries.

    8/16-bit PNG, JPEG and TIFF: sRGB (the working space itself, so no conversion at all). EXR and float TIFF:
    the colour space the file names (oiio:ColorSpace / colorInteropID, or its chromaticities), else the
    config's scene_linear role (ACEScg in the ACES configs). DPX: the space its header names, else by its
    transfer characteristic (linear -> linear Rec.709, video -> sRGB, anything else -> Cineon log).
    """
    working = working_space(config)
    if fmt.extension not in (".exr", ".dpx") and not fmt.is_float:
        return working
    for key in ("colorInteropID", "oiio:ColorSpace"):
        named = attributes.get(key)
        if isinstance(named, str) and named and config.getColorSpace(named) is not None:
            return config.getColorSpace(named).getName()
    if fmt.extension == ".dpx":
        text = " ".join(str(attributes.get(k, "")) for k in ("ImageDescription", "dpx:InputDevice"))
        for adx in ("ADX10", "ADX16"):
            if adx in text and config.getColorSpace(adx) is not None:
                return config.getColorSpace(adx).getName()
        transfer = attributes.get("dpx:Transfer", "")
        if transfer == "Linear":
            return _find(config, LINEAR_REC709_NAMES) or config.getColorSpace("scene_linear").getName()
        if transfer in _VIDEO_TRANSFERS:
            return working
        return config.getColorSpace(CINEON).getName()
    chromaticities = attributes.get("chromaticities")
    if chromaticities is not None and len(chromaticities) == 8:
        for interop, primaries in _CHROMATICITIES.items():
            if np.allclose(chromaticities, primaries, atol=2e-3) and config.getColorSpace(interop) is not None:
                return config.getColorSpace(interop).getName()
    return config.getColorSpace("scene_linear").getName()


@dataclass
class Colour:
    """Converts RGB between one colour space and the working encoding. identity: no conversion at all."""

    config: Any
    name: str            # the config's name of the frames' colour space
    working: str         # the config's name of the working space
    reference: str = ""  # the config's path or URI, for messages

    def __post_init__(self) -> None:
        self._processors: dict[tuple[str, str], Any] = {}  # (from, to) -> its CPU processor, made on first use

    @classmethod
    def open(cls, colorspace: str | None, fmt: FrameFormat, attributes: dict[str, Any], *,
             ocio: str | None = None) -> Colour:
        """The colour space named (validated), or guessed from fmt and attributes, in config ocio."""
        reference = config_reference(ocio)
        config = load_config(ocio)
        name = resolve(config, colorspace, reference) if colorspace else guess_colorspace(config, fmt, attributes)
        return cls(config, name, working_space(config), reference)

    def like(self, name: str) -> Colour:
        """Another colour space of the same config."""
        return Colour(self.config, resolve(self.config, name, self.reference), self.working, self.reference)

    @property
    def identity(self) -> bool:
        return self.name == self.working

    @property
    def interop_id(self) -> str:
        """The OCIO interop id (e.g. "lin_ap1_scene") where the config gives one, else the name."""
        space = self.config.getColorSpace(self.name)
        getter = getattr(space, "getInteropID", None)
        return (getter() if getter else "") or self.name

    def describe(self) -> str:
        return f"{self.name} (no conversion)" if self.identity else f"{self.name} -> working"

    def _processor(self, src: str, dst: str) -> Any:
        lib = import_ocio()
        processor = self.config.getProcessor(src, dst)
        # LOSSLESS: no fast pow/log approximations, so a round trip stays within float32 rounding.
        return processor.getOptimizedCPUProcessor(lib.BIT_DEPTH_F32, lib.BIT_DEPTH_F32, lib.OPTIMIZATION_LOSSLESS)

    def to_working(self, rgb: np.ndarray, *, owned: bool = False) -> np.ndarray:
        """[H,W,3] float32 in this space -> [H,W,3] float32 in the working encoding: a new array, or rgb itself
        converted in place when the caller owns it (owned) and it is C-contiguous float32."""
        return self._convert(rgb, self.name, self.working, owned)

    def from_working(self, rgb: np.ndarray, *, owned: bool = False) -> np.ndarray:
        """[H,W,3] float32 in the working encoding -> [H,W,3] float32 in this space (owned: as to_working)."""
        return self._convert(rgb, self.working, self.name, owned)

    def _convert(self, rgb: np.ndarray, src: str, dst: str, owned: bool = False) -> np.ndarray:
        if self.identity:
            return rgb
        if (src, dst) not in self._processors:
            self._processors[(src, dst)] = self._processor(src, dst)
        processor = self._processors[(src, dst)]
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"colour conversion takes [H,W,3] arrays; got {list(rgb.shape)}")
        reuse = owned and rgb.dtype == np.float32 and rgb.flags.c_contiguous and rgb.flags.writeable
        out = rgb if reuse else np.array(rgb, dtype=np.float32, order="C", copy=True)
        processor.applyRGB(out)  # in place
        return out
