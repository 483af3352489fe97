"""Checks that graded notebooks use on the student's code (not on their results).

:func:`assert_no_python_loops` proves that a function is *vectorized*: it reads the
function's source with :mod:`ast` and fails on ``for``/``while`` loops, comprehensions,
generator expressions and loop-in-disguise helpers (``np.vectorize``, ``map``, ...). It
also follows calls to helper functions defined next to it (same notebook or module), so a
loop cannot hide one call away. Unlike a timing test it gives the same answer on a
loaded machine, which keeps grading deterministic.

:func:`speedup` measures how many times faster one implementation is than another
(best-of-N timing), for tests that want a speed ratio with a wide margin.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from dataclasses import dataclass
from typing import Callable

# Node types that run Python code once per element.
_LOOP_NODES = {
    ast.For: "for loop",
    ast.AsyncFor: "async for loop",
    ast.While: "while loop",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
}
# Calls that hide a Python-level loop behind a function name.
_LOOP_CALLS = {"vectorize", "frompyfunc", "apply_along_axis", "apply_over_axes", "map",
               "fromiter"}


@dataclass(frozen=True)
class Loop:
    """One Python-level loop found in a function's source."""

    function: str
    line: int  # line number inside the function's source, 1 = the ``def`` line
    kind: str
    code: str

    def __str__(self) -> str:
        return f"{self.function}, line {self.line}: {self.kind}: {self.code}"


def _source_tree(fn: Callable) -> ast.AST:
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError) as exc:
        raise TypeError(f"cannot read the source of {fn!r} ({exc}): pass a function defined "
                        "with `def` in a notebook cell or a .py file") from exc
    return ast.parse(textwrap.dedent(src))


def _called_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _helpers(fn: types.FunctionType, tree: ast.AST) -> list[types.FunctionType]:
    """Plain Python functions that ``fn`` calls by a global name and that were defined in
    the same module (a notebook counts as one module: ``__main__``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            obj = fn.__globals__.get(node.func.id)
            if (isinstance(obj, types.FunctionType) and obj is not fn
                    and obj.__module__ == fn.__module__):
                out.append(obj)
    return out


def find_python_loops(fn: Callable, follow_helpers: bool = True) -> list[Loop]:
    """Every Python-level loop in ``fn`` (and, by default, in helpers it calls that are
    defined in the same notebook/module). An empty list means ``fn`` is loop-free."""
    if not isinstance(fn, types.FunctionType):
        raise TypeError(f"expected a Python function, got {type(fn).__name__}: {fn!r}")
    found: list[Loop] = []
    todo, seen = [fn], set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        tree = _source_tree(f)
        for node in ast.walk(tree):
            kind = _LOOP_NODES.get(type(node))
            if kind is None and isinstance(node, ast.Call) and _called_name(node) in _LOOP_CALLS:
                kind = f"{_called_name(node)}() (a Python loop in disguise)"
            if kind:
                code = ast.unparse(node).splitlines()[0]
                found.append(Loop(f.__name__, node.lineno, kind, code[:70]))
        if follow_helpers:
            todo += _helpers(f, tree)
    return sorted(found, key=lambda lp: (lp.function != fn.__name__, lp.function, lp.line))


def assert_no_python_loops(fn: Callable, follow_helpers: bool = True) -> None:
    """Fail with a teaching message when ``fn`` contains a Python-level loop.

    Use it in a test cell *after* checking the function's results (a stub that raises
    ``NotImplementedError`` has no loops either).
    """
    loops = find_python_loops(fn, follow_helpers)
    if loops:
        listing = "\n".join(f"  - {lp}" for lp in loops)
        raise AssertionError(
            f"{fn.__name__} should be vectorized, but it runs Python code once per element:\n"
            f"{listing}\nReplace the loop by whole-array NumPy operations (broadcasting, "
            "matrix products, reductions with axis=..., keepdims=True).")


def speedup(fast: Callable[[], object], slow: Callable[[], object], repeat: int = 3) -> float:
    """How many times faster ``fast()`` is than ``slow()`` (best of ``repeat`` runs each).

    Best-of-N is robust to a loaded machine; assert on it only with a wide margin
    (e.g. ``> 5`` when the typical value is 100).
    """
    from psml.timing import best_of

    return best_of(slow, repeat) / best_of(fast, repeat)
