"""Moved to :mod:`psml.grading.limits` / :mod:`psml.grading.sandbox`; kept for ``psml doctor``
(``from psml.sandbox import can_isolate``) until it imports from there."""

from psml.grading.limits import can_isolate  # noqa: F401
