"""Reproducible Gaussian noise for randomized smoothing, drawn in large batches.

Smoothing evaluates the base model on ``m`` noisy copies of every input. Each input's copies
are split into fixed *blocks* of ``block`` rows; every block of noise is drawn with one
``normal_`` call from a generator seeded by a hash of ``(seed, phase, block index)`` and,
in ``independent`` mode, the input's index too. The copies of all inputs form one long
virtual sequence of rows that is cut into batches of any size, so the noise a copy gets
depends on the seed, ``m``, ``block`` (and the input's index) only: the batch size changes
speed and memory, never the result (on one device; CPU and CUDA generators differ).

Two modes:

- ``shared`` (the default): every input gets the same noise blocks. The sequence is
  block-major (block 0 of input 0, of input 1, ..., then block 1 of each), so each block is
  drawn once per call and reused for every input: drawing noise, which costs several percent
  of a small network's forward pass, almost disappears. For each input on its own the
  copies are still independent N(0, sigma^2 I) draws, which is all that a certificate's
  Clopper-Pearson bound (and its guarantee, per input) needs; what changes is that the
  Monte-Carlo errors of different inputs are correlated, so a certified accuracy averaged
  over a data set is a slightly noisier estimate of its expectation.
- ``independent``: each input's noise is seeded by its index too (input-major order), so
  the inputs' estimates are independent of each other, as in Cohen et al.'s code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rampart.errors import ConfigError

DEFAULT_BLOCK = 1_000  # noisy copies per seeded block
_MASK64 = (1 << 64) - 1
PHASES = {"select": 1, "estimate": 2, "predict": 3}
NOISE_MODES = ("shared", "independent")
_SHARED = -1  # the "input index" that seeds shared noise blocks: no real input has it


def _mix(value: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def block_seed(seed: int, phase: str, index: int, block: int) -> int:
    """The seed of one block of noise: distinct for every (seed, phase, input, block)."""
    value = _mix(seed & _MASK64)
    for part in (PHASES[phase], index, block):
        value = _mix(value ^ (part & _MASK64))
    return value


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of a batch hold copies ``[first, first + stop - start)`` of
    input ``local`` (its position in this call; ``index`` is the one seeds use)."""

    local: int
    index: int
    start: int
    stop: int
    first: int


class NoiseStream:
    """Batches of ``x[i] + sigma * noise`` rows, ``copies`` per input.

    Iterating yields ``(batch, segments)``: a view of one reused buffer (valid until the next
    batch) and which input each run of rows belongs to. In ``independent`` mode the rows come
    in input order and ``offset`` is added to the input positions before seeding, so a slice
    of a dataset gets the noise it gets in the whole; in ``shared`` mode (see the module
    docstring) they come block by block and the noise does not depend on the inputs at all.
    """

    def __init__(
        self,
        x: torch.Tensor,
        copies: int,
        sigma: float,
        seed: int,
        phase: str,
        batch_size: int,
        block: int = DEFAULT_BLOCK,
        offset: int = 0,
        mode: str = "shared",
    ) -> None:
        if copies < 1 or batch_size < 1 or block < 1:
            raise ConfigError(f"copies, batch_size and block must be at least 1; got {copies}, "
                              f"{batch_size} and {block}.")
        if phase not in PHASES:
            raise ConfigError(f"unknown noise phase {phase!r}; use one of {sorted(PHASES)}.")
        if mode not in NOISE_MODES:
            raise ConfigError(f"unknown noise mode {mode!r}; use one of "
                              f"{', '.join(NOISE_MODES)}.")
        self.x = x
        self.copies = int(copies)
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.phase = phase
        self.batch_size = int(batch_size)
        self.block = int(block)
        self.offset = int(offset)
        self.mode = mode
        self.generator = torch.Generator(device=x.device)
        self._cached: tuple[tuple[int, int], torch.Tensor] | None = None

    @property
    def total_rows(self) -> int:
        return self.x.shape[0] * self.copies

    def __len__(self) -> int:
        return -(-self.total_rows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[Segment]]]:
        rows = min(self.batch_size, self.total_rows)
        buffer = torch.empty((rows, *self.x.shape[1:]), dtype=self.x.dtype, device=self.x.device)
        for start in range(0, self.total_rows, self.batch_size):
            stop = min(start + self.batch_size, self.total_rows)
            batch = buffer[:stop - start]
            segments = self._segments(start, stop)
            for seg in segments:
                self._fill(batch, seg)
            yield batch, segments

    def _segments(self, start: int, stop: int) -> list[Segment]:
        if self.mode == "shared":
            return self._shared_segments(start, stop)
        out = []
        m = self.copies
        for local in range(start // m, (stop - 1) // m + 1):
            lo, hi = max(start, local * m), min(stop, (local + 1) * m)
            out.append(Segment(local, local + self.offset, lo - start, hi - start, lo - local * m))
        return out

    def _shared_segments(self, start: int, stop: int) -> list[Segment]:
        """Block-major order: block ``b`` of every input occupies ``N * rows_b`` rows from
        ``N * b * block`` on (every earlier block is full), input after input."""
        n, out, row = self.x.shape[0], [], start
        while row < stop:
            b = row // (n * self.block)
            rows_b = min(self.block, self.copies - b * self.block)
            within = row - n * b * self.block
            local, r = divmod(within, rows_b)
            end = min(stop, n * b * self.block + (local + 1) * rows_b)
            out.append(Segment(local, local + self.offset, row - start, end - start,
                               b * self.block + r))
            row = end
        return out

    def _fill(self, batch: torch.Tensor, seg: Segment) -> None:
        """Noise for the segment's copies, block by block, with the input added."""
        out = batch[seg.start:seg.stop]
        if self.mode == "shared":  # a shared segment never spans two blocks
            b = seg.first // self.block
            lo = seg.first - b * self.block
            noise = self._whole_block(_SHARED, b, min(self.block, self.copies - b * self.block))
            torch.add(noise[lo:lo + out.shape[0]], self.x[seg.local], out=out)
            return
        first, last = seg.first, seg.first + (seg.stop - seg.start)
        for b in range(first // self.block, (last - 1) // self.block + 1):
            b_lo, b_hi = b * self.block, min((b + 1) * self.block, self.copies)
            lo, hi = max(first, b_lo), min(last, b_hi)
            part = batch[seg.start + lo - first:seg.start + hi - first]
            if lo == b_lo and hi == b_hi:
                self._draw(part, seg.index, b)
            else:  # a block split between batches: draw it whole once, use a slice
                part.copy_(self._whole_block(seg.index, b, b_hi - b_lo)[lo - b_lo:hi - b_lo])
        out.add_(self.x[seg.local])

    def _draw(self, out: torch.Tensor, index: int, b: int) -> None:
        self.generator.manual_seed(block_seed(self.seed, self.phase, index, b))
        out.normal_(0.0, self.sigma, generator=self.generator)

    def _whole_block(self, index: int, b: int, rows: int) -> torch.Tensor:
        key = (index, b)
        if self._cached is None or self._cached[0] != key:
            reuse = self._cached is not None and self._cached[1].shape[0] == rows
            block = self._cached[1] if reuse else torch.empty(
                (rows, *self.x.shape[1:]), dtype=self.x.dtype, device=self.x.device)
            self._draw(block, index, b)
            self._cached = (key, block)
        return self._cached[1]
