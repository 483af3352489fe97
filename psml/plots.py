"""Figures used across the course: decision regions and learning curves.

Only matplotlib's object API is used (no global style changes); every function takes an
optional ``ax`` and returns it, so notebooks can compose figures.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 4))
    return ax


def decision_boundary(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                      y: np.ndarray | None = None, ax=None, resolution: int = 200,
                      margin: float = 0.5, labels: Sequence[str] | None = None,
                      title: str | None = None):
    """Shade the regions a classifier assigns to each class, and scatter ``X`` on top.

    ``predict`` maps an (n, 2) array to n class labels (any values: -1/+1, 0/1, 0..9).
    ``X`` is (n, 2); ``y`` (n,) colours the points. Returns the axes.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary needs 2 features, X has shape {X.shape}: "
                         "pick two columns, e.g. X[:, [0, 2]]")
    ax = _axes(ax)
    (x0, y0), (x1, y1) = X.min(0) - margin, X.max(0) + margin
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.c_[xx.ravel(), yy.ravel()]
    z = np.asarray(predict(grid)).reshape(xx.shape)
    classes = np.unique(z if y is None else np.concatenate([np.unique(z), np.unique(y)]))
    index = {c: i for i, c in enumerate(classes)}
    zi = np.vectorize(index.get)(z)
    ax.contourf(xx, yy, zi, levels=np.arange(len(classes) + 1) - 0.5, cmap="coolwarm", alpha=0.3)
    if y is not None:
        y = np.asarray(y)
        for c in np.unique(y):
            name = labels[index[c]] if labels is not None else str(c)
            ax.scatter(*X[y == c].T, s=25, edgecolor="k", linewidth=0.5,
                       color=_class_colour(index[c], len(classes)), label=name)
        ax.legend(loc="best", fontsize="small")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    if title:
        ax.set_title(title)
    return ax


def _class_colour(i: int, n: int):
    import matplotlib

    return matplotlib.colormaps["coolwarm"](i / max(n - 1, 1))


def learning_curves(history, metrics: Sequence[str] = ("loss", "accuracy"), axes=None,
                    title: str | None = None):
    """Plot training (and validation, when present) curves per epoch.

    ``history`` is a Keras ``History``, its ``.history`` dict, or any mapping
    ``{"loss": [...], "val_loss": [...], ...}``. One panel per metric found. Returns the axes.
    """
    hist: Mapping[str, Sequence[float]] = getattr(history, "history", history)
    found = [m for m in metrics if m in hist]
    if not found:
        raise ValueError(f"none of {list(metrics)} in history (keys: {sorted(hist)})")
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, len(found), figsize=(4.5 * len(found), 3.5), squeeze=False)
        axes = axes[0]
    for ax, m in zip(np.atleast_1d(axes), found):
        epochs = np.arange(1, len(hist[m]) + 1)
        ax.plot(epochs, hist[m], "o-", ms=3, label=f"training {m}")
        if f"val_{m}" in hist:
            ax.plot(epochs, hist[f"val_{m}"], "s--", ms=3, label=f"validation {m}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        np.atleast_1d(axes)[0].figure.suptitle(title)
    return axes
