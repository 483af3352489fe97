"""Late submissions, as nbgrader's autograde treats them: the gradebook knows the due date
(set in the Formgrader or with ``nbgrader db assignment add --duedate``) and the submission's
timestamp; the course's ``AssignLatePenalties.plugin_class`` (nbgrader's
``LateSubmissionPlugin``, ``penalty_method = 'none'`` by default) turns the lateness into a
penalty per notebook, never below 0 or above the notebook's score.

``psml grade`` scores in a scratch course that has no due date, so the penalty is worked out
here, when the result is merged into the course gradebook."""

from __future__ import annotations


def penalties(config, student: str, seconds_late: float,
              notebook_scores: dict[str, float]) -> dict[str, float | None]:
    """Penalty (points, or None for none) of each notebook of a submission this late."""
    if seconds_late <= 0:
        return {nb: None for nb in notebook_scores}
    from nbgrader.preprocessors import AssignLatePenalties

    assign = AssignLatePenalties(config=config)
    assign.init_plugin()
    out = {}
    for nb, score in notebook_scores.items():
        p = assign.plugin_inst.late_submission_penalty(student, score, seconds_late)
        out[nb] = None if p is None else min(max(0.0, float(p)), score)
    return out


def describe(seconds: float) -> str:
    """``2 d 3 h``, ``4 h 5 min``, ``12 min``, ``30 s``: how late, for people."""
    s = int(round(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} min"
    return f"{m} min" if m else f"{s} s"
