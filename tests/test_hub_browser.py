"""A class round trip in a real browser (Debian's chromium, driven by Playwright) against
the hub `psml hub start` runs: a student fetches 01, runs a cell, types a solution into the
notebook (through the UI: CodeMirror receives the text as typed input), validates and submits;
the instructor collects it with the Formgrader's Collect button and sees it there; `psml grade --exchange` grades it; the
feedback is released and the student's page shows the score. Screenshots of every step land
in .cache/screenshots/ (PSML_DOC_SHOTS=1 refreshes docs/img/).
"""

import re

import nbformat
import pytest
from browser import browser_session, login, new_page, shot
from hub_session import ASSIGNMENT, INSTRUCTOR, ROOT, STUDENTS, psml

pytestmark = pytest.mark.slow
STUDENT = STUDENTS[0]
# What the student types: softmax, exercise 4 of unit 01 (its tests are worth 3 points).
SOLUTION = '''def softmax(Z):
    """Row-wise softmax, numerically stable."""
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)
'''


def _points_of(grade_id: str) -> float:
    nb = nbformat.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    return sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _menu(page, top: str, item: str):
    page.locator(".lm-MenuBar-itemLabel", has_text=top).click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def _menu_items(page, top: str) -> list[str]:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).click()
    items = [t for t in page.locator(".lm-Menu-itemLabel").all_inner_texts() if t.strip()]
    page.keyboard.press("Escape")
    return items


def _assignments_tab(page):
    _menu(page, "Nbgrader", "Assignment List")
    page.wait_for_selector("#released_assignments_list, #fetched_assignments_list")
    return page


def test_class_round_trip_in_the_browser(hub):
    with browser_session() as browser:
        try:
            _round_trip(hub, browser)
        except Exception:
            for n, p in enumerate(p for c in browser.contexts for p in c.pages):
                shot(p, f"failure-{n}")  # what each page showed when it went wrong
            raise


