"""SMPTE timecode of image frames: read it from metadata, carry it to output frames at another rate, write it.

OpenEXR and OpenImageIO store it as "smpte:TimeCode" (two ints: the time in BCD and the user bits); DPX
also as "dpx:TimeCode" text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .base import import_oiio


def _bcd(value: int) -> int:
    return (value // 10) << 4 | (value % 10)


def _unbcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0xF)


@dataclass(frozen=True)
class Timecode:
    """SMPTE 12M timecode as OpenEXR/OpenImageIO store it ("smpte:TimeCode": two ints, the time in BCD and
    the user bits). phase: the field/phase bit, which marks the second frame of a pair at rates above 30.
    flags: the other bits (colour frame, binary groups), kept as they were."""

    hours: int
    minutes: int
    seconds: int
    frames: int
    drop: bool = False
    phase: bool = False
    flags: int = 0
    user_bits: int = 0

    _DROP, _COLOUR, _PHASE = 1 << 6, 1 << 7, 1 << 15
    _FLAG_MASK = (1 << 7) | (1 << 23) | (1 << 30) | (1 << 31)

    @classmethod
    def from_smpte(cls, value: Any) -> Timecode:
        time, user = (int(v) & 0xFFFFFFFF for v in value)
        return cls(hours=_unbcd((time >> 24) & 0x3F), minutes=_unbcd((time >> 16) & 0x7F),
                   seconds=_unbcd((time >> 8) & 0x7F), frames=_unbcd(time & 0x3F), drop=bool(time & cls._DROP),
                   phase=bool(time & cls._PHASE), flags=time & cls._FLAG_MASK, user_bits=user)

    def to_smpte(self) -> tuple[int, int]:
        time = (_bcd(self.hours) << 24 | _bcd(self.minutes) << 16 | _bcd(self.seconds) << 8 | _bcd(self.frames)
                | (self._DROP if self.drop else 0) | (self._PHASE if self.phase else 0) | self.flags)
        # OpenImageIO's attribute takes signed ints.
        return tuple(v - (1 << 32) if v >= 1 << 31 else v for v in (time, self.user_bits))  # type: ignore[return-value]

    def __str__(self) -> str:
        sep = ";" if self.drop else ":"
        phase = ".1" if self.phase else ""
        return f"{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}{sep}{self.frames:02d}{phase}"

    @classmethod
    def parse(cls, text: str) -> Timecode:
        """'01:00:00:00' or, drop-frame, '00:59:59;28'."""
        parts = text.replace(";", ":").split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise ValueError(f"timecode must be HH:MM:SS:FF; got {text!r}")
        h, m, s, f = map(int, parts)
        return cls(h, m, s, f, drop=";" in text)


def _timebase(rate: Fraction) -> tuple[int, int]:
    """(group, base): rates above 30 count timecode frames in groups (SMPTE frame pairs at 48-60 fps)."""
    nominal = max(1, round(rate))
    group = max(1, math.ceil(nominal / 30))
    return group, max(1, round(nominal / group))


def _is_drop_rate(rate: Fraction) -> bool:
    return rate.denominator == 1001 and _timebase(rate)[1] == 30


def _label_to_count(tc: Timecode, base: int, drop: bool) -> int:
    count = ((tc.hours * 60 + tc.minutes) * 60 + tc.seconds) * base + tc.frames
    if drop:
        minutes = tc.hours * 60 + tc.minutes
        count -= 2 * (minutes - minutes // 10)
    return count


def _count_to_label(count: int, base: int, drop: bool) -> tuple[int, int, int, int]:
    if drop:  # 29.97 drop-frame: labels 00 and 01 skipped each minute except every tenth
        day = 24 * 107892
        count %= day
        tens, rest = divmod(count, 17982)
        count += 18 * tens + (2 * ((rest - 2) // 1798) if rest > 1 else 0)
    else:
        count %= 24 * 3600 * base
    frames = count % base
    seconds = count // base
    return seconds // 3600, seconds // 60 % 60, seconds % 60, frames


def advance_timecode(first: Timecode, source_rate: Fraction, k: int, out_rate: Fraction) -> Timecode:
    """The timecode of output frame k at out_rate when source frame 0 carries `first` at source_rate.

    The first timecode is the same instant in both: its label is converted from the source's timecode base to
    the output's (01:00:00:12 at 24 fps = 01:00:00:15 at 30 fps), then k frames are added at the output rate.
    Above 30 fps the label counts at half the rate and the phase bit marks the second frame of each pair
    (SMPTE ST 12-1 frame pairs): output 5 at 48 fps after 01:00:00:00 is 01:00:00:02 with the phase bit.
    Drop-frame is kept where it exists (the source was drop-frame and the output is 29.97 or 59.94 fps).
    """
    source_rate, out_rate = Fraction(source_rate), Fraction(out_rate)
    s_group, s_base = _timebase(source_rate)
    o_group, o_base = _timebase(out_rate)
    s_drop = first.drop and s_base == 30
    o_drop = first.drop and _is_drop_rate(out_rate)
    source_frame = _label_to_count(first, s_base, s_drop) * s_group + (1 if first.phase and s_group == 2 else 0)
    # The same instant on the output's nominal frame grid (exact when the rates are multiples).
    start = Fraction(source_frame * o_group * o_base, s_group * s_base)
    frame = math.floor(start + Fraction(1, 2)) + k
    label, position = divmod(frame, o_group)
    h, m, s, f = _count_to_label(label, o_base, o_drop)
    return Timecode(h, m, s, f, drop=o_drop, phase=o_group == 2 and position == 1, flags=first.flags,
                    user_bits=first.user_bits)


def timecode_of(spec: Any) -> Timecode | None:
    """The frame's SMPTE timecode (smpte:TimeCode, else DPX's dpx:TimeCode text), or None."""
    value = spec.getattribute("smpte:TimeCode")
    if isinstance(value, tuple) and len(value) == 2:
        return Timecode.from_smpte(value)
    text = spec.getattribute("dpx:TimeCode")
    if isinstance(text, str) and text.strip():
        try:
            return Timecode.parse(text.strip())
        except ValueError:
            return None
    return None


def set_timecode(spec: Any, timecode: Timecode) -> None:
    oiio = import_oiio()
    spec.attribute("smpte:TimeCode", oiio.TypeTimeCode, timecode.to_smpte())
    if spec.getattribute("dpx:TimeCode") is not None:
        spec.attribute("dpx:TimeCode", str(timecode).split(".")[0].replace(";", ":"))

__all__ = ["Timecode", "advance_timecode", "set_timecode", "timecode_of"]
