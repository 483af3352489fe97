#!/usr/bin/env python3
"""Build the course site: ``make site`` (or ``python book/make_site.py [-o OUT]``).

Pages: the README (home page and course map), the guides in docs/, every lecture with its
outputs (executed in quick mode) and every released exercise (exercises/, as students get
it). Nothing else of the repository is read, so solutions, hidden tests and rubrics cannot
enter; the built site is checked for them anyway (:func:`psml.bundle.tree_leaks`).

Lectures are executed at most once per change: tests/test_notebooks.py saves each lecture it
runs to ``.cache/executed/lectures/NAME.ipynb`` (:func:`save_executed`) with the hash of its
source, and the site uses that copy while the hash matches, executing the lecture otherwise.

Steps: stage the pages into ``book/_build/html-src`` (links between them rewritten to the staged
layout; links to files that are not published become plain text), then ``sphinx-build``
with ``book/conf.py`` into ``book/_build/html``. Broken internal references fail the build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BUILD = BOOK / "_build"
EXECUTED = ROOT / ".cache" / "executed" / "lectures"
GUIDES = ROOT / "docs"
LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)\)")
# Sphinx warnings that mean a link or image of the site does not resolve.
BROKEN = re.compile(r"xref_missing|cross-reference target not found|image file not readable|"
                    r"unknown document|undefined label|toc\.not_readable|nonexisting document")


class SiteError(RuntimeError):
    """The site could not be built; the message says why."""


# --- executed lectures ------------------------------------------------------------------

def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_executed(lecture: Path, nb, digest: str | None = None) -> Path:
    """Keep an executed, error-free lecture for the site (atomic: readers never see half).
    ``digest``: :func:`source_hash` of the source as it was executed (default: now)."""
    nb.metadata["psml_executed"] = {"source_sha256": digest or source_hash(lecture),
                                    "quick": True}
    EXECUTED.mkdir(parents=True, exist_ok=True)
    out = EXECUTED / lecture.name
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return out


def cached_executed(lecture: Path):
    """The saved execution of ``lecture`` if it was made from the current source, else None."""
    path = EXECUTED / lecture.name
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None
    meta = nb.metadata.get("psml_executed", {})
    fresh = meta.get("source_sha256") == source_hash(lecture) and meta.get("quick")
    return nb if fresh else None


def executed_lecture(lecture: Path):
    """(notebook with outputs, whether it had to be executed now)."""
    nb = cached_executed(lecture)
    if nb is not None:
        return nb, False
    sys.path.insert(0, str(ROOT / "tests"))
    from nbtools import error_outputs, run_notebook   # the tests' runner: one way to execute

    os.environ["PSML_QUICK"] = "1"                    # the site shows quick-mode outputs
    digest = source_hash(lecture)
    nb, _ = run_notebook(lecture)
    if error_outputs(nb):
        raise SiteError(f"{lecture.name} raised: {error_outputs(nb)}")
    save_executed(lecture, nb, digest)
    return nb, True


# --- staging ----------------------------------------------------------------------------

def published(root: Path = ROOT) -> dict[str, str]:
    """Repository path -> staged page for everything on the site (folders -> their index)."""
    from psml.bundle import published_files

    pages = {"README.md": "index.md"}
    pages |= {f"docs/{p.name}": f"docs/{p.name}" for p in sorted(GUIDES.glob("*.md"))}
    pages |= {f"lectures/{p.name}": f"lectures/{p.name}"
              for p in sorted((root / "lectures").glob("*.ipynb"))}
    for f in published_files(root, "exercises"):
        rel = f.relative_to(root).as_posix()
        pages[rel] = rel
        folder = f.parent.relative_to(root).as_posix()    # exercises/NN-topic
        pages[folder] = f"{folder}/index.md"              # written by stage()
    return pages


def rewrite_links(text: str, here: str, pages: dict[str, str], root: Path = ROOT) -> str:
    """Point relative links of the repository file ``here`` at the staged pages; a link to a
    repository file that is not published becomes its text; a broken link stays (and fails
    the build)."""
    staged_dir = Path(pages[here]).parent

    def fix(m: re.Match) -> str:
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        rel = os.path.normpath(Path(here).parent / path).replace(os.sep, "/")
        if rel in pages:
            new = os.path.relpath(pages[rel], staged_dir).replace(os.sep, "/")
            return f"{bang}[{label}]({new}{'#' + anchor if anchor else ''})"
        if rel.startswith("docs/") and (root / rel).is_file():
            return m.group(0)                         # an image or file copied with docs/
        if (root / rel).exists():
            return label                              # not on the site: keep the words
        return m.group(0)

    return LINK.sub(fix, text)


def _rewrite_notebook(nb, here: str, pages: dict[str, str], root: Path = ROOT):
    """:func:`rewrite_links` in every Markdown cell of a notebook (in place)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source, here, pages, root)
    return nb


