"""Tamper resistance: what test cells rely on is restored before each of them runs.

Student code runs in the same kernel before the tests, so it can replace what the tests use:
NumPy's and numpy.testing's comparison functions, psml's check helpers, ``builtins``
(``AssertionError``, ``isinstance``, ``__import__``, ...), modules in ``sys.modules``, the
warning filters, and names the assignment's *locked* cells defined (``np``, a data set, a
reference function). The grader runs :data:`SETUP` in the kernel before the first cell (a
snapshot, taken before any student code), :func:`record_call` after each locked cell, and
:func:`restore_call` before each test cell. The policy (docs/grading.md): everything is put
back, so the tests run as if it had not been touched; replacing a library function, a builtin
or a locked cell's module/function is reported and the submission *flagged*; rebinding a
locked cell's data and changing warning filters are undone silently (common and harmless).

This is a guard against monkeypatching, not a security boundary: code in the kernel could
find and disable it. If the guard itself is gone when a test is due, the scores are not
trusted (0, needs manual grade). The kernel-side code is a string run in the kernel; this
module never imports in the kernel (student code could replace a module).
"""

from __future__ import annotations

import secrets

#: modules whose functions are snapshot and restored (those that exist are used)
MODULES = ("builtins", "math", "operator", "numpy", "numpy.testing", "numpy.core.numeric",
           "numpy.core.fromnumeric", "numpy.core.multiarray", "numpy.testing._private.utils",
           "numpy.linalg", "numpy.lib.function_base", "psml.checks", "psml.gradcheck",
           "psml.timing", "warnings")

_KERNEL_CODE = r'''
def {key}():
    import builtins, importlib, sys, types, warnings
    snap, names = {{}}, {{}}
    for mname in {modules!r}:
        try:
            m = importlib.import_module(mname)
        except Exception:
            continue
        keep = {{}}
        for k, v in list(vars(m).items()):
            if (k.startswith("_") and k not in ("__import__", "__build_class__")) or (
                    mname == "builtins" and k in {per_execution!r}):
                continue
            if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type,
                              types.ModuleType)) or callable(v):
                keep[k] = (v, getattr(v, "__code__", None), getattr(v, "__defaults__", None),
                           getattr(v, "__kwdefaults__", None))
        snap[mname] = (m, keep)
    filters, show = list(warnings.filters), warnings.showwarning
    user = sys.modules["__main__"].__dict__

    def restore():
        changed = []
        for mname, (m, keep) in snap.items():
            if sys.modules.get(mname) is not m:
                sys.modules[mname] = m
                changed.append(f"sys.modules[{{mname!r}}]")
            d = vars(m)
            for k, (v, code, dflt, kwd) in keep.items():
                if d.get(k) is not v:
                    setattr(m, k, v)
                    changed.append(f"{{mname}}.{{k}}")
                if code is not None and v.__code__ is not code:
                    v.__code__ = code
                    changed.append(f"{{mname}}.{{k}}.__code__")
                if code is not None and (v.__defaults__ is not dflt
                                         or v.__kwdefaults__ is not kwd):
                    v.__defaults__, v.__kwdefaults__ = dflt, kwd
                    changed.append(f"{{mname}}.{{k}} defaults")
        warnings.filters[:] = filters
        warnings._filters_mutated()
        warnings.showwarning = show
        for k, v in names.items():
            if user.get(k, restore) is not v:
                user[k] = v
                if isinstance(v, types.ModuleType) or (
                        callable(v) and getattr(v, "__module__", "") not in ("__main__", None)):
                    changed.append(f"{{k}} (from a locked cell)")
        return changed

    def record(which):
        for k in which:
            if k in user:
                names[k] = user[k]
        return []

    restore.record = record
    return restore

{key} = {key}()
'''


#: builtins IPython/ipykernel set anew for every execution (not student tampering)
PER_EXECUTION = ("input", "raw_input", "get_ipython", "display", "exit", "quit", "help",
                 "copyright", "credits", "license", "getpass")


def new_key() -> str:
    """A fresh, unguessable name for the guard in the kernel's namespace."""
    return f"_psml_guard_{secrets.token_hex(8)}"


def setup_code(key: str) -> str:
    return _KERNEL_CODE.format(key=key, modules=MODULES, per_execution=set(PER_EXECUTION))


def restore_call(key: str) -> str:
    """An expression (user_expressions) that restores and returns what had changed."""
    return f"{key}()"


def record_call(key: str, names: list[str]) -> str:
    return f"{key}.record({sorted(names)!r})"
