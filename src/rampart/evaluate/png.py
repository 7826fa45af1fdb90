"""PNG images as reports carry them: bytes, their pixel size, and ``data:`` URIs.

Reports are self-contained pages, so every picture travels inline as a base64 data URI.
``Png`` keeps the bytes together with the size the page should show them at (plots are
drawn at twice that size so they stay sharp on high-density screens).
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from pathlib import Path

from rampart.errors import InputError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI_PREFIX = "data:image/png;base64,"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header; InputError if it is not a PNG."""
    if len(data) < 24 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        raise InputError("these bytes are not a PNG image (bad signature or header); pass the "
                         "bytes of a .png file or a figure from rampart.evaluate.figures.")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def to_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes (checked to be a PNG)."""
    png_size(data)
    return DATA_URI_PREFIX + base64.b64encode(data).decode("ascii")


def from_data_uri(uri: str) -> bytes:
    """The PNG bytes inside a ``data:image/png;base64,`` URI; InputError for anything else."""
    if not uri.startswith(DATA_URI_PREFIX):
        raise InputError(f"expected a 'data:image/png;base64,' URI, got {uri[:40]!r}...; "
                         "reports embed their images and never link to files or URLs.")
    try:
        data = base64.b64decode(uri[len(DATA_URI_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the data URI's base64 payload is corrupt; re-encode the PNG.") from None
    png_size(data)
    return data


@dataclass(frozen=True)
class Png:
    """A PNG image plus the CSS size (in pixels) a page shows it at."""

    data: bytes
    width: int  # display width in CSS pixels
    height: int  # display height in CSS pixels

    @classmethod
    def from_bytes(cls, data: bytes, scale: float = 1.0) -> Png:
        """Wrap PNG bytes; ``scale=2`` shows a 1440 px wide image 720 px wide (sharp on HiDPI)."""
        width, height = png_size(data)
        return cls(bytes(data), max(1, round(width / scale)), max(1, round(height / scale)))

    @classmethod
    def from_data_uri(cls, uri: str, scale: float = 1.0) -> Png:
        return cls.from_bytes(from_data_uri(uri), scale)

    @property
    def pixel_size(self) -> tuple[int, int]:
        """The image's real (width, height) in pixels."""
        return png_size(self.data)

    @property
    def data_uri(self) -> str:
        return to_data_uri(self.data)

    def save(self, path: str | Path) -> Path:
        """Write the PNG to ``path`` (for reports that also ship separate image files)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.data)
        return path
