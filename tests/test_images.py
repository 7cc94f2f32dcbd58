"""emavfi.media.images and FolderSink/FolderSource round trips: every format and depth, metadata, timecode,
damaged files."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

oiio = pytest.importorskip("OpenImageIO", reason="frame I/O tests need openimageio (requirements-cli.txt)")

from emavfi.media import FramesIOError, open_sink, open_source  # noqa: E402
from emavfi.media.images import attributes, read_raw, verify  # noqa: E402
from emavfi.media.timecode import Timecode, advance_timecode, timecode_of  # noqa: E402

H, W = 32, 48


def photo(channels: int = 3, seed: int = 0) -> np.ndarray:
    """A real photograph (skimage's astronaut), [32,48,C] float32 in 0..1, alpha a seeded ramp."""
    data = pytest.importorskip("skimage.data")
    rgb = data.astronaut()[100:420:10, 20:500:10].astype(np.float32) / 255
    if channels == 1:
        return rgb.mean(axis=2, keepdims=True)
    extra = [np.random.default_rng(seed).random((H, W, 1), dtype=np.float32) for _ in range(channels - 3)]
    return np.concatenate([rgb, *extra], axis=2) if extra else rgb


def write_frame(path: Path, values: np.ndarray, depth: str, *, attrs: dict | None = None, bits: int = 0,
                names: tuple[str, ...] | None = None, window: tuple[int, int, int, int] | None = None) -> Path:
    """Write values [H,W,C] float with OpenImageIO as sample type depth ("uint8", "uint16", "half", "float")."""
    spec = oiio.ImageSpec(values.shape[1], values.shape[0], values.shape[2], depth)
    if bits:
        spec.attribute("oiio:BitsPerSample", bits)
    if names:
        spec.channelnames = names
    if window:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = window
    for key, value in (attrs or {}).items():
        if isinstance(value, tuple) and isinstance(value[0], oiio.TypeDesc):
            spec.attribute(key, value[0], value[1])
        else:
            spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(np.ascontiguousarray(values, dtype=np.float32)), out.geterror()
    out.close()
    return path


def tc(text: str) -> tuple:
    return (oiio.TypeTimeCode, Timecode.parse(text).to_smpte())


def make_sequence(folder: Path, ext: str, depth: str, *, n: int = 3, channels: int = 3, bits: int = 0,
                  attrs: dict | None = None, scale: float = 1.0, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        values = np.roll(photo(channels, seed=i), 3 * i, axis=1) * scale
        frame_attrs = dict(attrs or {})
        paths.append(write_frame(folder / f"plate.{1001 + i}{ext}", values, depth, attrs=frame_attrs, bits=bits, **kw))
    return paths


FORMATS = [  # ext, OIIO sample type, bits, channels, FrameFormat.bit_depth, extra attributes
    (".exr", "half", 0, 4, "half", {"compression": "piz"}),
    (".exr", "half", 0, 3, "half", {"compression": "dwaa:45"}),
    (".exr", "float", 0, 3, "float", {"compression": "zip"}),
    (".dpx", "uint16", 10, 3, "10", {}),
    (".dpx", "uint16", 12, 3, "12", {}),
    (".dpx", "uint16", 16, 4, "16", {}),
    (".tif", "uint8", 0, 3, "8", {}),
    (".tif", "uint16", 0, 4, "16", {}),
    (".tif", "float", 0, 3, "float", {}),
    (".png", "uint8", 0, 4, "8", {}),
    (".png", "uint16", 0, 3, "16", {}),
    (".jpg", "uint8", 0, 3, "8", {}),
]


@pytest.mark.parametrize("ext, depth, bits, channels, bit_depth, attrs", FORMATS,
                         ids=[f"{f[0][1:]}-{f[4]}-{f[3]}ch-{f[5].get('compression', '')}" for f in FORMATS])
def test_each_format_round_trips_in_its_own_depth_and_compression(tmp_path, ext, depth, bits, channels,
                                                                  bit_depth, attrs):
    make_sequence(tmp_path / "in", ext, depth, channels=channels, bits=bits, attrs=attrs,
                  scale=3.0 if depth in ("half", "float") else 1.0)
    source = open_source(tmp_path / "in")
    assert (source.format.extension, source.format.bit_depth, source.format.channels) == (ext, bit_depth, channels)
    assert source.channels == channels and source.size == (H, W)
    sink = open_sink(tmp_path / "out", source, total=3)
    first = next(source.frames())
    sink.write(0, None, copy_of=0)
    sink.write(1, first)   # the decoded frame through working and back: the conversion's own round trip
    sink.write(2, None, copy_of=2)
    original = [read_raw(p) for p in source.paths]
    copy0, through, copy2 = (read_raw(sink.path(i)) for i in range(3))
    for out in (copy0, through, copy2):
        assert out.format == source.format and out.pixels.dtype == original[0].pixels.dtype
        if "compression" in attrs:
            assert attributes(out.spec)["compression"] == attrs["compression"].split(":")[0]
    # Copies are the source's own samples, bit for bit (and a JPEG copy the very file).
    assert np.array_equal(copy0.pixels, original[0].pixels) and np.array_equal(copy2.pixels, original[2].pixels)
    if ext == ".jpg":
        assert sink.path(0).read_bytes() == source.paths[0].read_bytes()
        # Re-encoding is lossy, but only just.
        assert np.abs(through.pixels.astype(int) - original[0].pixels.astype(int)).mean() < 2
    elif attrs.get("compression", "").startswith("dwa"):  # lossy by design: only the copies are exact
        a, b = through.pixels.astype(np.float64), original[0].pixels.astype(np.float64)
        assert np.mean(np.abs(a - b) / np.maximum(0.1, np.abs(b))) < 0.01
    elif bit_depth in ("half", "float"):
        a, b = through.pixels.astype(np.float64), original[0].pixels.astype(np.float64)
        ulp = 2.0 ** -10 if bit_depth == "half" else 1e-6
        assert np.all(np.abs(a - b) <= ulp * np.maximum(1, np.abs(b))), np.abs(a - b).max()
    else:  # integer codes survive decode -> working -> encode exactly
        assert np.array_equal(through.pixels, original[0].pixels)


def test_ten_bit_dpx_keeps_every_code(tmp_path):
    codes = np.arange(H * W * 3).reshape(H, W, 3) % 1024
    (tmp_path / "in").mkdir()
    write_frame(tmp_path / "in" / "a.0001.dpx", codes.astype(np.float32) / 1023, "uint16", bits=10,
                attrs={"dpx:Transfer": "Logarithmic"})
    source = open_source(tmp_path / "in")
    assert source.format.bit_depth == "10" and source.colorspace == "Cineon Log"
    raw = read_raw(source.paths[0])
    assert np.array_equal(raw.pixels >> 6, codes)
    sink = open_sink(tmp_path / "out", source, total=2)
    sink.write(1, source.read(0))
    back = read_raw(sink.path(1))
    assert back.spec.get_int_attribute("oiio:BitsPerSample") == 10
    assert np.array_equal(back.pixels >> 6, codes)


def test_metadata_of_the_source_reaches_copies_and_in_betweens(tmp_path):
    attrs = {"my:shot": "sq010_sh0040", "PixelAspectRatio": 2.0, "oiio:ColorSpace": "ACEScg",
             "camera:lens": 35.0, "FramesPerSecond": (oiio.TypeRational, (24, 1)),
             "smpte:TimeCode": tc("01:00:00:00")}
    make_sequence(tmp_path / "in", ".exr", "half", attrs=attrs, window=(-8, -4, 64, 40))
    source = open_source(tmp_path / "in")
    sink = open_sink(tmp_path / "out", source, total=5, out_fps=48)
    sink.write(0, None, copy_of=0)
    sink.write(1, next(source.frames()))
    for i in (0, 1):
        spec = read_raw(sink.path(i)).spec
        got = attributes(spec)
        assert got["my:shot"] == "sq010_sh0040" and got["camera:lens"] == 35.0
        assert got["PixelAspectRatio"] == 2.0
        assert got["colorInteropID"] == "lin_ap1_scene"
        assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (-8, -4, 64, 40)
        assert got["FramesPerSecond"] == (48, 1)
    assert str(timecode_of(read_raw(sink.path(1)).spec)) == "01:00:00:00.1"


def test_dpx_header_fields_survive(tmp_path):
    attrs = {"dpx:Transfer": "Printing density", "dpx:Colorimetric": "Printing density", "PixelAspectRatio": 1.5,
             "dpx:FrameRate": 24.0, "smpte:TimeCode": tc("10:00:00:00"), "dpx:InputDevice": "Scanner 7"}
    make_sequence(tmp_path / "in", ".dpx", "uint16", bits=10, attrs=attrs)
    source = open_source(tmp_path / "in")
    assert source.fps == 24 and str(source.timecode) == "10:00:00:00"
    sink = open_sink(tmp_path / "out", source, total=3, out_fps=Fraction(30))
    sink.write(2, next(source.frames()))
    got = attributes(read_raw(sink.path(2)).spec)
    assert got["dpx:Transfer"] == "Printing density" and got["dpx:InputDevice"] == "Scanner 7"
    assert got["PixelAspectRatio"] == 1.5 and got["dpx:FrameRate"] == 30.0
    assert got["dpx:TimeCode"] == "10:00:00:02" and str(timecode_of(read_raw(sink.path(2)).spec)) == "10:00:00:02"


# ----------------------------------------------------------------------------------------------- timecode

@pytest.mark.parametrize("first, src, out, k, expected", [
    ("01:00:00:00", 24, 24, 0, "01:00:00:00"),
    ("01:00:00:00", 24, 24, 30, "01:00:01:06"),
    ("01:00:00:00", 24, 48, 5, "01:00:00:02.1"),     # frame pairs above 30 fps: label 2, second of the pair
    ("01:00:00:00", 24, 48, 4, "01:00:00:02"),
    ("01:00:00:00", 24, 30, 7, "01:00:00:07"),       # retime 24 -> 30: k frames at 30
    ("01:00:00:12", 24, 30, 0, "01:00:00:15"),       # the same instant, half a second, at 30
    ("01:00:00:12", 24, 30, 15, "01:00:01:00"),
    ("00:00:59;29", Fraction(30000, 1001), Fraction(30000, 1001), 1, "00:01:00;02"),  # drop-frame skips 00, 01
    ("00:09:59;29", Fraction(30000, 1001), Fraction(30000, 1001), 1, "00:10:00;00"),  # ...except each tenth
    ("00:00:59;29", Fraction(30000, 1001), Fraction(60000, 1001), 3, "00:01:00;02.1"),  # kept at 59.94 (pairs)
    ("00:00:10;00", Fraction(30000, 1001), Fraction(24000, 1001), 0, "00:00:10:00"),   # none at 23.976
    ("23:59:59:23", 24, 24, 1, "00:00:00:00"),
])
def test_timecode_of_output_frame_k(first, src, out, k, expected):
    assert str(advance_timecode(Timecode.parse(first), Fraction(src), k, Fraction(out))) == expected


def test_timecode_packing_keeps_user_bits_and_flags():
    value = Timecode(13, 37, 42, 21, drop=True, phase=True, flags=1 << 7, user_bits=0x12345678)
    again = Timecode.from_smpte(value.to_smpte())
    assert again == value and str(again) == "13:37:42;21.1"
    assert Timecode.from_smpte((0x01000000, 0)) == Timecode(1, 0, 0, 0)
    moved = advance_timecode(value, Fraction(30000, 1001), 1, Fraction(30000, 1001))
    assert moved.user_bits == 0x12345678 and moved.flags == 1 << 7


def test_sink_timecode_written_to_exr_frames(tmp_path):
    make_sequence(tmp_path / "in", ".exr", "half", n=2, attrs={"smpte:TimeCode": tc("01:00:00:00"),
                                                              "FramesPerSecond": (oiio.TypeRational, (24, 1))})
    source = open_source(tmp_path / "in")
    sink = open_sink(tmp_path / "out", source, total=3, out_fps=30)
    sink.write(1, None, copy_of=1)  # a copy carries the timecode of its OUTPUT position
    sink.write(2, next(source.frames()))
    assert str(timecode_of(read_raw(sink.path(1)).spec)) == "01:00:00:01"
    assert str(timecode_of(read_raw(sink.path(2)).spec)) == "01:00:00:02"


# ----------------------------------------------------------------------------------------------- damaged files

@pytest.mark.parametrize("ext, depth, bits", [(".dpx", "uint16", 10), (".exr", "half", 0), (".png", "uint8", 0)])
def test_truncated_frame_gives_one_line_naming_the_file(tmp_path, ext, depth, bits):
    make_sequence(tmp_path, ext, depth, n=2, bits=bits)
    path = sorted(tmp_path.iterdir())[1]
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    source = open_source(tmp_path)
    frames = source.frames()
    next(frames)
    with pytest.raises(FramesIOError) as err:
        next(frames)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert not verify(path)


def test_zero_byte_frame_message(tmp_path):
    make_sequence(tmp_path, ".png", "uint8", n=2)
    empty = tmp_path / "plate.1000.png"
    empty.write_bytes(b"")
    with pytest.raises(FramesIOError, match=r"plate\.1000\.png is empty \(0 bytes\)"):
        open_source(tmp_path)


def test_verify_decodes_every_pixel_not_just_the_end_marker(tmp_path):
    path = write_frame(tmp_path / "a.png", photo(), "uint8")
    assert verify(path) and verify(path, (H, W, 3)) and not verify(path, (H, W, 4))
    data = bytearray(path.read_bytes())
    assert data.endswith(b"IEND\xaeB`\x82")
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(16)  # the pixel data, not the end marker
    path.write_bytes(bytes(data))
    assert bytes(data).endswith(b"IEND\xaeB`\x82")
    assert not verify(path)


@pytest.mark.parametrize("bit_depth", ["8", "10", "16"])
def test_integer_encoding_works_in_the_callers_scratch_only_when_owned(bit_depth):
    from emavfi.media.images import from_values

    values = np.ascontiguousarray(photo(), dtype=np.float32) * 1.2 - 0.1  # some values outside 0..1
    values[3, 4, 1] = np.nan
    kept = values.copy()
    codes = from_values(values, bit_depth)
    assert np.array_equal(values, kept, equal_nan=True)  # not owned: the caller's values are left alone
    scratch = values.copy()
    assert np.array_equal(from_values(scratch, bit_depth, owned=True), codes)  # the same codes from its scratch
    assert codes[3, 4, 1] == 0 and codes.min() == 0 and codes.max() == np.iinfo(codes.dtype).max  # NaN, clipping
