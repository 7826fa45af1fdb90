"""Report plots drawn with Matplotlib's Agg backend and returned as PNGs.

Each helper builds its own ``matplotlib.figure.Figure`` on an Agg canvas (never ``pyplot``:
no figure is registered globally, none is left open, the user's backend is not switched),
styles it inside an ``rc_context`` (the user's rcParams are restored on return) and returns
a :class:`~rampart.evaluate.png.Png` drawn at ``scale`` times its display ``size`` so it
stays sharp on high-density screens. ``png.data`` is the PNG bytes, ``png.data_uri`` the
``data:`` URI for a page.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from rampart.errors import InputError
from rampart.evaluate.png import Png

PALETTE = ("#3b4cca", "#e8590c", "#2f9e44", "#c2255c", "#1098ad", "#7048e8", "#f59f00",
           "#495057")
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold",
    "axes.labelsize": 10, "axes.labelcolor": "#1f2328", "axes.edgecolor": "#8c959f",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#d8dee4", "grid.linewidth": 0.6, "axes.axisbelow": True,
    "xtick.color": "#59636e", "ytick.color": "#59636e", "legend.frameon": False,
    "legend.fontsize": 9, "figure.facecolor": "white", "axes.facecolor": "white",
    "savefig.facecolor": "white", "lines.linewidth": 1.8, "lines.markersize": 4,
}
Size = tuple[int, int]


def _array(values: Any, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers; got {type(values).__name__}.") from None
    if arr.ndim != 1:
        raise InputError(f"{what} must be one-dimensional; got shape {arr.shape}.")
    return arr


def _new_figure(size: Size, scale: float) -> Figure:
    width, height = int(size[0]), int(size[1])
    if width < 100 or height < 80 or scale <= 0:
        raise InputError(f"figure size {size} at scale {scale} is too small; use at least "
                         "(100, 80) pixels and a positive scale.")
    return Figure(figsize=(width / 100, height / 100), dpi=100 * scale, layout="constrained")


def _finish(fig: Figure, size: Size, scale: float) -> Png:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=100 * scale)
    fig.clear()
    return Png(buffer.getvalue(), int(size[0]), int(size[1]))


def _labels(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _no_data(ax: Any, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
            color="#59636e")
    ax.set_xticks([])
    ax.set_yticks([])


def line_chart(
    series: Mapping[str, tuple[Any, Any]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    percent: bool = False,
    ylim: tuple[float, float] | None = None,
    markers: bool = True,
    vlines: Mapping[str, float] | None = None,
    size: Size = (720, 360),
    scale: float = 2.0,
) -> Png:
    """Several named ``(x, y)`` series on one axis, e.g. accuracy against eps per attack.
    ``percent`` shows y in [0, 1] as percentages; ``vlines`` marks named x positions."""
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(size, scale)
        ax = fig.add_subplot()
        drawn, whole = 0, True
        for i, (name, (xs, ys)) in enumerate(series.items()):
            x, y = _array(xs, f"series {name!r} x"), _array(ys, f"series {name!r} y")
            if x.shape != y.shape:
                raise InputError(f"series {name!r}: x has {x.size} values but y has {y.size}.")
            if x.size == 0:
                continue
            whole = whole and bool(np.all(np.isfinite(x) & (x == np.round(x))))
            ax.plot(x, y, label=str(name), color=PALETTE[i % len(PALETTE)],
                    marker="o" if markers and x.size <= 30 else None)
            drawn += 1
        if not drawn:
            _no_data(ax)
        else:
            if whole:  # epochs, steps, counts: no ticks between whole numbers
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            for j, (name, xv) in enumerate((vlines or {}).items()):
                ax.axvline(float(xv), color="#59636e", linestyle="--", linewidth=1,
                           label=str(name), alpha=0.8 - 0.15 * (j % 3))
            if percent:
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
                ax.set_ylim(*(ylim or (-0.02, 1.02)))
            elif ylim is not None:
                ax.set_ylim(*ylim)
            if drawn > 1 or vlines:
                ax.legend(loc="best")
        _labels(ax, title, xlabel, ylabel)
        return _finish(fig, size, scale)


def histogram(
    values: Any | Mapping[str, Any],
    *,
    bins: int | Sequence[float] = 30,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    title: str = "",
    xlabel: str = "",
    ylabel: str = "count",
    log: bool = False,
    value_range: tuple[float, float] | None = None,
    missing_note: str = "{n} non-finite values not shown",
    size: Size = (720, 320),
    scale: float = 2.0,
) -> Png:
    """The distribution of one set of values, or several named sets overlaid, e.g. minimal
    perturbation sizes, or suspicion scores with a ``threshold`` line. Non-finite values
    (an attack that found nothing) are left out and counted in ``missing_note`` (``{n}`` is
    replaced by their number), shown above the plot."""
    groups = values if isinstance(values, Mapping) else {"": values}
    arrays = {str(k): _array(v, f"histogram values {k!r}" if k else "histogram values")
              for k, v in groups.items()}
    finite = {k: a[np.isfinite(a)] for k, a in arrays.items()}
    dropped = sum(a.size - finite[k].size for k, a in arrays.items())
    pooled = np.concatenate([*finite.values(), np.zeros(0)])
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(size, scale)
        ax = fig.add_subplot()
        if pooled.size == 0:
            _no_data(ax, "no finite values" if dropped else "no data")
        else:
            lo, hi = value_range or (float(pooled.min()), float(pooled.max()))
            if threshold is not None and value_range is None:
                lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.histogram_bin_edges(pooled, bins=bins, range=(lo, hi))
            overlay = len(finite) > 1
            for i, (name, arr) in enumerate(finite.items()):
                ax.hist(arr, bins=edges, color=PALETTE[i % len(PALETTE)], label=name or None,
                        alpha=0.55 if overlay else 0.9, edgecolor="white", linewidth=0.5)
            if threshold is not None:
                ax.axvline(float(threshold), color=PALETTE[3], linestyle="--", linewidth=1.5,
                           label=f"{threshold_label} ({threshold:.3g})")
            if log:
                ax.set_yscale("log")
            if overlay or threshold is not None:
                ax.legend(loc="best")
        if dropped:
            ax.set_title(missing_note.format(n=dropped), loc="right", fontsize=8,
                         color="#59636e", fontweight="normal")
        _labels(ax, title, xlabel, ylabel)
        return _finish(fig, size, scale)


def bar_chart(
    categories: Sequence[Any],
    groups: Mapping[str, Any],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    percent: bool = False,
    size: Size = (720, 320),
    scale: float = 2.0,
) -> Png:
    """Grouped bars: one group of bars per category (e.g. per class), one colour per named
    series (e.g. clean vs robust accuracy)."""
    names = [str(c) for c in categories]
    data = {str(k): _array(v, f"bar values {k!r}") for k, v in groups.items()}
    for k, arr in data.items():
        if arr.size != len(names):
            raise InputError(f"bar series {k!r} has {arr.size} values for {len(names)} "
                             "categories; give one value per category.")
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(size, scale)
        ax = fig.add_subplot()
        if not names or not data:
            _no_data(ax)
        else:
            pos = np.arange(len(names))
            width = 0.8 / len(data)
            for i, (name, arr) in enumerate(data.items()):
                offset = (i - (len(data) - 1) / 2) * width
                ax.bar(pos + offset, np.nan_to_num(arr), width=width * 0.95, label=name,
                       color=PALETTE[i % len(PALETTE)])
            ax.set_xticks(pos, names, rotation=45 if len(names) > 12 else 0,
                          ha="right" if len(names) > 12 else "center")
            ax.grid(axis="x", visible=False)
            if percent:
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
                ax.set_ylim(0, 1.05)
            if len(data) > 1:
                fig.legend(loc="outside upper right", ncols=min(len(data), 4))
        _labels(ax, title, xlabel, ylabel)
        return _finish(fig, size, scale)
