"""Site profiles (:mod:`psml.sites.profile`) and what is rendered from them: kernels and the Lmod
modulefile (:mod:`psml.sites.render`, installed by :mod:`psml.kernels`), and the hub's config
(:mod:`psml.hub.config`)."""
