"""The one error type the ``psml`` command turns into a message and an exit code.

Every module raises a narrow subclass with a message that says what to do; ``psml.cli.main``
catches ``PsmlError`` once, prints ``error: <message>`` and exits with ``exit_code``.
"""


class PsmlError(Exception):
    """Base of psml's user-facing errors. The message must say what to do next."""

    exit_code = 1


class ClusterError(PsmlError, RuntimeError):
    """A cluster, MPI run or Slurm job could not be started or finished; the message says
    what to do (psml.cluster, psml.ranks, psml.slurm)."""
