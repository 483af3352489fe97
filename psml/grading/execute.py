"""The Execute preprocessor ``psml grade`` gives nbgrader (in the grader, never in the kernel).

nbgrader's ``Execute`` plus: a wall-time limit per notebook (cells after it get an error),
a cap on the output kept from one notebook, survival of a dead kernel (the remaining cells get
an error instead of the whole notebook failing to grade), the tamper guard
(:mod:`psml.grading.guard`: snapshot before the first cell, restore before each test cell),
and a probe that detects student code tampering with IPython's error reporting (the
``showtraceback`` trick). What happened is written as typed events (:mod:`.events`) to
``$PSML_GRADE_EVENTS``, which the runner turns into reasons.
"""

from __future__ import annotations

import json
import os
import re
import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors.execute import Execute
from traitlets import Integer

from psml.grading import guard
from psml.grading.events import EVENTS_ENV, Kind, write_event

# Student code that touches these is reported: they change how errors reach the grader.
SUSPICIOUS = re.compile(r"showtraceback|InteractiveShell|excepthook|set_custom_exc|run_cell|"
                        r"do_execute|\.kernel\b|_showtraceback|builtins\.__import__")
PROBE = "raise AssertionError('psml grading probe')"


def _error(ename: str, text: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=text,
                        traceback=[f"\x1b[0;31m{ename}\x1b[0m: {text}"])


