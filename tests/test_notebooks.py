"""Every lecture notebook runs top to bottom in quick mode.

Each executed lecture is kept in .cache/executed/lectures/ (book/make_site.py's
save_executed): the course site shows those outputs instead of running the lectures again
(tests/test_site.py runs after this file).

Solution notebooks are executed top to bottom by nbgrader in test_roundtrip.py, which also
checks that no cell of the solved notebook raised: running them twice would only cost time.
"""

import sys

import pytest
from nbtools import ROOT, error_outputs, run_notebook

sys.path.insert(0, str(ROOT / "book"))
from make_site import save_executed, source_hash  # noqa: E402

LECTURES = sorted(ROOT.glob("lectures/*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_lecture_runs(path):
    digest = source_hash(path)          # the source as executed, even if edited meanwhile
    nb, seconds = run_notebook(path)
    assert not error_outputs(nb), f"{path.name}: cells raised {error_outputs(nb)}"
    save_executed(path, nb, digest)
