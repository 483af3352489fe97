"""Loop vs vectorized NumPy: the figures unit 01 teaches, measured on this machine.

Writes results/vectorization.json: best-of-N seconds and the loop/vectorized ratio for
(1) the 100,000-element dot product (Python loop vs np.dot) and (2) pairwise Euclidean
distances (double loop vs the broadcasting/matrix-product formula). The functions mirror
the notebook's worked example and loop reference; the vectorized distance is written here
on its own, because the notebook's version is the student's exercise.
Run: `make bench`, or `.venv/bin/python benchmarks/vectorization.py`.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from psml.timing import compare

OUT = Path(__file__).resolve().parents[1] / "results" / "vectorization.json"


def dot_loop(a, b):
    total = 0.0
    for i in range(len(a)):
        total += a[i] * b[i]
    return total


def distances_loop(X, Y):
    D = np.empty((X.shape[0], Y.shape[0]))
    for i in range(X.shape[0]):
        for j in range(Y.shape[0]):
            D[i, j] = np.sqrt(np.sum((X[i] - Y[j]) ** 2))
    return D


def distances_vectorized(X, Y):
    d2 = (X ** 2).sum(1)[:, None] + (Y ** 2).sum(1)[None, :] - 2 * X @ Y.T
    return np.sqrt(np.clip(d2, 0, None))


def main() -> dict:
    rng = np.random.default_rng(0)
    a, b = rng.random(100_000), rng.random(100_000)
    assert np.isclose(dot_loop(a, b), a @ b)
    dot = compare({"loop": lambda: dot_loop(a, b), "np.dot": lambda: np.dot(a, b)}, repeat=7)

    X, Y = rng.normal(size=(300, 16)), rng.normal(size=(200, 16))
    assert np.allclose(distances_loop(X, Y), distances_vectorized(X, Y))
    dist = compare({"loop": lambda: distances_loop(X, Y),
                    "vectorized": lambda: distances_vectorized(X, Y)}, repeat=5)

    result = {
        "dot_product": {"n": 100_000, "loop_s": dot.times["loop"],
                        "np_dot_s": dot.times["np.dot"], "ratio": dot.ratio("loop", "np.dot")},
        "pairwise_distances": {"shape": [300, 200, 16], "loop_s": dist.times["loop"],
                               "vectorized_s": dist.times["vectorized"],
                               "ratio": dist.ratio("loop", "vectorized")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__},
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"dot product, n = 100,000:      loop/np.dot = {result['dot_product']['ratio']:.0f}x")
    print(f"pairwise distances 300x200x16: loop/vectorized = "
          f"{result['pairwise_distances']['ratio']:.0f}x")
    print(f"-> {OUT}")
    return result


if __name__ == "__main__":
    main()
