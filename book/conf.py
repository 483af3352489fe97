"""Sphinx configuration of the course site (`make site`; sources staged by book/make_site.py).

MyST-NB renders the notebooks as they are: lectures arrive executed (quick mode, by the tests
or by make_site.py), exercises as released, so nothing is executed here.
"""

project = "Parallel & Scalable Machine and Deep Learning on HPC"
author = "psml course"
extensions = ["myst_nb"]
html_theme = "sphinx_book_theme"
html_title = "psml course"
html_theme_options = {"show_toc_level": 2, "use_download_button": True}
html_copy_source = True           # the download button offers each page's notebook
html_show_sourcelink = False
html_last_updated_fmt = None

nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3          # [text](page.md#a-heading) links resolve
exclude_patterns = ["**.ipynb_checkpoints"]
# Notebooks are written as slides of Markdown cells: heading levels may jump (H1 -> H3).
suppress_warnings = ["myst.header"]
