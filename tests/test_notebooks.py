"""Every lecture notebook runs top to bottom in quick mode.

Solution notebooks are executed top to bottom by nbgrader in test_roundtrip.py, which also
checks that no cell of the solved notebook raised: running them twice would only cost time.
"""

import pytest
from nbtools import ROOT, error_outputs, run_notebook

LECTURES = sorted(ROOT.glob("lectures/*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_lecture_runs(path):
    nb, seconds = run_notebook(path)
    assert not error_outputs(nb), f"{path.name}: cells raised {error_outputs(nb)}"
