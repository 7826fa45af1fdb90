"""The Shapiro-Wilk ``W`` statistic alone, fast enough to run on every monitored query.

PRADA compares ``W`` with a threshold and never needs the p-value, while
``scipy.stats.shapiro`` spends most of its ~0.4 ms on argument handling and the p-value. Here
the coefficients follow Royston's approximation (Statistics and Computing, 1992, 2:117-119;
the one scipy's algorithm AS R94 uses), are cached per sample size, and ``W`` is a sort and
two dot products; it agrees with scipy to about 1e-9.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import ndtri

__all__ = ["shapiro_w"]

# Royston's polynomials in 1/sqrt(n) for the two largest coefficients (lowest power first)
_LARGEST = (0.0, 0.221157, -0.147981, -2.071190, 4.434685, -2.706056)
_SECOND = (0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633)


@functools.lru_cache(maxsize=64)
def _coefficients(n: int) -> np.ndarray:
    """The ``n`` weights ``a`` of the ordered sample (antisymmetric, unit length)."""
    if n == 3:
        return np.array([-np.sqrt(0.5), 0.0, np.sqrt(0.5)])
    m = ndtri((np.arange(1, n + 1) - 0.375) / (n + 0.25))  # approximate normal order stats
    total = float(m @ m)
    u = 1.0 / np.sqrt(n)
    largest = m[-1] / np.sqrt(total) + np.polynomial.polynomial.polyval(u, _LARGEST)
    if n > 5:
        second = m[-2] / np.sqrt(total) + np.polynomial.polynomial.polyval(u, _SECOND)
        scale = np.sqrt((total - 2 * m[-1] ** 2 - 2 * m[-2] ** 2)
                        / (1 - 2 * largest ** 2 - 2 * second ** 2))
        a = m / scale
        a[[0, 1, -2, -1]] = -largest, -second, second, largest
    else:
        scale = np.sqrt((total - 2 * m[-1] ** 2) / (1 - 2 * largest ** 2))
        a = m / scale
        a[[0, -1]] = -largest, largest
    a.setflags(write=False)
    return a


def shapiro_w(values: np.ndarray) -> float:
    """Shapiro-Wilk ``W`` of at least 3 values that are not all equal (1 = perfectly normal
    order statistics; small values = far from normal)."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size < 3:
        raise ValueError(f"the Shapiro-Wilk W needs at least 3 values, got {x.size}.")
    centred = x - x.mean()
    spread = float(centred @ centred)
    if spread == 0.0:
        raise ValueError("the Shapiro-Wilk W is undefined when all values are equal.")
    return min(1.0, float(_coefficients(x.size) @ x) ** 2 / spread)
