"""NumPy MLP vs Keras MLP, same architecture, same data: time per epoch and accuracy.

The architecture is unit 05's lecture model (784-128-128-10, ReLU, dropout 0.3, softmax;
118,282 parameters), plain SGD at learning rate 0.01, batch size 128, on the rows that
``validation_split=0.2`` trains on. Both implementations are taken from the reference
solution of ``solutions/05-keras-mlp`` (the cells ``build_mlp``, ``init_params``,
``loss_and_grads``, ``sgd_epoch``), so the benchmark times exactly what the notebook teaches
and nothing is written twice.

Writes results/numpy_vs_keras.json. Run: `make bench`, or
`.venv/bin/python benchmarks/numpy_vs_keras.py` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import nbformat  # noqa: E402
import numpy as np  # noqa: E402

from psml.timing import compare  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "05-keras-mlp" / "05-keras-mlp.ipynb"
OUT = ROOT / "results" / "numpy_vs_keras.json"
CELLS = ("setup", "preprocess", "build_mlp", "init_params", "loss_and_grads", "sgd_epoch")
NUM_EPOCHS = 20


def reference_functions() -> dict:
    """Run the notebook's setup and the cells defining the functions; return their names."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    missing = [c for c in CELLS if c not in by_id]
    if missing:
        raise SystemExit(f"{NOTEBOOK} has no cells with grade_id {missing}: the benchmark "
                         "needs the reference solution's functions")
    namespace: dict = {}
    for cell in CELLS:
        exec(compile(by_id[cell], f"{NOTEBOOK.name}:{cell}", "exec"), namespace)
    return namespace


def main() -> dict:
    ns = reference_functions()
    tf = ns["tf"]
    from psml.data import load_mnist

    data = load_mnist(quiet=True)
    X, y = ns["preprocess"](data.x_train, data.y_train)     # integer labels, as the notebook
    X_test, y_test = ns["preprocess"](data.x_test, data.y_test)
    n_fit = int(len(X) * 0.8)
    X_fit, y_fit = X[:n_fit], y[:n_fit]

    tf.keras.utils.set_random_seed(0)
    model = ns["build_mlp"]()
    model.fit(X_fit, y_fit, batch_size=128, epochs=NUM_EPOCHS, verbose=0)
    keras_acc = float(np.mean(model.predict(X_test, verbose=0).argmax(1) == y_test))

    rng = np.random.default_rng(0)
    params = ns["init_params"](rng)
    for _ in range(NUM_EPOCHS):
        ns["sgd_epoch"](params, X_fit, y_fit, lr=0.01, batch_size=128, dropout_rate=0.3, rng=rng)
    numpy_acc = float(np.mean(ns["numpy_predict"](params, X_test) == y_test))

    timing = compare({
        "numpy": lambda: ns["sgd_epoch"](params, X_fit, y_fit, batch_size=128, rng=rng),
        "keras": lambda: model.fit(X_fit, y_fit, batch_size=128, epochs=1, verbose=0),
    }, repeat=5)
    print(timing)
    result = {
        "architecture": "784-128-128-10 ReLU, dropout 0.3, softmax (118,282 parameters)",
        "optimizer": "SGD lr 0.01, batch 128",
        "data": f"{data.source}: {n_fit} training rows, {len(X_test)} test rows",
        "epoch_seconds": {"numpy": timing.times["numpy"], "keras": timing.times["keras"]},
        "ratio_numpy_over_keras": timing.ratio("numpy", "keras"),
        "test_accuracy_after_epochs": NUM_EPOCHS,
        "test_accuracy": {"numpy": numpy_acc, "keras": keras_acc},
        "note": "best of 5 single epochs; the Keras time includes model.fit's per-call set-up",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "tensorflow": tf.__version__},
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"NumPy / Keras time per epoch: {result['ratio_numpy_over_keras']:.2f}; "
          f"test accuracy after {NUM_EPOCHS} epochs: NumPy {numpy_acc:.4f}, Keras {keras_acc:.4f}"
          f"\nwrote {OUT}")
    return result


if __name__ == "__main__":
    main()
