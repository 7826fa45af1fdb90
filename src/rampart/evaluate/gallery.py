"""Image tiles for reports: clean / adversarial / amplified perturbation, and flagged samples.

Inputs are batches, ``(N, C, H, W)`` with one or three channels or ``(N, H, W)``, as NumPy
arrays or torch tensors with values in ``bounds``. Small images (8x8 digits, 28x28 MNIST)
are enlarged with nearest-neighbour so every pixel stays a crisp square. A perturbation is
invisible at its true size, so it is shown rescaled to fill the range around mid-grey (grey
means unchanged; lighter and darker are the two signs), with the factor in its label.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from rampart.errors import InputError
from rampart.evaluate.png import Png

TARGET_SIZE = 96  # small images are enlarged by a whole factor to at least this many pixels
MAX_DISPLAY = 160  # large images are shown at most this many CSS pixels wide or high


@dataclass(frozen=True)
class Panel:
    """One image in a gallery item, with a short label under it."""

    image: Png
    label: str = ""
    alt: str = ""


@dataclass(frozen=True)
class GalleryItem:
    """A gallery card: one or more panels side by side, a caption and an optional detail."""

    panels: tuple[Panel, ...]
    caption: str = ""
    detail: str = ""


def to_numpy(images: Any, what: str = "images") -> np.ndarray:
    """A batch as a float64 array ``(N, H, W)`` or ``(N, H, W, 3)`` (channels last)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)
    elif arr.ndim != 3:
        raise InputError(f"{what} must be a batch shaped (N, C, H, W) with C = 1 or 3, or "
                         f"(N, H, W); got shape {tuple(arr.shape)}. Add a batch dimension for "
                         "a single image (x[None]).")
    if arr.shape[0] and not np.isfinite(arr).all():
        raise InputError(f"{what} contain NaN or infinite values; a gallery can only show "
                         "finite pixel values.")
    return arr


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise InputError(f"bounds must be two finite numbers (lo, hi) with lo < hi; got {bounds}.")
    return lo, hi


