"""psml.timing: best-of-N and the comparison table."""

import itertools

import pytest
from psml import timing


def test_best_of_takes_the_minimum_round(monkeypatch):
    # rounds of 3, 1 and 2 "seconds" on a fake clock
    ticks = itertools.chain.from_iterable([(0, 3), (10, 11), (20, 22)])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    assert timing.best_of(lambda: None, repeat=3) == 1


def test_best_of_counts_calls_and_rejects_bad_arguments():
    calls = []
    timing.best_of(lambda: calls.append(1), repeat=2, number=3)
    assert len(calls) == 6
    with pytest.raises(ValueError):
        timing.best_of(lambda: None, repeat=0)


def test_comparison_ratio_and_table():
    c = timing.Comparison({"loop": 0.5, "np.dot": 0.001})
    assert c.fastest == "np.dot" and c.ratio("loop", "np.dot") == pytest.approx(500)
    table = str(c).splitlines()
    assert table[1].startswith("np.dot") and "1 ms" in table[1]
    assert table[2].startswith("loop") and "500.0x" in table[2]


def test_compare_runs_each_candidate():
    c = timing.compare({"a": lambda: sum(range(10)), "b": lambda: None}, repeat=2)
    assert set(c.times) == {"a", "b"} and all(t >= 0 for t in c.times.values())
