"""`python -m emavfi export`: write the network as ONNX, OpenVINO IR or TorchScript (Nuke) for one frame size.

Imports nothing heavy at import time: torch, onnx and openvino load only when the command runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

from ..backends import REQUIREMENTS
from ..config import VARIANTS
from ..files import check_space, claim, disk_full, no_space, write_refusal
from ..settings import PRECISIONS

FORMATS = ("onnx", "openvino", "torchscript")
EXPORT_PRECISIONS = tuple(p for p in PRECISIONS if p != "bf16")  # the graphs are written in fp32 or fp16
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt"}
NEEDS = {"onnx": ("onnx",), "openvino": ("onnx", "openvino"), "torchscript": ()}
MIN_SIDE, MAX_SIDE = 32, 8192


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `export` subcommand."""
    parser = subparsers.add_parser(
        "export", help="write the network as ONNX, OpenVINO IR or TorchScript (Nuke)",
        description="Export EMA-VFI for another runtime. ONNX / OpenVINO: inputs img0, img1 [1,3,H,W] float32 0..1 "
                    "and timestep [1], output frame [1,3,H,W], padding inside. TorchScript (Nuke CatFileCreator): "
                    "forward(x [1,6+2K,H,W]) -> [1,3+K,H,W] at any size, float attribute timestep.")
    parser.add_argument("--variant", choices=VARIANTS, help="model variant (default ours_small_t; with --weights, "
                        "read from the file)")
    parser.add_argument("--weights", type=Path, help="local .safetensors weights (default: download from the Hub)")
    parser.add_argument("--offline", action="store_true", help="never download; use local or cached weights only")
    parser.add_argument("--size", required=True, help="frame size HxW, e.g. 270x480 (TorchScript: the size traced "
                        "at; the module runs at any size)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx, openvino (.xml + .bin) or "
                        "torchscript (.pt for Nuke)")
    parser.add_argument("--precision", choices=EXPORT_PRECISIONS, default="fp32", help="fp32 (default) or fp16")
    parser.add_argument("-o", "--output", type=Path, required=True, help="file to write (a new name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(handler=run)


def parse_size(text: str) -> tuple[int, int]:
    """"HxW" -> (H, W), each side MIN_SIDE..MAX_SIDE; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*", str(text))
    if not match:
        raise ValueError(f"--size must be HxW such as 270x480; got {text!r}")
    h, w = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise ValueError(f"--size sides must be {MIN_SIDE} to {MAX_SIDE} pixels; got {h}x{w}")
    return h, w


def missing_packages(fmt: str) -> list[str]:
    """The Python packages format `fmt` needs that are not installed here."""
    return [name for name in NEEDS[fmt] if importlib.util.find_spec(name) is None]


def _check(args: argparse.Namespace) -> tuple[int, int, Path]:
    """Everything that needs no model: size, packages, output path (SettingsError, exit 2)."""
    from ..settings import SettingsError

    try:
        height, width = parse_size(args.size)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    missing = missing_packages(args.format)
    if missing:
        raise SettingsError(f"--format {args.format} needs the Python package(s) {', '.join(missing)}: "
                            f"pip install -r {REQUIREMENTS}")
    output = Path(args.output)
    if args.format == "openvino":
        output = output.with_suffix(".xml")
    if not output.parent.is_dir():
        raise SettingsError(f"output folder {output.parent} does not exist; create it first")
    refusal = write_refusal(output.parent)
    if refusal:
        raise SettingsError(f"cannot write into the output folder {output.parent} ({refusal}); choose a folder "
                            "you can write to")
    _check_clash(output, args)
    return height, width, output


def _check_clash(output: Path, args: argparse.Namespace) -> None:
    """Refuse to replace an existing export without --overwrite (SettingsError)."""
    from ..settings import SettingsError

    clash = [p for p in (output, output.with_suffix(".bin") if args.format == "openvino" else None) if p and p.exists()]
    if clash and not args.overwrite:
        raise SettingsError(f"{clash[0]} exists; choose a new name or pass --overwrite")


def run(args: argparse.Namespace) -> int:
    """The export subcommand: checks first, then (holding the output's name) weights, then the export."""
    from ..settings import SettingsError

    height, width, output = _check(args)
    try:
        with claim(output):  # a second export to this name now would silently replace one of the two results
            _check_clash(output, args)  # an export that finished while we checked
            variant, written = _export(args, height, width, output)
    except BlockingIOError:
        raise SettingsError(f"another export is writing {output} now; wait for it to finish or choose another "
                            "name") from None
    extra = " (+ .bin)" if args.format == "openvino" else ""
    sys.stderr.write(f"exported {variant} as {args.format} {args.precision} ({height}x{width}) -> {written}{extra}\n")
    return 0


def _export(args: argparse.Namespace, height: int, width: int, output: Path) -> tuple[str, Path]:
    """(variant, file written): load the weights, check the disk has room, write the export (a full disk: one
    line naming it)."""
    from ..backends import writers
    from ..loading import load_model, weights_path
    from ..settings import Settings

    settings = Settings(variant=args.variant, weights=args.weights, offline=args.offline)
    model = load_model(weights_path(settings), variant=settings.model_variant, channels_last=False)
    if not model.config.arbitrary_t:
        sys.stderr.write(f"note: {settings.model_variant} was trained for t = 0.5 only; other timesteps work but "
                         "look worse (use a `_t` variant to export for any timestep)\n")
    params = sum(p.numel() for p in model.parameters())
    # The weights in the export's precision, plus the fp32 ONNX graph an OpenVINO IR is converted from.
    needed = params * (2 if args.precision == "fp16" else 4) + (params * 4 if args.format == "openvino" else 0)
    what = f"the {args.format} export"
    check_space(output.parent, needed, what)
    writer = {"onnx": writers.export_onnx, "openvino": writers.export_openvino,
              "torchscript": writers.export_torchscript}[args.format]
    try:
        path = writer(model, height, width, output, args.precision)
    except Exception as exc:  # noqa: BLE001 - runtimes report a full disk in their own words and types
        if disk_full(exc):  # it passed the check above: it needed more than the estimate
            raise no_space(output.parent, None, what) from exc
        raise
    return settings.model_variant, Path(path)
