"""psml.gradcheck: accepts right gradients, catches wrong ones, leaves its input untouched."""

import numpy as np
import pytest
from psml.gradcheck import check_gradients, numerical_gradient, relative_error


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_scalar_function_gradient_matches_calculus(rng):
    x = rng.standard_normal((3, 4))
    num = numerical_gradient(lambda x: np.sum(np.sin(x) * x**2), x)
    exact = np.cos(x) * x**2 + 2 * x * np.sin(x)
    assert relative_error(exact, num) < 1e-8


def test_upstream_gradient_gives_vector_jacobian_product(rng):
    A = rng.standard_normal((5, 3))
    x = rng.standard_normal(3)
    df = rng.standard_normal(5)
    num = numerical_gradient(lambda x: A @ x, x, df=df)
    assert np.allclose(num, A.T @ df, rtol=1e-8, atol=1e-10)


def test_input_is_restored_even_when_f_raises(rng):
    x = rng.standard_normal((2, 2))
    before = x.copy()
    numerical_gradient(lambda x: float(np.sum(x**3)), x)
    assert np.array_equal(x, before)

    calls = []

    def boom(x):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("fails on the second element")
        return float(np.sum(x))

    with pytest.raises(RuntimeError):
        numerical_gradient(boom, x)
    assert np.array_equal(x, before), "x was left perturbed after f raised"


def test_closure_style_reads_perturbed_array(rng):
    """f may ignore its argument and read the array through a closure (params dicts)."""
    params = {"W": rng.standard_normal((2, 3))}
    num = numerical_gradient(lambda _: float(np.sum(params["W"] ** 2)), params["W"])
    assert relative_error(num, 2 * params["W"]) < 1e-8


def test_relative_error_scale_free_and_exact_zero():
    a = np.array([1.0, -2.0, 3.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a * 1e-6, a * 1e-6 * (1 + 1e-3)) == pytest.approx(
        relative_error(a, a * (1 + 1e-3)))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        relative_error(np.zeros(3), np.zeros((3, 1)))


def _quad_loss(params, X, y):
    """Least squares with a tanh layer: loss and the right gradient."""
    W, b = params["W"], params["b"]
    H = np.tanh(X @ W + b)
    r = H.sum(axis=1) - y
    loss = 0.5 * np.mean(r**2)
    dH = (r / len(y))[:, None] * np.ones_like(H)
    dZ = dH * (1 - H**2)
    return loss, {"W": X.T @ dZ, "b": dZ.sum(axis=0)}


def test_check_gradients_accepts_a_right_gradient(rng):
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    X, y = rng.standard_normal((6, 4)), rng.standard_normal(6)
    _, grads = _quad_loss(params, X, y)
    errors = check_gradients(lambda: _quad_loss(params, X, y)[0], params, grads)
    assert set(errors) == {"W", "b"} and max(errors.values()) < 1e-7


@pytest.mark.parametrize("bug", ["missing_factor", "forgot_sum", "transposed_sign"])
def test_check_gradients_catches_a_wrong_gradient(rng, bug):
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    X, y = rng.standard_normal((6, 4)), rng.standard_normal(6)
    _, grads = _quad_loss(params, X, y)
    if bug == "missing_factor":      # e.g. forgot the 1/n of the mean
        grads["W"] = grads["W"] * len(y)
    elif bug == "forgot_sum":        # db from one example instead of the batch
        grads["b"] = grads["b"] / len(y)
    else:
        grads["W"] = -grads["W"]
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_gradients(lambda: _quad_loss(params, X, y)[0], params, grads)


def test_small_error_is_still_caught(rng):
    """A gradient off by 1e-4 relative is not 'close enough' at the default tolerance."""
    params = {"W": rng.standard_normal((3, 3)), "b": rng.standard_normal(3)}
    X, y = rng.standard_normal((5, 3)), rng.standard_normal(5)
    _, grads = _quad_loss(params, X, y)
    grads["b"] = grads["b"] * (1 + 1e-4)
    with pytest.raises(AssertionError, match="b:"):
        check_gradients(lambda: _quad_loss(params, X, y)[0], params, grads)


def test_bad_input_explains_what_to_do():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda x: x.sum(), np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="NumPy array"):
        numerical_gradient(lambda x: 0.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="df="):
        numerical_gradient(lambda x: x * 2, np.ones(3))
    with pytest.raises(ValueError, match="shaped like"):
        numerical_gradient(lambda x: x * 2, np.ones(3), df=np.ones(2))
    with pytest.raises(KeyError, match="no analytic gradient"):
        check_gradients(lambda: 0.0, {"W": np.ones(2)}, {})
