"""A test cell passes or fails by whether it raised -- not by what it wrote to stderr.

nbgrader (0.9) scores a test cell 0 when any of its outputs is a ``stderr`` stream, so a
library's DeprecationWarning inside a test costs a correct submission its points. Calling
:func:`score_by_exceptions` from ``nbgrader_config.py`` makes every nbgrader command that
reads that file (``autograde``, ``validate``, the formgrader; and ``psml grade``, whose scratch
courses call it too) ignore stderr when scoring: an ``error`` output still scores 0, a numeric
result still gives partial credit, stderr stays in the notebook and the feedback as output.
nbgrader has no setting for this; it looks its scoring function up at call time
(``utils.determine_grade``), so replacing that function is enough.
"""

from __future__ import annotations

_NBGRADER_ORIGINALS: dict = {}


def _without_stderr(cell):
    """A shallow copy of a code cell without its stderr streams."""
    from nbformat import NotebookNode

    if cell.get("cell_type") != "code":
        return cell
    out = NotebookNode(dict(cell))
    out["outputs"] = [o for o in cell.get("outputs", [])
                      if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return out


def score_by_exceptions() -> None:
    """Make nbgrader score test cells by exceptions only (idempotent)."""
    from nbgrader import utils

    if _NBGRADER_ORIGINALS:
        return
    _NBGRADER_ORIGINALS.update(determine_grade=utils.determine_grade,
                               has_failed=utils.has_failed)

    def determine_grade(cell, log=None):
        return _NBGRADER_ORIGINALS["determine_grade"](_without_stderr(cell), log)

    def has_failed(cell):
        return _NBGRADER_ORIGINALS["has_failed"](_without_stderr(cell))

    utils.determine_grade, utils.has_failed = determine_grade, has_failed
