"""The one writer of the ``nbgrader_config.py`` files ``psml grade`` makes for itself: the
template course (generates the assignment's gradebook) and each submission's scratch course
(autograde + feedback under limits). Both carry the course's release settings (stubs,
delimiters) and its feedback settings over from the course's config."""

from __future__ import annotations

from pathlib import Path

from psml.grading.limits import Limits

#: settings of the course's config that the generated courses keep
CARRIED = (("ClearSolutions", "code_stub"), ("ClearSolutions", "text_stub"),
           ("ClearSolutions", "begin_solution_delimeter"),
           ("ClearSolutions", "end_solution_delimeter"), ("PsmlFeedback", "show_hidden_tests"))

_GRADING = """\
from nbgrader.preprocessors import (IgnorePattern, LimitOutput, SaveAutoGrades,
                                    AssignLatePenalties, CheckCellMetadata, GetGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from psml.grading.execute import LimitedExecute
from psml.grading.feedback import PsmlFeedback
from psml.grading.scoring import score_by_exceptions
score_by_exceptions()  # a test cell fails by raising, not by writing to stderr
c.Execute.kernel_name = "psml-sandbox"
c.Execute.timeout = {cell_timeout}
c.Execute.interrupt_on_timeout = True
c.LimitedExecute.notebook_timeout = {notebook_timeout}
c.LimitedExecute.max_output_bytes = {max_output_bytes}
c.LimitOutput.max_lines = {max_lines}
c.LimitOutput.max_traceback = {max_traceback}
c.Autograde.autograde_preprocessors = [LimitedExecute, IgnorePattern,
    ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
    CheckCellMetadata]
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, PsmlFeedback]
# Unix sockets, not TCP: the kernel sits in a network namespace of its own.
c.KernelManager.transport = "ipc"
c.KernelManager.ip = {ipc!r}
"""


def write_config(folder: Path, course, db: Path, limits: Limits | None = None,
                 ipc: Path | None = None) -> Path:
    """``folder/nbgrader_config.py`` for a course of one assignment (source/ -> release/)
    whose gradebook is ``db``; with ``limits``, the grading settings of a scratch course."""
    lines = ["c = get_config()  # noqa: F821",
             f"c.CourseDirectory.course_id = {course.course_id!r}",
             'c.CourseDirectory.source_directory = "source"',
             'c.CourseDirectory.release_directory = "release"',
             f"c.CourseDirectory.db_url = {f'sqlite:///{db}'!r}"]
    for section, key in CARRIED:
        value = course.section(section).get(key)
        if value is not None:
            lines.append(f"c.{section}.{key} = {value!r}")
    text = "\n".join(lines) + "\n"
    if limits is not None:
        lim = course.section("LimitOutput")
        text += _GRADING.format(
            cell_timeout=limits.cell_timeout or -1, notebook_timeout=limits.notebook_timeout,
            max_output_bytes=limits.output_kb * 1024, max_lines=lim.get("max_lines", 1000),
            max_traceback=lim.get("max_traceback", 100), ipc=str(ipc))
    path = folder / "nbgrader_config.py"
    path.write_text(text)
    return path
