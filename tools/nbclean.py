#!/usr/bin/env python3
"""Normalise notebooks before committing: no outputs, no execution counts, the course
kernel, and no authoring-tool metadata (jupytext). Usage: tools/nbclean.py NB.ipynb ...

Authoring tip: write a notebook as a jupytext "percent" script (cells as `# %%`, nbgrader
metadata as `# %% nbgrader={...}`), convert with `jupytext --to ipynb x.py -o x.ipynb`, then
run this on the result.
"""
import sys

import nbformat

KERNELSPEC = {"name": "psml", "display_name": "Python 3 (psml)", "language": "python"}
DROP_CELL_KEYS = ("lines_to_next_cell", "execution", "collapsed", "scrolled", "jupyter")


def clean(nb):
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        for key in DROP_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def main(paths):
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(clean(nb), path)


if __name__ == "__main__":
    main(sys.argv[1:])
