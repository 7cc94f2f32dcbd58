"""emavfi.media.colour: OCIO conversions to the working encoding and back, guessing, names, configs."""
from __future__ import annotations

import numpy as np
import pytest

ocio = pytest.importorskip("PyOpenColorIO", reason="colour tests need opencolorio (requirements-cli.txt)")
pytest.importorskip("OpenImageIO", reason="colour tests need openimageio (requirements-cli.txt)")

from test_images import H, W, make_sequence, photo, read_raw, write_frame  # noqa: E402

from emavfi.media import FrameFormat, FramesIOError, open_sink, open_source  # noqa: E402
from emavfi.media.colour import CINEON, Colour, config_reference, guess_colorspace, load_config  # noqa: E402

EXR = FrameFormat(".exr", "half", 3)


def hdr_plate(seed: int = 0) -> np.ndarray:
    """ACEScg-like values: a photo times 4 (highlights to 4.0), one negative pixel."""
    values = photo(seed=seed) * 4.0
    values[0, 0] = (4.0, -0.01, 1.0)
    values[0, 1] = (-0.01, 0.0, 4.0)
    return np.ascontiguousarray(values, dtype=np.float32)


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    """Equal within tol relative to max(1, |b|): 1e-6 absolute up to 1, float32 rounding above."""
    return bool(np.all(np.abs(a.astype(np.float64) - b) <= tol * np.maximum(1.0, np.abs(b.astype(np.float64)))))


def test_acescg_round_trip_keeps_values_above_one_and_below_zero():
    colour = Colour.open("ACEScg", EXR, {})
    plate = hdr_plate()
    working = colour.to_working(plate)
    assert not colour.identity and colour.working == "sRGB Encoded Rec.709 (sRGB)"
    assert working.max() > 1.5 and working.min() < 0  # not clamped: HDR reaches the runner as values > 1
    back = colour.from_working(working)
    assert close(back, plate), np.abs(back - plate).max()
    assert back[0, 0, 0] == pytest.approx(4.0, abs=4e-6) and back[0, 0, 1] == pytest.approx(-0.01, abs=1e-6)


def test_a_conversion_works_in_place_only_on_an_array_the_caller_owns():
    colour = Colour.open("ACEScg", EXR, {})
    plate = hdr_plate()
    kept = plate.copy()
    fresh = colour.to_working(plate)
    assert np.array_equal(plate, kept)  # not owned: the caller's array is left as it was
    owned = plate.copy()
    assert colour.to_working(owned, owned=True) is owned and np.array_equal(owned, fresh)  # the same values
    strided = np.asfortranarray(kept)  # owned but not C-contiguous: converted into a new array
    assert colour.from_working(strided, owned=True) is not strided and np.array_equal(strided, kept)


