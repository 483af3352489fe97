"""Reading a submitted notebook and rebuilding it on the release's skeleton."""

from __future__ import annotations

import bisect
import copy
import json
import uuid
import warnings
from pathlib import Path

import nbformat


def gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def visible(test_source: str) -> str:
    """A test cell's source without hidden tests (a submitted source notebook has them)."""
    lines, hidden = [], False
    for line in test_source.splitlines():
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            lines.append(line.rstrip())
    return "\n".join(lines).strip()


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    """The notebook, or None and a reason the student can act on."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, f"{path.name} is not a text file (not UTF-8): re-download it from Jupyter"
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return None, (f"{path.name} is not valid notebook JSON ({exc}): it was damaged; "
                      "save it again from Jupyter (File > Download)")
    try:
        with warnings.catch_warnings():  # duplicate cell ids: normalise() renumbers them
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(raw), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
        for c in nb.cells:
            c.setdefault("metadata", {})
            c.source = c.get("source", "")
    except Exception as exc:  # noqa: BLE001 -- any damage means: not gradable
        return None, f"{path.name} is not a readable notebook ({exc.__class__.__name__}: {exc})"
    return nb, None


def _longest_increasing(seq: list[int]) -> set[int]:
    """Indices into ``seq`` of one longest strictly increasing subsequence."""
    tails, tail_idx, prev = [], [], [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[j], tail_idx[j] = v, i
        prev[i] = tail_idx[j - 1] if j else -1
    out, i = set(), tail_idx[-1] if tail_idx else -1
    while i != -1:
        out.add(i)
        i = prev[i]
    return out


def _key(cell) -> str:
    return visible(cell.source) if cell.cell_type == "code" else cell.source.strip()


def _first_line(src: str) -> str:
    return next((ln.strip() for ln in src.splitlines() if ln.strip()), "")


def shares_cells(student: nbformat.NotebookNode, release: nbformat.NotebookNode) -> bool:
    """Whether a notebook is a copy of this release: a grade_id or a locked cell's text."""
    ids = {gid(c) for c in release.cells if gid(c)}
    locked = {_key(c) for c in release.cells if gid(c) and _key(c)
              and not c.metadata["nbgrader"].get("solution")}
    return any(gid(c) in ids or _key(c) in locked for c in student.cells)


def match_by_content(student: nbformat.NotebookNode, release: nbformat.NotebookNode
                     ) -> tuple[nbformat.NotebookNode, int]:
    """Give cells that lost their nbgrader metadata (pasted into a new notebook) their grade_id
    back where the match is unambiguous: locked cells by identical text, then each missing
    solution cell by its place between matched cells and its first line (``def f(...):``).
    Returns the repaired copy and how many cells were matched."""
    student = copy.deepcopy(student)
    have = {gid(c) for c in student.cells if gid(c)}
    by_text: dict[str, list] = {}
    for c in release.cells:
        if gid(c) and not c.metadata["nbgrader"].get("solution") and _key(c):
            by_text.setdefault((c.cell_type, _key(c)), []).append(c)
    n = 0
    for c in student.cells:
        hits = by_text.get((c.cell_type, _key(c)), []) if not gid(c) else []
        if len(hits) == 1 and gid(hits[0]) not in have:
            c.metadata["nbgrader"] = copy.deepcopy(hits[0].metadata["nbgrader"])
            have.add(gid(hits[0]))
            n += 1
    plain = {_key(c) for c in release.cells if not gid(c)}  # unchanged demo cells
    where = {gid(c): i for i, c in enumerate(student.cells) if gid(c)}
    rel = [c for c in release.cells if gid(c)]
    for k, r in enumerate(rel):
        if gid(r) in have or not r.metadata["nbgrader"].get("solution"):
            continue
        before = [where[gid(x)] for x in rel[:k] if gid(x) in where]
        after = [where[gid(x)] for x in rel[k + 1:] if gid(x) in where]
        lo, hi = (max(before) if before else -1), (min(after) if after else len(student.cells))
        cands = [c for c in student.cells[lo + 1:hi] if not gid(c) and
                 c.cell_type == r.cell_type and _key(c) not in plain]
        same = [c for c in cands if _first_line(c.source) == _first_line(r.source)]
        pick = same if len(same) == 1 else cands if len(cands) == 1 else []
        if not pick and not same:  # no signature to go by (a written answer): the cell
            j = next(i for i, c in enumerate(release.cells) if c is r)  # right after the
            prev = release.cells[j - 1] if j else None                   # one before it
            nexts = [student.cells[i + 1] for i, c in enumerate(student.cells[:-1])
                     if prev is not None and c.cell_type == prev.cell_type
                     and _key(c) == _key(prev)]
            pick = nexts if len(nexts) == 1 and any(nexts[0] is c for c in cands) else []
        if pick:
            pick[0].metadata["nbgrader"] = copy.deepcopy(r.metadata["nbgrader"])
            have.add(gid(r))
            n += 1
    return student, n


