"""Course-wide settings read from the environment, each in exactly one place.

``PSML_QUICK``: quick mode (small data, few epochs) for CI and autograding.
Students get the full run by default; tests and ``psml grade`` set ``PSML_QUICK=1``.

``PSML_DATA``: the data cache directory (see :mod:`psml.data`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

QUICK_ENV = "PSML_QUICK"
DATA_ENV = "PSML_DATA"

T = TypeVar("T")


def is_quick() -> bool:
    """True when ``PSML_QUICK`` is set to anything but ``0``/``false``/``no``/empty."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


#: Quick mode as seen when the module was imported (notebooks read it once, at the top).
QUICK = is_quick()


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode, ``full`` otherwise: ``num_epochs = pick(20, 2)``."""
    return quick if is_quick() else full


def data_dir() -> Path:
    """The data cache: ``$PSML_DATA`` if set, else the user's cache dir (``~/.cache/psml``)."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("psml", appauthor=False))