def _toctree(caption: str, entries: list[str]) -> str:
    return "\n".join(["\n```{toctree}", ":hidden:", f":caption: {caption}", "",
                      *entries, "```\n"])


def _exercise_index(folder: Path, files: list[str]) -> str:
    title = folder.name.split("-", 1)
    lines = [f"# Exercise {title[0]}: {title[1].replace('-', ' ')}", "",
             ("The released assignment as students get it: open the notebook in JupyterLab "
              "with the course kernel, write your code where it says `YOUR CODE HERE`, run the "
              "tests below each exercise."), ""]
    lines += [f"- [{f}]({f})" for f in files if f.endswith(".ipynb")]
    for f in files:
        if f.endswith(".py"):
            lines += ["", f"## `{f}`", "", f"```{{literalinclude}} {f}", ":language: python",
                      "```"]
    notebooks = [f[:-len(".ipynb")] for f in files if f.endswith(".ipynb")]
    return "\n".join(lines) + "\n" + _toctree("Notebooks", notebooks)


def stage(src: Path, root: Path = ROOT, log=print) -> dict[str, str]:
    """Write the site's sources into ``src`` (emptied first); returns :func:`published`."""
    from tqdm.auto import tqdm

    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    lectures = sorted((root / "lectures").glob("*.ipynb"))
    stale = [p for p in lectures if cached_executed(p) is None]
    if stale:
        log(f"executing {len(stale)} lecture(s) not in {EXECUTED.relative_to(root)} "
            "(quick mode; tests/test_notebooks.py saves them there)")
    executed = {lec.name: executed_lecture(lec)[0] for lec in tqdm(lectures, desc="lectures",
                                                                    disable=not stale)}
    pages = published(root)   # after the (maybe long) executions: one consistent snapshot
    (src / "lectures").mkdir()
    for name, nb in executed.items():
        nbformat.write(_rewrite_notebook(nb, f"lectures/{name}", pages, root),
                       src / "lectures" / name)
    folders: dict[str, list[str]] = {}
    for rel, page in pages.items():
        if rel.startswith("exercises/") and not page.endswith("/index.md"):
            (src / page).parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(".ipynb"):
                nb = nbformat.read(root / rel, as_version=4)
                nbformat.write(_rewrite_notebook(nb, rel, pages, root), src / page)
            else:
                shutil.copy2(root / rel, src / page)
            folders.setdefault(str(Path(rel).parent), []).append(Path(rel).name)
    for folder, files in folders.items():
        (src / folder / "index.md").write_text(_exercise_index(Path(folder), sorted(files)))
    shutil.copytree(GUIDES, src / "docs", ignore=shutil.ignore_patterns("*.md"))
    for rel, page in pages.items():
        if rel.endswith(".md"):
            (src / page).write_text(rewrite_links((root / rel).read_text(), rel, pages, root))
    home = (src / "index.md").read_text()
    home += _toctree("Lectures", [f"lectures/{p.stem}" for p in lectures if
                                  f"lectures/{p.name}" in pages])
    home += _toctree("Exercises", [f"{folder}/index" for folder in sorted(folders)])
    home += _toctree("Guides", [page[:-len(".md")] for rel, page in sorted(pages.items())
                                if rel.startswith("docs/")])
    (src / "index.md").write_text(home)
    return pages


# --- build ------------------------------------------------------------------------------

def build(out: Path | None = None, root: Path = ROOT, log=print) -> Path:
    """Stage and build the site; returns the folder with index.html."""
    from psml.bundle import tree_leaks

    out = Path(out or BUILD / "html").resolve()
    src = out.with_name(out.name + "-src")                 # staged pages
    stage(src, root, log)
    warnings = out.with_name(out.name + "-warnings.txt")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-c", str(BOOK),
           "-w", str(warnings), str(src), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SiteError(f"sphinx-build failed ({r.returncode}):\n{r.stderr[-4000:]}")
    broken = [w for w in warnings.read_text().splitlines() if BROKEN.search(w)]
    if broken:
        raise SiteError("broken links on the site:\n  " + "\n  ".join(broken[:30]))
    leaks = tree_leaks(out, root)
    if leaks:
        shutil.rmtree(out)
        raise SiteError("the site would show instructor material, so it was removed:\n  "
                        + "\n  ".join(leaks[:20]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", help="site folder (default: book/_build/html)")
    args = ap.parse_args(argv)
    try:
        out = build(Path(args.output) if args.output else None)
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"course site: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
