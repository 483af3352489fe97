"""The workshop hub: JupyterHub + configurable-http-proxy + the nbgrader exchange.

``psml hub start`` (``make hub``) turns a site profile and a roster into a running hub on
this machine; ``psml hub config`` prints the same ``jupyterhub_config.py`` for a real server.
The hub is configuration of well-kept parts (authenticator, spawner, proxy, idle culler),
generated here, not a server of our own.

Modules
-------
``config``    :class:`HubSettings` (site profile ``[hub]`` table + command-line overrides) →
              a traitlets ``Config`` → the rendered ``jupyterhub_config.py``
``roster``    CSV ``id,name,role`` → system users (removable) → nbgrader gradebook students
``exchange``  the state folder: nbgrader exchange, the course directory (instructors' group,
              mode 0750), per-role Jupyter config, the student-safe checkout
``spawn``     the spawner hook giving students and instructors their own Jupyter config
``server``    start / stop / status of the hub process
``commands``  the ``psml hub ...`` sub-commands

The ``[hub]`` table of a site profile (``kernels/sites/NAME.toml``); every field optional::

    [hub]
    spawner = "local"          # "local": LocalProcessSpawner, each user's own uid
                               # "slurm": psml.hub.slurm.configure(c, settings) (issue 11)
    environment = "/opt/psml"  # the course env the single-user servers and kernels run from
                               # (default: the venv running psml; must be executable by
                               # students: a venv from /usr/bin/python3.11, not pyenv's)
    port = 8000                # the public port (hub API = port+1, proxy API = port+2)
    ip = "127.0.0.1"
    course_id = "psml"
    state_dir = "/srv/psml-hub"
    instructors_group = "psml-instructors"
    mem_limit = "4G"           # per-user limits: enforced by Slurm, advisory locally
    cpu_limit = 2.0
    idle_timeout = 3600        # jupyterhub-idle-culler stops servers idle that long (s)
    authenticator = "shared-password"  # or a class, e.g. "oauthenticator.generic.GenericOAuthenticator"
    extra_config = ""          # a site's own Python config file, loaded last (its authenticator)
    [hub.slurm]                # read only by psml.hub.slurm (partitions, reservation, ...)

The Slurm hook: when ``spawner = "slurm"``, :func:`psml.hub.config.build_config` imports
``psml.hub.slurm`` lazily and calls ``configure(c, settings)`` with the traitlets ``Config``
already holding everything common (proxy, authenticator, services, course env, per-role
Jupyter config through ``c.Spawner.pre_spawn_hook``) and the :class:`HubSettings`
(``settings.raw`` is the whole ``[hub]`` table, ``settings.raw["slurm"]`` its sub-table).
``configure`` sets the spawner class and its traits on ``c``; values must be plain data,
classes or importable functions (the renderer writes imports for those).
"""
