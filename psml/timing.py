"""Best-of-N timing and a readable comparison table.

Best-of-N (the minimum over repeats) is the least noisy estimate of what code costs on a
shared machine: other processes can only ever make a run slower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping


def best_of(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Seconds per call of ``fn()``: the best of ``repeat`` rounds of ``number`` calls."""
    if repeat < 1 or number < 1:
        raise ValueError("repeat and number must be at least 1")
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


@dataclass
class Comparison:
    """Timings of several implementations of one thing; ``ratio(a, b)`` = time_a / time_b."""

    times: dict[str, float]

    def ratio(self, slow: str, fast: str) -> float:
        return self.times[slow] / self.times[fast]

    @property
    def fastest(self) -> str:
        return min(self.times, key=self.times.get)

    def __str__(self) -> str:
        best = self.times[self.fastest]
        width = max(len(k) for k in self.times)
        rows = [f"{name:<{width}}  {_fmt(t):>10}  {t / best:8.1f}x"
                for name, t in sorted(self.times.items(), key=lambda kv: kv[1])]
        return "\n".join([f"{'':<{width}}  {'best time':>10}  {'vs best':>9}", *rows])

    _repr_pretty_ = lambda self, p, cycle: p.text(str(self))  # noqa: E731


def compare(candidates: Mapping[str, Callable[[], object]], repeat: int = 5,
            number: int = 1) -> Comparison:
    """Time each zero-argument callable with :func:`best_of`; print the result to see a table."""
    return Comparison({name: best_of(fn, repeat, number) for name, fn in candidates.items()})
