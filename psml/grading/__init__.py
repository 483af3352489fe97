"""``psml grade``: grade a whole class with nbgrader -- in parallel, each submission isolated
and limited, with feedback that teaches without leaking. A wrapper around nbgrader, not a
replacement (same gradebook, ``autograded/``, ``feedback/`` and formgrader).

One module per job (docs/grading.md has the workflow):

===============  ========================================================================
``course``       the course folder, its nbgrader_config.py (read once), running nbgrader
``submissions``  submissions into ``submitted/<student>/<assignment>/``
``notebooks``    reading a submitted notebook, rebuilding it on the release (pasted cells too)
``scratch``      the scratch course of one submission (gradebook copy, kernel folder, spec)
``nbconfig``     the one writer of generated nbgrader_config.py files
``limits``       ``Limits`` and the ``c.PsmlGrader.*`` settings
``sandbox``      the kernel launcher: allow-list root, namespaces, own uid, rlimits
``execute``      the Execute preprocessor: deadlines, output cap, dead kernels, probe, guard
``guard``        tamper resistance: what tests rely on is restored before each test cell
``scoring``      a test cell fails by raising, not by writing to stderr (issue 16)
``feedback``     feedback without hidden tests and without live student HTML/JS
``events``       typed outcome events between the preprocessor and the runner
``late``         late submissions: the course's nbgrader late policy, applied at merge
``runner``       prepare, canary, grade N at a time, merge into the course
``report``       results, summary table/CSV, notes in the feedback, manual-cell rubrics
``cli``          the ``psml grade`` command
``errors``       ``GradingError``: the one error of a run (exit code 2)
===============  ========================================================================
"""

from __future__ import annotations

from importlib import import_module

# The public names, imported on first use: the kernel launcher (psml.grading.sandbox) runs
# as ``python -m`` and must not pay for nbgrader's imports.
_PUBLIC = {"Course": "course", "collect": "submissions", "Submission": "submissions",
           "normalise": "notebooks", "read_notebook": "notebooks", "gid": "notebooks",
           "Limits": "limits", "can_isolate": "limits", "GradingError": "errors",
           "CanaryError": "runner", "grade_batch": "runner", "prepare": "runner",
           "Result": "report", "summary_table": "report", "write_summary": "report"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(f"psml.grading.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'psml.grading' has no attribute {name!r}")
