"""JPEG compression as an input-preprocessing defence (Dziugaite et al., 2016; Das et al.,
2017), through Pillow's real codec.

Each image is quantised to 8 bits, encoded and decoded by Pillow (libjpeg) at ``quality``,
and mapped back to ``bounds``. The codec is not differentiable, so the module is declared
non-differentiable and its output carries a zero input gradient: naive gradient attacks
see the masking (they stall) instead of failing, and the audit attacks through it with BPDA.
One image at a time through the codec costs tens of microseconds per small image.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import torch
from PIL import Image

from rampart.defenses.preprocessing import Preprocessor
from rampart.errors import ConfigError, InputError


class JPEGCompression(Preprocessor):
    """Round-trips every image through JPEG at ``quality`` (1-95, Pillow's scale).

    Inputs are ``(N, C, H, W)`` or ``(N, H, W)``: three channels are coded as one RGB image
    (with JPEG's usual chroma subsampling), any other channel count one greyscale plane per
    channel.
    """

    differentiable = False
    random = False

    def __init__(self, quality: int = 75, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(bounds)
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ConfigError(f"quality must be an integer from 1 to 95 (Pillow's JPEG scale; "
                              f"lower compresses harder), got {quality!r}.")
        self.quality = quality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (3, 4):
            raise InputError(f"JPEGCompression needs image batches shaped (N, C, H, W) or "
                             f"(N, H, W), got shape {tuple(x.shape)}.")
        images = x.detach().unsqueeze(1) if x.ndim == 3 else x.detach()
        pixels = (self._to_unit(images) * 255).round().to(torch.uint8).cpu().numpy()
        if pixels.shape[1] == 3:
            coded = np.stack([self._code(img.transpose(1, 2, 0), "RGB").transpose(2, 0, 1)
                              for img in pixels])
        else:
            coded = np.stack([[self._code(plane, "L") for plane in img] for img in pixels])
        out = torch.from_numpy(coded).to(device=x.device, dtype=x.dtype).reshape(x.shape)
        # zero gradient rather than none: naive attacks run (and stall) instead of failing
        return self._from_unit(out / 255) + 0.0 * x

    def _code(self, array: np.ndarray, mode: str) -> np.ndarray:
        buffer = BytesIO()
        Image.fromarray(np.ascontiguousarray(array)).save(  # uint8 HxW: L, HxWx3: RGB
            buffer, format="JPEG", quality=self.quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert(mode))

    def extra_repr(self) -> str:
        return f"quality={self.quality}, {super().extra_repr()}"