def normalise(student: nbformat.NotebookNode, release: nbformat.NotebookNode
              ) -> tuple[nbformat.NotebookNode, list[str]]:
    """The submission rebuilt on the release's skeleton, and what had to be repaired.

    Every nbgrader cell (grade_id) comes from the release, in the release's order, with the
    release's type and metadata; only the *source* of solution cells comes from the student.
    The student's own extra cells stay after the nbgrader cell they followed. Deleted cells
    are restored (a deleted solution is the stub, so its tests fail), of duplicated cells the
    last copy counts, test cells are restored later by nbgrader from the gradebook.
    """
    repairs: list[str] = []
    student, pasted = match_by_content(student, release)
    if pasted:
        repairs.append(f"{pasted} cells had lost their nbgrader metadata (pasted into a new "
                       "notebook?): matched to the release by content")
    rel_ids = [gid(c) for c in release.cells if gid(c)]
    pos = {g: i for i, g in enumerate(rel_ids)}
    # The student's own cells stay after the graded cell they followed -- counting only graded
    # cells still in order (a longest increasing run), so that one moved cell does not drag
    # the cells after it along.
    order = [pos[gid(c)] for c in student.cells if gid(c) in pos]
    in_place = _longest_increasing(order)
    by_id: dict[str, list] = {}
    free: dict[str | None, list] = {}
    anchor, k = None, 0
    for cell in student.cells:
        g = gid(cell)
        if g in pos:
            by_id.setdefault(g, []).append(cell)
            if k in in_place:
                anchor = g
            k += 1
        else:
            cell = copy.deepcopy(cell)
            if "nbgrader" in cell.get("metadata", {}):
                if g:
                    repairs.append(f"cell '{g}' is not part of the assignment: graded as an "
                                   "ordinary cell")
                del cell.metadata["nbgrader"]
            free.setdefault(anchor, []).append(cell)
    firsts = list(dict.fromkeys(order))
    if firsts != sorted(firsts):
        repairs.append("cells were moved: put back in the assignment's order")
    cells = list(free.get(None, []))
    for rel in release.cells:
        g = gid(rel)
        if not g:
            continue
        new = copy.deepcopy(rel)
        copies = by_id.get(g, [])
        md = rel.metadata["nbgrader"]
        if not copies:
            repairs.append(f"cell '{g}' was deleted: restored from the release"
                           + (" (its solution is the empty stub)" if md.get("solution") else ""))
        else:
            if len(copies) > 1:
                repairs.append(f"cell '{g}' appears {len(copies)} times: the last copy counts")
            mine = copies[-1]
            if mine.cell_type != rel.cell_type:
                repairs.append(f"cell '{g}' was changed from {rel.cell_type} to "
                               f"{mine.cell_type}: changed back")
            if md.get("solution") and not md.get("locked"):
                new.source = mine.source
            elif md.get("grade") and visible(mine.source) != visible(rel.source):
                repairs.append(f"test cell '{g}' was edited: the original tests were run")
        cells.append(new)
        cells.extend(free.get(g, []))
    ids = set()
    for c in cells:  # nbformat 4.5 ids must be unique (copies and restores can clash)
        if c.get("id") in ids or not c.get("id"):
            c["id"] = uuid.uuid4().hex[:8]
        ids.add(c["id"])
    out = copy.deepcopy(student)
    out.cells = cells
    ks = student.metadata.get("kernelspec", {}).get("name")
    want = release.metadata.get("kernelspec", {})
    if want and ks != want.get("name"):
        repairs.append(f"kernel '{ks}' replaced by the course kernel '{want.get('name')}'")
    out.metadata["kernelspec"] = copy.deepcopy(want)
    out.nbformat, out.nbformat_minor = 4, max(5, release.get("nbformat_minor", 5))
    return out, repairs
