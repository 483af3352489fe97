"""The spawner hook every hub config uses: each role gets its own Jupyter config folder.

Instructors (the hub's admins) get nbgrader's formgrader and create-assignment tools;
students get the same JupyterLab without them. The folders are written by
:func:`psml.hub.exchange.write_jupyter_config` and found through ``JUPYTER_CONFIG_PATH``.
"""

from __future__ import annotations

import os


def role(user) -> str:
    return "instructor" if user.admin else "student"


def pre_spawn_hook(spawner) -> None:
    state = spawner.environment.get("PSML_HUB_STATE", "/srv/psml-hub")
    # A fresh dict: the configured one is shared by every spawner instance.
    spawner.environment = dict(spawner.environment, JUPYTER_CONFIG_PATH=os.path.join(
        state, "jupyter", role(spawner.user)))
