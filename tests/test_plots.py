"""psml.plots: decision regions and learning curves draw what they should."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from psml import plots  # noqa: E402


def test_decision_boundary_shades_regions_and_scatters_classes():
    X = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], float)
    y = np.array([-1, 1, 1, -1])
    ax = plots.decision_boundary(lambda P: np.where(P[:, 1] > 0.5, 1, -1), X, y, title="t")
    assert ax.get_title() == "t"
    assert len(ax.collections) >= 3  # filled contour + one scatter per class
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["-1", "1"]


def test_decision_boundary_needs_two_features():
    with pytest.raises(ValueError, match="2 features"):
        plots.decision_boundary(lambda P: P[:, 0], np.zeros((3, 3)))


def test_learning_curves_from_history_dict():
    hist = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
    axes = plots.learning_curves(hist)
    assert len(axes) == 2
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 1  # val only for loss
    with pytest.raises(ValueError, match="none of"):
        plots.learning_curves({"foo": [1]})
