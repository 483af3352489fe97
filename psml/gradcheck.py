"""Numerical gradient checking (cs231n style): compare a backward pass with central differences.

Tooling only: nothing here knows about layers. A notebook checks its own ``*_backward``
against :func:`numerical_gradient` of its own ``*_forward``::

    from psml.gradcheck import numerical_gradient, relative_error
    out, cache = affine_forward(x, W, b)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = affine_backward(dout, cache)
    dx_num = numerical_gradient(lambda x: affine_forward(x, W, b)[0], x, df=dout)
    print(relative_error(dx, dx_num))      # ~1e-10 in float64

Use float64: with float32 round-off alone gives relative errors around 1e-3.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

#: What a correct backward pass reaches in float64 with ``h=1e-5`` (kinks aside).
DEFAULT_TOL = 1e-7


def _check_array(x, name: str = "x") -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is perturbed in place), got "
                        f"{type(x).__name__}; pass np.asarray({name}, dtype=np.float64)")
    if x.dtype != np.float64:
        raise TypeError(f"{name} has dtype {x.dtype}: gradient checks need float64 "
                        f"(round-off swamps the differences otherwise); pass "
                        f"{name}.astype(np.float64)")
    return x


def numerical_gradient(f: Callable[[np.ndarray], object], x: np.ndarray,
                       df: np.ndarray | None = None, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of ``f`` at ``x``, one element of ``x`` at a time.

    ``f(x)`` returns a scalar, or an array when ``df`` (the upstream gradient, same shape
    as ``f(x)``) is given: then the result is the gradient of ``sum(f(x) * df)``, which is
    exactly what a layer's backward pass computes from ``dout``.

    ``x`` (float64, any shape) is changed in place, one element at a time, and restored
    (also when ``f`` raises), so ``f`` may ignore its argument and read ``x`` through a
    closure (e.g. a weight matrix inside a params dict). Returns an array shaped like ``x``.
    """
    _check_array(x)
    if h <= 0:
        raise ValueError(f"step h must be positive, got {h}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        try:
            x[i] = old + h
            plus = _reduce(f(x), df)
            x[i] = old - h
            minus = _reduce(f(x), df)
        finally:
            x[i] = old
        grad[i] = (plus - minus) / (2 * h)
        it.iternext()
    return grad


def _reduce(value, df) -> float:
    value = np.asarray(value, dtype=np.float64)
    if df is None:
        if value.size != 1:
            raise ValueError(f"f returned an array of shape {value.shape}: pass df= (the "
                             "upstream gradient, same shape) or make f return a scalar")
        return float(value.reshape(()))
    if value.shape != np.shape(df):
        raise ValueError(f"f(x) has shape {value.shape} but df has shape {np.shape(df)}: "
                         "df must be shaped like the output of f")
    return float(np.sum(value * df))


def relative_error(a, b, eps: float = 1e-12) -> float:
    """Largest elementwise ``|a - b| / max(|a| + |b|, eps)``: scale-free, 0 when equal.

    Rules of thumb in float64: < 1e-7 right; 1e-7..1e-4 suspicious (or a kink such as ReLU
    at 0); > 1e-4 wrong.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {a.shape} and {b.shape}: a gradient must "
                         "have the shape of the variable it belongs to")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), eps)))


def check_gradients(f: Callable[[], object], params: Mapping[str, np.ndarray],
                    grads: Mapping[str, np.ndarray], df: np.ndarray | None = None,
                    h: float = 1e-5, tol: float = DEFAULT_TOL) -> dict[str, float]:
    """Check analytic ``grads`` of every array in ``params`` against numerical ones.

    ``f()`` takes no argument and reads ``params`` (which are perturbed in place), e.g.
    ``lambda: net_loss(params, X, y)[0]``; with ``df`` it may return an array (see
    :func:`numerical_gradient`). Returns ``{name: relative error}``; raises
    ``AssertionError`` naming every gradient whose error exceeds ``tol``.
    """
    missing = [k for k in params if k not in grads]
    if missing:
        raise KeyError(f"no analytic gradient for {missing}: grads has {sorted(grads)}")
    errors = {}
    for name, x in params.items():
        _check_array(x, name)
        num = numerical_gradient(lambda _x: f(), x, df=df, h=h)
        errors[name] = relative_error(grads[name], num)
    bad = {k: e for k, e in errors.items() if not e < tol}
    if bad:
        raise AssertionError(
            "gradient check failed (relative error above %.0e): %s. Check the backward pass "
            "of these parameters: shapes, a missing sum over the batch, a missing factor."
            % (tol, ", ".join(f"{k}: {e:.2e}" for k, e in bad.items())))
    return errors
