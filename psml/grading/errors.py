"""The one error type of ``psml grade``: a problem with the course, the command line or the
grading environment (never with one submission: those become reasons, not errors)."""

from psml.errors import PsmlError


class GradingError(PsmlError):
    """Raised for the batch as a whole; ``psml.cli.main`` prints it and exits with 2."""

    exit_code = 2
