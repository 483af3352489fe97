"""The points a student is promised add up: each notebook's intro and exercise headings, the
README's course map and the gradebook all agree with the nbgrader metadata of the source."""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from nbtools import ROOT

from psml import course

ASSIGNMENTS = course.assignments(ROOT)
HEADING = re.compile(r"^(#+)\s*(.*)$", re.M)
EXERCISE = re.compile(r"Exercise\s+(\d+)\b[^(]*\(([^)]*\bpoints?\b[^)]*)\)", re.I)
INTRO = re.compile(r"(\d+)\s+points?\s+in\s+(\d+)\s+exercises", re.I)


def _source(a: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / a / f"{a}.ipynb", as_version=4)


def metadata_points(nb) -> float:
    """What nbgrader will grade: the points of every graded cell (auto and manual)."""
    return float(sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade")))


def written_points(nb) -> float:
    """Points of manually graded (written) answer cells."""
    return float(sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "markdown"))


def heading_claims(nb) -> list[tuple[str, float]]:
    """(heading, points) of every heading that promises points: "### Exercise 2 (4 points)",
    "### Written answer (2 points)"; "(1 point + 1 written)" promises 2."""
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            for m in HEADING.finditer(c.source):
                p = re.search(r"\(([^)]*\bpoints?\b[^)]*)\)", m.group(2))
                if p:
                    out.append((m.group(2).strip(), float(sum(
                        int(x) for x in re.findall(r"\d+", p.group(1))))))
    return out


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_notebook_claims_match_its_metadata(a):
    nb = _source(a)
    total = metadata_points(nb)
    claims = heading_claims(nb)
    exercises = {int(m.group(1)) for h, _ in claims for m in [EXERCISE.search(h)] if m}
    problems = []
    if claims and sum(p for _, p in claims) != total:
        problems.append(f"the headings promise {sum(p for _, p in claims):g} points "
                        f"({'; '.join(f'{h}' for h, _ in claims)}) but the graded cells carry "
                        f"{total:g}")
    intro = next((m for c in nb.cells[:8] if c.cell_type == "markdown"
                  for m in [INTRO.search(c.source)] if m), None)
    if intro:
        n, k = float(intro.group(1)), int(intro.group(2))
        if n != total:
            problems.append(f"the intro says '{intro.group(0)}' but the graded cells carry "
                            f"{total:g} points")
        if exercises and k != len(exercises):
            problems.append(f"the intro says '{intro.group(0)}' but there are {len(exercises)} "
                            f"exercise headings ({sorted(exercises)})")
    assert not problems, (f"solutions/{a}/{a}.ipynb: " + "; ".join(problems)
                          + ": fix the intro/headings (or the cells' points) and `make build`")


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_readme_course_map_matches(a):
    readme = (ROOT / "README.md").read_text()
    m = re.search(rf"\(exercises/{re.escape(a)}/?\)\s*\((\d+)\s*pts?\b([^)]*)\)", readme)
    assert m, f"README.md's course map has no '[...](exercises/{a}) (N pts)' entry"
    nb = _source(a)
    total, written = metadata_points(nb), written_points(nb)
    assert float(m.group(1)) == total, (f"README.md says {a} is worth {m.group(1)} pts, the "
                                        f"graded cells carry {total:g}: fix the course map row")
    split = re.search(r"(\d+)\s*auto-graded,\s*(\d+)\s*written", m.group(2))
    if split or written:
        assert split and (float(split.group(1)), float(split.group(2))) == (
            total - written, written), (
            f"README.md's course map says '{m.group(0)}' for {a}; the notebook has "
            f"{total - written:g} auto-graded and {written:g} written points: write "
            f"'({total:g} pts: {total - written:g} auto-graded, {written:g} written)'")


@pytest.mark.slow
def test_gradebook_max_scores_match(tmp_path):
    """nbgrader's own view: the max score it records for each assignment."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    shutil.copytree(ROOT / "solutions", tmp_path / "solutions",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    cfg = Config()
    cfg.CourseDirectory.root = str(tmp_path)
    cfg.CourseDirectory.source_directory = "solutions"
    cfg.CourseDirectory.release_directory = "release"
    cfg.CourseDirectory.db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    api = NbGraderAPI(config=cfg)
    problems = []
    for a in ASSIGNMENTS:
        r = api.generate_assignment(a, force=True)
        assert r["success"], f"nbgrader could not generate {a}: {r.get('error')}"
    with Gradebook(cfg.CourseDirectory.db_url) as gb:
        for a in ASSIGNMENTS:
            got, want = gb.find_assignment(a).max_score, metadata_points(_source(a))
            if got != want:
                problems.append(f"{a}: gradebook {got:g}, notebook {want:g}")
    assert not problems, "; ".join(problems)