def test_acescg_float_exr_through_source_and_sink_within_1e6(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_frame(folder / "a.0001.exr", hdr_plate(), "float", attrs={"oiio:ColorSpace": "ACEScg"})
    source = open_source(folder)
    assert source.colorspace == "ACEScg" and "ACEScg -> working" in source.describe()
    sink = open_sink(tmp_path / "out", source, total=2)
    sink.write(1, next(source.frames()))
    out = read_raw(sink.path(1)).pixels
    assert out.dtype == np.float32 and close(out, hdr_plate())


def test_cineon_log_dpx_default_and_exact_codes(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    codes = np.tile(np.arange(H * W) % 1024, 3).reshape(3, H, W).transpose(1, 2, 0).copy()
    codes[0, 0] = (95, 685, 1023)
    write_frame(folder / "scan.0001.dpx", codes / 1023.0, "uint16", bits=10,
                attrs={"dpx:Transfer": "Printing density"})
    source = open_source(folder)
    assert source.colorspace == CINEON
    working = source.read(0)
    # Cineon black (95) and white (685) land on working 0 and 1; code 1023 is a highlight above 1.
    assert working[0, 0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert working[1, 0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert working[2, 0, 0].item() > 2
    sink = open_sink(tmp_path / "out", source, total=2)
    sink.write(1, working)
    assert np.array_equal(read_raw(sink.path(1)).pixels >> 6, codes)


def test_adx10_named_round_trip_within_a_fraction_of_a_code():
    colour = Colour.open("ADX10", FrameFormat(".dpx", "10", 3), {})
    codes = np.linspace(0.05, 0.95, H * W * 3, dtype=np.float32).reshape(H, W, 3)
    back = colour.from_working(colour.to_working(codes))
    assert np.abs(back - codes).max() < 0.5 / 1023


def test_srgb_png_is_identity_and_bit_exact(tmp_path):
    make_sequence(tmp_path / "in", ".png", "uint8", n=1)
    source = open_source(tmp_path / "in")
    assert source.colour.identity and "no conversion" in source.describe()
    raw = read_raw(source.paths[0]).pixels
    frame = source.read(0)
    assert np.array_equal(frame.numpy().transpose(1, 2, 0), raw.astype(np.float32) / 255)
    sink = open_sink(tmp_path / "out", source, total=1)
    sink.write(0, frame)
    assert np.array_equal(read_raw(sink.path(0)).pixels, raw)


@pytest.mark.parametrize("fmt, attrs, expected", [
    (FrameFormat(".exr", "half", 3), {}, "ACEScg"),  # the config's scene_linear role
    (FrameFormat(".exr", "half", 3), {"colorInteropID": "lin_rec709_scene"}, "Linear Rec.709 (sRGB)"),
    (FrameFormat(".exr", "float", 3), {"oiio:ColorSpace": "ACES2065-1"}, "ACES2065-1"),
    (FrameFormat(".exr", "half", 3), {"chromaticities": (0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329)},
     "Linear Rec.709 (sRGB)"),
    (FrameFormat(".exr", "half", 3), {"chromaticities": (0.713, 0.293, 0.165, 0.83, 0.128, 0.044, 0.32168, 0.33767)},
     "ACEScg"),
    (FrameFormat(".dpx", "10", 3), {"dpx:Transfer": "Logarithmic", "oiio:ColorSpace": "KodakLog"}, CINEON),
    (FrameFormat(".dpx", "10", 3), {"dpx:Transfer": "Linear"}, "Linear Rec.709 (sRGB)"),
    (FrameFormat(".dpx", "10", 3), {"dpx:Transfer": "ITU-R 709-4"}, "sRGB Encoded Rec.709 (sRGB)"),
    (FrameFormat(".dpx", "10", 3), {"dpx:Transfer": "User defined", "ImageDescription": "ADX10 scan"}, "ADX10"),
    (FrameFormat(".dpx", "10", 3), {}, CINEON),
    (FrameFormat(".png", "16", 3), {"oiio:ColorSpace": "lin_rec709_scene"}, "sRGB Encoded Rec.709 (sRGB)"),
    (FrameFormat(".jpg", "8", 3), {}, "sRGB Encoded Rec.709 (sRGB)"),
    (FrameFormat(".tif", "16", 3), {}, "sRGB Encoded Rec.709 (sRGB)"),
    (FrameFormat(".tif", "float", 3), {}, "ACEScg"),
])
def test_default_colour_space_guesses(fmt, attrs, expected):
    assert guess_colorspace(load_config(), fmt, attrs) == expected


def test_names_aliases_and_roles_resolve():
    assert Colour.open("lin_ap1_scene", EXR, {}).name == "ACEScg"
    assert Colour.open("acescg", EXR, {}).name == "ACEScg"
    assert Colour.open("scene_linear", EXR, {}).name == "ACEScg"
    assert Colour.open("cineon", EXR, {}).name == CINEON
    assert Colour.open("sRGB - Texture", EXR, {}).identity


def test_unknown_colour_space_lists_close_names():
    with pytest.raises(FramesIOError) as err:
        Colour.open("ACEScgg", EXR, {})
    message = str(err.value)
    assert "'ACEScgg'" in message and "'ACEScg'" in message and "'ACEScct'" in message and "\n" not in message


def test_config_from_ocio_variable_and_from_a_path(tmp_path, monkeypatch):
    monkeypatch.delenv("OCIO", raising=False)
    assert config_reference() == "ocio://studio-config-latest"
    config = ocio.Config.CreateFromBuiltinConfig("cg-config-latest")
    path = tmp_path / "studio.ocio"
    path.write_text(config.serialize())
    monkeypatch.setenv("OCIO", str(path))
    assert config_reference() == str(path)
    colour = Colour.open("ACEScg", EXR, {})
    assert colour.reference == str(path) and colour.working == "sRGB Encoded Rec.709 (sRGB)"
    assert config_reference("ocio://cg-config-latest") == "ocio://cg-config-latest"
    with pytest.raises(FramesIOError, match="cannot load the OCIO config .*missing.ocio"):
        Colour.open(None, EXR, {}, ocio=str(tmp_path / "missing.ocio"))


def test_exr_written_as_png_changes_to_srgb_and_says_so(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_frame(folder / "a.0001.exr", photo() * 0.5, "half", attrs={"oiio:ColorSpace": "ACEScg"})
    source = open_source(folder)
    sink = open_sink(tmp_path / "out", source, total=1, format="png")
    assert sink.format == FrameFormat(".png", "16", 3) and sink.colour.identity
    sink.write(0, None, copy_of=0)  # another format: decoded and encoded, not copied
    out = read_raw(sink.path(0))
    assert out.format.bit_depth == "16"
    expected = np.clip(source.read(0).numpy().transpose(1, 2, 0), 0, 1)
    assert np.abs(out.pixels / 65535.0 - expected).max() <= 0.5 / 65535 + 1e-7
