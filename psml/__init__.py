"""psml: the helper package of the *Parallel & Scalable Machine and Deep Learning* course.

Notebooks import what they need from the submodules (``psml.data``, ``psml.plots``,
``psml.timing``, ...). Importing ``psml`` itself does nothing but define the version:
no heavy imports, no side effects.
"""

__version__ = "0.1.0"