class LimitedExecute(Execute):
    """nbgrader's Execute with a notebook deadline, an output cap, dead-kernel survival and
    a tampering probe. Events go to ``$PSML_GRADE_EVENTS`` (JSON lines) for the summary."""

    notebook_timeout = Integer(0, help="s for the whole notebook (0: no limit)").tag(
        config=True)
    max_output_bytes = Integer(0, help="output kept per notebook (0: no limit)").tag(
        config=True)

    def _event(self, kind: Kind, detail: str) -> None:
        write_event(os.environ.get(EVENTS_ENV), kind, detail)

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = (time.monotonic() + self.notebook_timeout
                          if self.notebook_timeout else None)
        self._out_bytes = 0
        self._truncated = False
        self._dead = None
        self._skipped = []
        self._last_reply = None
        self._guard, self._restored = None, set()
        self.timeout_func = self._cell_timeout
        for i, cell in enumerate(nb.cells):
            md = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and not md.get("locked") and SUSPICIOUS.search(
                    cell.source):
                what = SUSPICIOUS.search(cell.source).group(0)
                self._event(Kind.SUSPICIOUS, f"cell {md.get('grade_id', f'#{i + 1}')} touches "
                            f"IPython's error reporting ({what})")
        return super().preprocess(nb, resources, km)

    def _cell_timeout(self, cell):
        t = self.timeout or None
        if self._deadline is not None:
            left = max(1, int(self._deadline - time.monotonic()))
            t = min(t, left) if t else left
        return t

    async def _async_handle_timeout(self, timeout, cell=None):
        self._event(Kind.CELL_TIMEOUT, f"a cell ran longer than {timeout} s and was interrupted")
        return await super()._async_handle_timeout(timeout, cell)

    def on_cell_executed(self, **kwargs):
        self._last_reply = kwargs.get("execute_reply")
        # what the kernel showed itself, before nbgrader adds an error from the reply status
        self._shown_errors = [o for o in kwargs["cell"].get("outputs", [])
                              if o.get("output_type") == "error"]
        return super().on_cell_executed(**kwargs)

    async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                 store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", f"#{cell_index}")
        if self._dead:
            cell.outputs = [_error("KernelDied", f"not run: {self._dead}")]
            return cell
        if self._deadline is not None and time.monotonic() > self._deadline:
            if not self._skipped:
                self._event(Kind.NOTEBOOK_TIMEOUT, f"notebook time limit "
                            f"({self.notebook_timeout} s) reached before cell {gid}")
            self._skipped.append(gid)
            cell.outputs = [_error("NotebookTimeout", "not run: the notebook time limit "
                                   f"({self.notebook_timeout} s) was reached")]
            return cell
        md = cell.metadata.get("nbgrader", {})
        is_test = md.get("grade") and not md.get("solution")
        try:
            if self._guard is None:
                await self._guard_setup()
            if is_test:
                await self._guard_restore(gid)
            result = await super().async_execute_cell(cell, cell_index, execution_count,
                                                      store_history)
            if md.get("locked") and not is_test:
                await self._guard_record(cell.source)
        except DeadKernelError:
            self._dead = (f"the kernel died in cell {gid} (memory, CPU-time or process limit, "
                          "or a crash)")
            self._event(Kind.KERNEL_DIED, self._dead)
            cell.outputs.append(_error("KernelDied", self._dead))
            return cell
        except CellTimeoutError:
            self._dead = f"the kernel stopped answering after cell {gid} was interrupted"
            self._event(Kind.KERNEL_DIED, self._dead)
            cell.outputs.append(_error("CellTimeoutError", self._dead))
            return cell
        return result

    # the tamper guard (psml.grading.guard) -------------------------------------------------
    async def _silent(self, code: str = "", expr: str | None = None) -> dict:
        """Run code in the kernel without a cell; the reply content (user_expressions)."""
        msg_id = self.kc.execute(code, silent=True, store_history=False,
                                 user_expressions={"r": expr} if expr else None)
        reply = await self.async_wait_for_reply(msg_id)
        return (reply or {}).get("content", {})

    async def _guard_setup(self) -> None:
        self._guard = guard.new_key()
        await self._silent(guard.setup_code(self._guard))

    async def _guard_record(self, source: str) -> None:
        from psml.course import defined_names

        names = defined_names(source)
        if names:
            await self._silent(expr=guard.record_call(self._guard, names))

    async def _guard_restore(self, gid: str) -> None:
        reply = await self._silent(expr=guard.restore_call(self._guard))
        if not reply:  # no answer in time: the kernel is busy or dead, the cell will tell
            return
        r = reply.get("user_expressions", {}).get("r", {})
        if r.get("status") != "ok":
            self._event(Kind.FAKED_SUCCESS, f"the grader's guard was removed before test {gid} "
                        f"({r.get('ename', reply.get('status'))}): the scores cannot be trusted")
            return
        import ast

        changed = [c for c in ast.literal_eval(r["data"]["text/plain"])
                   if c not in self._restored]
        if changed:
            self._restored.update(changed)
            self._event(Kind.RESTORED, f"student code replaced {', '.join(changed[:16])}"
                        + (f" and {len(changed) - 16} more" if len(changed) > 16 else "")
                        + f" (seen before test {gid}): put back, the tests ran on the originals")

    # nbclient binds its sync wrapper to its own coroutine: bind ours
    execute_cell = run_sync(async_execute_cell)

    def preprocess_cell(self, cell, resources, index):
        out = super().preprocess_cell(cell, resources, index)
        if index == len(self.nb.cells) - 1:  # the kernel is still up: probe it
            self.probe(index)
        return out

    async def _probe(self, cell_index: int) -> None:
        """Run a failing statement: the kernel must reply 'error' and show a traceback."""
        if self._dead:
            return
        probe = NotebookNode(cell_type="code", source=PROBE, metadata={}, outputs=[],
                             execution_count=None, id="psml-probe")
        self._last_reply, self._shown_errors = None, []
        self.nb.cells.append(probe)  # nbclient stores the executed cell at its index
        try:
            await super().async_execute_cell(probe, len(self.nb.cells) - 1, None, False)
        except Exception as exc:  # a kernel that breaks on the probe is suspicious too
            self._event(Kind.FAKED_SUCCESS, f"the error probe failed: {exc!r}")
            return
        finally:
            del self.nb.cells[-1]
        status = (self._last_reply or {}).get("content", {}).get("status")
        shown = any(o.get("ename") == "AssertionError"
                    and "psml grading probe" in "".join(o.get("traceback", []))
                    for o in self._shown_errors)
        if status != "error":
            self._event(Kind.FAKED_SUCCESS, "a failing statement was reported as passing: student "
                        "code changed how IPython reports errors")
        elif not shown:
            self._event(Kind.HIDDEN_TRACEBACKS, "tracebacks are hidden: student code replaced IPython's "
                        "showtraceback (nbgrader still saw the errors)")

    probe = run_sync(_probe)

    def output(self, outs, msg, display_id, cell_index):
        if self.max_output_bytes:
            size = len(json.dumps(msg.get("content", {})))
            if self._out_bytes + size > self.max_output_bytes:
                if not self._truncated:
                    self._truncated = True
                    self._event(Kind.OUTPUT_TRUNCATED, f"output beyond "
                                f"{self.max_output_bytes // 1024} kB was dropped")
                    outs.append(NotebookNode(
                        output_type="stream", name="stderr",
                        text=f"\n[psml grade: output beyond {self.max_output_bytes // 1024} kB "
                             "was dropped]\n"))
                return None
            self._out_bytes += size
        return super().output(outs, msg, display_id, cell_index)


def run_grading(assignment: str, student: str) -> int:
    """``nbgrader autograde`` then ``generate_feedback`` for one student, in one process (each
    nbgrader start costs seconds of imports). Run in the scratch course folder by
    :mod:`psml.grading.runner`. Exit 0: graded with feedback; 1: autograde failed; 2: no feedback."""
    import sys

    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", os.getcwd()).load_config()
    api = NbGraderAPI(config=config)
    result = api.autograde(assignment, student, force=True, create=True)
    print(result.get("log", ""), result.get("error", ""), flush=True)
    if not result["success"]:
        return 1
    result = api.generate_feedback(assignment, student, force=True)
    print(result.get("log", ""), result.get("error", ""), flush=True)
    sys.stdout.flush()
    return 0 if result["success"] else 2


if __name__ == "__main__":
    import sys

    raise SystemExit(run_grading(*sys.argv[1:3]))
