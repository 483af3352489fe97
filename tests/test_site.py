"""The course site (`make site`, book/make_site.py) builds from the lectures with their
outputs, the released exercises and the guides; every internal link and image on it
resolves; no solution, hidden test or rubric is on it.

Runs after test_notebooks.py (alphabetical order), which saves each executed lecture: the
build then executes nothing. Run alone, the build executes the lectures itself (slower, same
result)."""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from psml import course
from psml.bundle import tree_leaks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import make_site  # noqa: E402


class _Page(HTMLParser):
    """The link targets (href, src) and the ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and a.get("rel") == "canonical"):
                self.targets.append(a[key])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(errors="replace"))
    return page


def broken_links(site: Path) -> list[str]:
    """'page -> target' for every relative link or image whose file or #anchor is missing."""
    # _static/ holds the theme's assets (one is an unrendered Jinja macro file), not pages.
    pages = {p: _parse(p) for p in site.rglob("*.html") if "_static" not in p.parts}
    broken = []
    for path, page in pages.items():
        for target in page.targets:
            url = urlsplit(target)
            if url.scheme or url.netloc or target.startswith(("mailto:", "javascript:", "data:")):
                continue
            dest = (path.parent / unquote(url.path)).resolve() if url.path else path
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{path.relative_to(site)} -> {target}"
            if not dest.is_file():
                broken.append(where)
            elif url.fragment and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else _parse(dest).ids
                if unquote(url.fragment) not in ids:
                    broken.append(where + " (no such anchor)")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    log = []
    out = make_site.build(tmp_path_factory.mktemp("site") / "html", ROOT, log=log.append)
    print("\n".join(log))   # says whether lectures had to be executed (-s shows it)
    return out


@pytest.mark.slow
def test_site_has_every_lecture_with_outputs_and_every_exercise(site):
    for lec in sorted((ROOT / "lectures").glob("*.ipynb")):
        html = (site / "lectures" / f"{lec.stem}.html").read_text()
        assert "cell_output" in html, f"{lec.name}: published without outputs"
    for a in course.assignments(ROOT):
        assert (site / "exercises" / a / "index.html").is_file(), a
        assert (site / "exercises" / a / f"{a}.html").is_file(), a
    for guide in (ROOT / "docs").glob("*.md"):
        assert (site / "docs" / f"{guide.stem}.html").is_file(), guide.name
    home = (site / "index.html").read_text()
    assert 'href="exercises/01-numpy-vectorization/index.html"' in home   # folder links fixed
    assert 'href="CONTRIBUTING' not in home       # not published: its link became text


@pytest.mark.slow
def test_site_links_resolve(site):
    assert broken_links(site) == []


@pytest.mark.slow
def test_site_holds_no_solution_or_hidden_test(site):
    assert not list(site.rglob("*solution*")), "a file named like a solution is on the site"
    assert tree_leaks(site, ROOT) == []


def test_link_check_catches_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#there">b</a><img src="img/x.png">'
                                     '<a href="https://example.org/">out</a>')
    (tmp_path / "b.html").write_text('<h1 id="here">B</h1><a href="a.html">a</a>')
    assert broken_links(tmp_path) == ["a.html -> b.html#there (no such anchor)",
                                      "a.html -> img/x.png"]


def test_links_to_unpublished_files_become_text_and_folders_their_index():
    pages = make_site.published(ROOT)
    text = ("[guide](docs/cluster.md#slurm) [dev](DEVELOPERS.md) [ex](exercises/02-perceptron) "
            "[gone](docs/no-such-guide.md) [web](https://example.org)")
    out = make_site.rewrite_links(text, "README.md", pages)
    assert out == ("[guide](docs/cluster.md#slurm) dev [ex](exercises/02-perceptron/index.md) "
                   "[gone](docs/no-such-guide.md) [web](https://example.org)")
    assert not [p for p in pages.values() if p.startswith("solutions")]
