"""Which of a source's channels is alpha: what a video output keeps besides RGB."""
from __future__ import annotations

from typing import Any


def alpha_index(source: Any) -> int | None:
    """Which of a source's delivered channels (RGB first) is alpha, or None: a video's fourth, a file's channel
    named A (or alpha), a gray+alpha file's second (delivered fourth)."""
    channels = int(getattr(source, "channels", 3))
    if channels <= 3:
        return None
    fmt, names, order = (getattr(source, key, None) for key in ("format", "channel_names", "order"))
    if names is None or order is None or fmt is None:
        return 3
    if fmt.is_gray:
        return 3 if fmt.channels == 2 else None
    delivered = [names[i] for i in order]
    return next((k for k, name in enumerate(delivered) if k >= 3 and name.rsplit(".", 1)[-1].upper() in
                 ("A", "ALPHA")), None)