def to_uint8(images: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Map values in ``bounds`` to 0..255 (values outside are clipped)."""
    lo, hi = _check_bounds(bounds)
    unit = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    return np.rint(unit * 255.0).astype(np.uint8)


def amplify(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each perturbation rescaled into [0, 1] centred at 0.5 (mid-grey), and by how much its
    values were multiplied relative to the image's range (0 where nothing changed)."""
    flat = np.abs(delta).reshape(delta.shape[0], -1)
    peak = flat.max(axis=1) if flat.shape[1] else np.zeros(delta.shape[0])
    safe = np.where(peak > 0, peak, 1.0)
    shape = (-1,) + (1,) * (delta.ndim - 1)
    unit = 0.5 + 0.5 * delta / safe.reshape(shape)
    factor = np.where(peak > 0, 0.5 / safe, 0.0)
    return unit, factor


def upscale_factor(height: int, width: int, target: int = TARGET_SIZE) -> int:
    """The whole factor that brings the longer side to at least ``target`` pixels."""
    return max(1, math.ceil(target / max(1, height, width)))


def tile(image: np.ndarray, scale: int = 1, max_display: int = MAX_DISPLAY) -> Png:
    """One uint8 image ``(H, W)`` or ``(H, W, 3)`` as a PNG enlarged ``scale`` times; large
    images keep their pixels but are shown at most ``max_display`` CSS pixels wide or high."""
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    height, width = image.shape[:2]
    shrink = min(1.0, max_display / max(height, width))
    return Png(buffer.getvalue(), max(1, round(width * shrink)), max(1, round(height * shrink)))


def _factor(value: float) -> str:
    """An amplification factor in two or three readable digits: 1.5, 12, 240, 3.1e+03."""
    if value >= 1000:
        return f"{value:.2g}"
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _namer(class_names: Sequence[str] | None) -> Callable[[Any], str]:
    def name(label: Any) -> str:
        label = int(label)
        if class_names is not None and 0 <= label < len(class_names):
            return str(class_names[label])
        return str(label)

    return name


def _per_image(values: Any, n: int, what: str) -> list[Any] | None:
    """``values`` as a list of the first ``n`` entries (None stays None)."""
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    values = np.asarray(values).tolist() if not isinstance(values, list | tuple) else values
    if len(values) < n:
        raise InputError(f"{what} has {len(values)} entries but there are {n} images; give one "
                         "per image.")
    return list(values[:n])


def adversarial_gallery(
    x: Any,
    x_adv: Any,
    *,
    labels: Any = None,
    adv_predictions: Any = None,
    details: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    limit: int | None = None,
    target_size: int = TARGET_SIZE,
) -> list[GalleryItem]:
    """Cards of clean, adversarial and amplified perturbation side by side.

    The caption reads ``"7 → 3"`` (label, then the adversarial prediction) when both are
    given; ``details`` adds a second line per card (attack, norm, confidence...).
    """
    clean = to_numpy(x, "x")
    adv = to_numpy(x_adv, "x_adv")
    if clean.shape != adv.shape:
        raise InputError(f"x and x_adv must have the same shape; got {clean.shape} and "
                         f"{adv.shape}.")
    n = clean.shape[0] if limit is None else min(clean.shape[0], int(limit))
    clean, adv = clean[:n], adv[:n]
    labels_ = _per_image(labels, n, "labels")
    preds = _per_image(adv_predictions, n, "adv_predictions")
    details_ = _per_image(details, n, "details")
    lo, hi = _check_bounds(bounds)
    scale = upscale_factor(clean.shape[1], clean.shape[2], target_size)
    clean_u8, adv_u8 = to_uint8(clean, bounds), to_uint8(adv, bounds)
    unit, factors = amplify((adv - clean) / (hi - lo))
    delta_u8 = to_uint8(unit, (0.0, 1.0))
    name = _namer(class_names)
    items = []
    for i in range(n):
        factor = float(factors[i])
        delta_label = f"δ ×{_factor(factor)}" if factor > 0 else "δ = 0"
        delta_alt = (f"perturbation of image {i + 1}, amplified ×{_factor(factor)} around grey"
                     if factor > 0 else f"image {i + 1} was not changed")
        caption = ""
        if labels_ is not None and preds is not None:
            caption = f"{name(labels_[i])} → {name(preds[i])}"
        elif labels_ is not None:
            caption = f"label {name(labels_[i])}"
        elif preds is not None:
            caption = f"→ {name(preds[i])}"
        items.append(GalleryItem(
            panels=(Panel(tile(clean_u8[i], scale), "clean", f"clean image {i + 1}"),
                    Panel(tile(adv_u8[i], scale), "adversarial", f"adversarial image {i + 1}"),
                    Panel(tile(delta_u8[i], scale), delta_label, delta_alt)),
            caption=caption,
            detail=str(details_[i]) if details_ else "",
        ))
    return items


def examples_gallery(
    examples: Sequence[Mapping[str, Any]],
    *,
    detail: Callable[[Mapping[str, Any]], str] | None = None,
    class_names: Sequence[str] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    limit: int | None = None,
) -> list[GalleryItem]:
    """:func:`adversarial_gallery` for examples kept as dicts, one per sample, with the
    arrays ``x`` and ``x_adv`` (one image each) and optionally ``label`` and
    ``adv_prediction``; ``detail(example)`` writes each card's second line."""
    examples = list(examples)[:limit] if limit is not None else list(examples)
    if not examples:
        return []
    missing = [i for i, e in enumerate(examples) if "x" not in e or "x_adv" not in e]
    if missing:
        raise InputError(f"example {missing[0]} has no 'x' or 'x_adv'; each example needs both "
                         "images.")

    def column(key: str) -> list[Any] | None:
        return [e[key] for e in examples] if all(key in e for e in examples) else None

    def stack(key: str) -> np.ndarray:
        images = [e[key].detach().cpu().numpy() if isinstance(e[key], torch.Tensor)
                  else np.asarray(e[key]) for e in examples]
        if len({i.shape for i in images}) > 1:
            raise InputError(f"the examples' {key!r} images differ in shape; a gallery needs "
                             "images of one size.")
        return np.stack(images)

    return adversarial_gallery(
        stack("x"), stack("x_adv"), labels=column("label"),
        adv_predictions=column("adv_prediction"),
        details=[detail(e) for e in examples] if detail is not None else None,
        class_names=class_names, bounds=bounds)


def sample_gallery(
    images: Any,
    *,
    captions: Sequence[str] | None = None,
    details: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    limit: int | None = None,
    target_size: int = TARGET_SIZE,
) -> list[GalleryItem]:
    """One card per image (e.g. samples a data scanner flagged), with optional captions,
    detail lines and a short label under each image."""
    arr = to_numpy(images, "images")
    n = arr.shape[0] if limit is None else min(arr.shape[0], int(limit))
    arr = arr[:n]
    captions_ = _per_image(captions, n, "captions")
    details_ = _per_image(details, n, "details")
    labels_ = _per_image(labels, n, "labels")
    scale = upscale_factor(arr.shape[1], arr.shape[2], target_size)
    pixels = to_uint8(arr, bounds)
    return [GalleryItem(
        panels=(Panel(tile(pixels[i], scale), str(labels_[i]) if labels_ else "",
                      f"sample {i + 1}"),),
        caption=str(captions_[i]) if captions_ else "",
        detail=str(details_[i]) if details_ else "",
    ) for i in range(n)]
