"""psml.checks: the loop detector catches every kind of Python loop, follows helpers,
accepts vectorized code; speedup measures a real difference."""

import numpy as np
import pytest
from psml.checks import assert_no_python_loops, find_python_loops, speedup


def vectorized_softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


def for_loop_dot(a, b):
    s = 0.0
    for i in range(len(a)):
        s += a[i] * b[i]
    return s


def while_loop_dot(a, b):
    s, i = 0.0, 0
    while i < len(a):
        s += a[i] * b[i]
        i += 1
    return s


def comprehension_norms(X):
    return np.array([np.sqrt(row @ row) for row in X])


def generator_sum(a):
    return sum(x * x for x in a)


def vectorize_in_disguise(a):
    return np.vectorize(lambda x: x * x)(a)


def _row_sums_with_loop(X):
    return np.array([r.sum() for r in X])


def calls_a_looping_helper(X):
    return X / _row_sums_with_loop(X)[:, None]


def _center(X):
    return X - X.mean(axis=0)


def calls_a_vectorized_helper(X):
    return _center(X) / X.std(axis=0)


@pytest.mark.parametrize("fn, kind", [
    (for_loop_dot, "for loop"),
    (while_loop_dot, "while loop"),
    (comprehension_norms, "list comprehension"),
    (generator_sum, "generator expression"),
    (vectorize_in_disguise, "vectorize()"),
    (calls_a_looping_helper, "list comprehension"),
])
def test_loops_are_caught(fn, kind):
    loops = find_python_loops(fn)
    assert loops and any(kind in lp.kind for lp in loops), loops
    with pytest.raises(AssertionError, match=f"{fn.__name__} should be vectorized"):
        assert_no_python_loops(fn)


def test_message_points_at_the_loop():
    with pytest.raises(AssertionError) as info:
        assert_no_python_loops(for_loop_dot)
    msg = str(info.value)
    assert "for_loop_dot, line 3: for loop: for i in range(len(a)):" in msg, msg
    assert "broadcasting" in msg, msg


def test_helper_loop_is_named():
    (loop,) = find_python_loops(calls_a_looping_helper)
    assert loop.function == "_row_sums_with_loop", loop
    assert find_python_loops(calls_a_looping_helper, follow_helpers=False) == []


@pytest.mark.parametrize("fn", [vectorized_softmax, calls_a_vectorized_helper])
def test_vectorized_code_passes(fn):
    assert find_python_loops(fn) == []
    assert_no_python_loops(fn)  # does not raise


def test_functions_without_source_are_rejected_clearly():
    with pytest.raises(TypeError, match="expected a Python function"):
        find_python_loops(np.dot)
    fn = eval("lambda x: x")  # no source file behind it
    with pytest.raises(TypeError, match="cannot read the source"):
        find_python_loops(fn)


def test_speedup_is_slow_time_over_fast_time(monkeypatch):
    import psml.timing

    # best_of is tested with psml.timing; here only the ratio's direction matters.
    times = {"fast": 0.002, "slow": 0.5}
    monkeypatch.setattr(psml.timing, "best_of", lambda fn, repeat: times[fn()])
    assert speedup(lambda: "fast", lambda: "slow") == pytest.approx(250)
    assert speedup(lambda: "slow", lambda: "fast") == pytest.approx(1 / 250)


def test_speedup_measures_real_calls():
    import time

    # sleep() is a lower bound on the slow side: the ratio cannot come out below 2
    # unless an empty lambda takes 10 ms, however loaded the machine is.
    assert speedup(lambda: None, lambda: time.sleep(0.02)) > 2
