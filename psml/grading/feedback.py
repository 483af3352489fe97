"""Feedback pages that teach without leaking, and that are inert.

:class:`PsmlFeedback` runs in ``nbgrader generate_feedback`` (``c.GenerateFeedback``, set in
the course's nbgrader_config.py and in every scratch course of ``psml grade``):

* hidden tests never reach the page (``c.PsmlFeedback.show_hidden_tests = False``, the
  default): the hidden regions of test cells are replaced by one comment line, and a failing
  test shows only ``ErrorType: message`` -- a traceback would quote the hidden line that
  failed. Visible tests keep their source; assertion messages are always shown.
* what students produced is shown as text: HTML, JavaScript, SVG, Markdown, LaTeX and widget
  outputs are reduced to their text (or dropped), HTML in editable markdown/raw cells is
  cleaned (bleach), so a ``<script>`` or ``onerror=`` in an output is not live in the instructor's
  browser.
"""

from __future__ import annotations

import html
import re

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

#: output types a browser shows without running anything
SAFE_MIME = ("text/plain", "image/png", "image/jpeg", "image/gif")
HIDDEN_NOTE = "# (hidden tests: not shown in feedback)"


def _md(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def strip_hidden(source: str, note: str = HIDDEN_NOTE) -> str:
    out, hidden = [], False
    for line in source.split("\n"):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
            out.append(line[:len(line) - len(line.lstrip())] + note)
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


def inert_output(out):
    """An output reduced to what cannot run in a browser."""
    if out.get("output_type") not in ("display_data", "execute_result", "update_display_data"):
        return out
    data = out.get("data", {})
    keep = {k: v for k, v in data.items() if k in SAFE_MIME}
    if "text/plain" not in keep:
        for k in ("text/html", "image/svg+xml", "text/markdown", "text/latex",
                  "application/javascript"):
            if k in data:
                text = data[k] if isinstance(data[k], str) else "".join(data[k])
                keep["text/plain"] = f"[{k} output shown as text]\n{text}"
                break
    out["data"] = keep or {"text/plain": "[output not shown in feedback]"}
    out["metadata"] = {}
    return out


_LINK = re.compile(r"(\]\(\s*|^\s*\[[^\]]+\]:\s*)(<?[^)\s>]*)", re.M)


def _safe_link(m: re.Match) -> str:
    plain = re.sub(r"[\s\x00-\x1f<]", "", html.unescape(m.group(2))).lower()
    if plain.startswith(("javascript:", "vbscript:", "data:")):
        return m.group(1) + "#link-removed-by-psml"
    return m.group(0)


def inert_text(source: str) -> str:
    """Student markdown with harmless HTML kept, everything else escaped (nbconvert's bleach
    filter), and no ``javascript:``/``data:`` links."""
    from nbconvert.filters import clean_html

    return _LINK.sub(_safe_link, clean_html(source))


class PsmlFeedback(Preprocessor):
    """Hide hidden tests and neutralise student HTML/JS in feedback pages."""

    enabled = Bool(True, help="nbconvert runs a preprocessor only when enabled").tag(
        config=True)
    show_hidden_tests = Bool(False, help="show the source of hidden tests (and full "
                                         "tracebacks of test cells) in feedback").tag(config=True)

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)  # widget state loads and runs JavaScript
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        md = _md(cell)
        editable = not md.get("locked") or md.get("solution")
        if cell.cell_type == "code":
            is_test = md.get("grade") and not md.get("solution")
            if is_test and not self.show_hidden_tests:
                cell.source = strip_hidden(cell.source)
            for out in cell.get("outputs", []):
                inert_output(out)
                if is_test and not self.show_hidden_tests and out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        elif editable and cell.cell_type in ("markdown", "raw"):
            cell.source = inert_text(cell.source)
            cell.metadata.pop("raw_mimetype", None)
            cell.metadata.pop("format", None)
            cell.pop("attachments", None)
        return cell, resources