def _round_trip(hub, browser):
    # --- the student ------------------------------------------------------------------
    page = new_page(browser)
    login(page, hub.url, STUDENT, hub.password)
    shot(page, "01-student-lab", doc=True)
    assert _menu_items(page, "Nbgrader") == ["Assignment List"], "instructor tools shown"

    _assignments_tab(page)
    released = page.locator("#released_assignments_list .list_item", has_text=ASSIGNMENT)
    released.wait_for()
    shot(page, "02-assignments", doc=True)
    released.locator("button", has_text="Fetch").click()
    fetched = page.locator("#fetched_assignments_list .list_item", has_text=ASSIGNMENT)
    fetched.first.wait_for()

    fetched.first.locator("a.assignment-notebooks-link").click()
    page.locator("#fetched_assignments_list .nested_list_item a",
                 has_text=ASSIGNMENT).click()
    nb = page.locator(".jp-NotebookPanel:visible")
    nb.locator(".jp-Notebook").wait_for()
    # the notebook's own kernel, started without asking: the course kernel
    nb.locator(".jp-KernelName", has_text="Python 3 (psml)").wait_for(timeout=180_000)
    page.wait_for_selector(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator"
                           "[data-status='idle']", timeout=180_000)
    nb.locator(".jp-CodeCell").first.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")  # the imports cell
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')]"
        ".some(e => /\\[1\\]/.test(e.textContent))", timeout=120_000)
    shot(page, "03-notebook-ran-a-cell", doc=True)

    cell = nb.locator(".jp-CodeCell", has_text="def softmax(Z)")
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(SOLUTION)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    page.locator(".jp-StatusBar-TextItem", has_text="Saving completed").wait_for()
    shot(page, "04-answer-typed", doc=True)
    saved = hub.user_api(STUDENT, f"/api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb").json()
    sources = ["".join(c["source"]) for c in saved["content"]["cells"]]
    assert any("E / E.sum(axis=1, keepdims=True)" in s for s in sources), \
        "the typed solution did not reach the saved notebook"

    nb.locator(".jp-Toolbar-item", has_text="Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=240_000)
    page.wait_for_function("() => !/Validating/.test(document.querySelector"
                           "('.jp-Dialog').textContent)", timeout=240_000)
    shot(page, "05-validate", doc=True)
    text = dialog.inner_text()
    assert "failed" in text.lower() or "error" in text.lower(), text  # 3 of 4 unsolved
    dialog.locator("button").last.click()

    page.locator(".lm-TabBar-tab", has_text="Assignments").click()
    fetched.first.locator("button", has_text="Submit").click()
    submitted = page.locator("#submitted_assignments_list .list_item", has_text=ASSIGNMENT)
    submitted.first.wait_for(timeout=60_000)
    shot(page, "06-submitted", doc=True)

    # --- the instructor ---------------------------------------------------------------
    teacher = new_page(browser)
    login(teacher, hub.url, INSTRUCTOR, hub.admin_password)
    items = _menu_items(teacher, "Nbgrader")
    assert {"Formgrader", "Assignment List"} <= set(items), items
    # the Formgrader's Collect button (runs as the instructor, through the exchange)
    teacher.goto(f"{hub.url}/user/{INSTRUCTOR}/formgrader/manage_assignments")
    teacher.locator("tr", has_text=ASSIGNMENT).locator("td.collect a").click()
    done = teacher.locator("#success-modal, #error-modal")
    done.wait_for(timeout=120_000)
    teacher.wait_for_function(  # Bootstrap's fade-in has ended: the screenshot is legible
        "() => [...document.querySelectorAll('.modal.in')].some(m => "
        "getComputedStyle(m).opacity === '1')")
    shot(teacher, "07-formgrader-collect", doc=True)
    assert "Successfully collected" in done.inner_text(), done.inner_text()
    done.locator("button", has_text="OK").click()
    kept = hub.course / "submitted" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert kept.is_file(), f"the Collect button collected nothing into {kept.parent}"
    teacher.goto(f"{hub.url}/user/{INSTRUCTOR}/formgrader/manage_submissions/{ASSIGNMENT}")
    row = teacher.locator("tr", has_text=STUDENT)
    row.first.wait_for(timeout=60_000)
    shot(teacher, "08-formgrader-submission", doc=True)

    # --- grading and feedback ---------------------------------------------------------
    psml("grade", ASSIGNMENT, "--exchange", "--course", str(hub.course), timeout=900)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(ASSIGNMENT, STUDENT)
        score, max_score = sub.score, sub.max_score
    assert score == _points_of("test_softmax") > 0, (score, max_score)
    psml("hub", "feedback", ASSIGNMENT, "--state", str(hub.state))
    teacher.reload()
    shot(teacher, "09-formgrader-graded")

    page.locator(".lm-TabBar-tab", has_text="Assignments").click()
    page.locator("#refresh_assignments_list").click()
    submitted.first.locator("button", has_text="Fetch Feedback").click()
    view = submitted.first.locator("a", has_text="view feedback")
    view.wait_for(timeout=120_000)
    view.click()  # the file browser opens the feedback folder
    html = page.locator(".jp-DirListing-item", has_text=".html")
    html.first.wait_for()
    shot(page, "10-feedback-fetched", doc=True)
    listed = hub.user_api(STUDENT, "/assignments?course_id=psml").json()["value"]
    folder = next(s["local_feedback_path"] for a in listed if a["status"] == "submitted"
                  for s in a["submissions"] if s.get("has_local_feedback"))
    feedback = page.context.new_page()
    feedback.goto(f"{hub.url}/user/{STUDENT}/files/{folder}/{ASSIGNMENT}.html")
    body = feedback.inner_text("body")
    shot(feedback, "11-feedback-score", doc=True)
    m = re.search(r"Score:\s*([\d.]+)\s*/\s*([\d.]+)", body)
    assert m, body[:500]
    assert (float(m.group(1)), float(m.group(2))) == (score, max_score), m.group(0)
