"""``psml grade ASSIGNMENT``: grade a whole class with nbgrader, in parallel, safely."""

from __future__ import annotations

import sys
from pathlib import Path


def _grade(args) -> int:
    # imported here: every `psml` command builds this parser, only `psml grade` needs them
    from psml.grading.course import Course, find_course
    from psml.grading.errors import GradingError
    from psml.grading.limits import can_isolate
    from psml.grading.report import summary_table, write_rubrics, write_summary
    from psml.grading.runner import grade_batch
    from psml.grading.submissions import collect

    course = Course.load(Path(args.course) if args.course else find_course())
    cfg = course.settings(workers=args.workers)
    limits = cfg.limits(cell_timeout=args.cell_timeout, notebook_timeout=args.timeout,
                        memory_mb=args.memory_mb, cpu_s=args.cpu_s, max_procs=args.max_procs,
                        output_kb=args.output_kb, network=True if args.network else None)
    isolate = cfg.sandbox and not args.no_sandbox
    if isolate and not can_isolate():
        print("note: not root, so kernels run as you: time, memory, CPU and output limits "
              "apply, but not the network/file-system isolation (docs/grading.md)",
              file=sys.stderr)
    subs = collect(course, args.assignment, Path(args.source) if args.source else None,
                   args.exchange, args.student or None)
    if not subs:
        raise GradingError(f"no submissions of {args.assignment} in {course.submitted} "
                           "(use --from DIR or --exchange)")
    results = grade_batch(course, args.assignment, subs, limits, cfg.workers, isolate,
                          cfg.quick, cfg.uid_base, Path(args.work) if args.work else None,
                          args.keep_scratch, canary=cfg.canary and not args.no_canary)
    print(summary_table(results))
    out = course.root / "grading-summary.csv"
    write_summary(results, out)
    rubrics = course.root / "grading-rubrics.md"
    if write_rubrics(course.source / args.assignment, args.assignment, rubrics):
        print(f"rubrics of the manually graded answers: {rubrics}")
    print(f"grades: {course.root / 'grades.csv'}   summary: {out}   "
          f"feedback: {course.feedback}/<student>/{args.assignment}/")
    broken = [r for r in results if r.fault]
    if broken:
        raise GradingError(
            f"{len(broken)} submissions could not be graded for a reason that is not the "
            "student's: " + "; ".join(f"{r.student}: {r.fault}" for r in broken[:5])
            + ". Fix it and re-run for them: psml grade " + args.assignment + " "
            + " ".join(f"--student {r.student}" for r in broken[:20]))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("grade", help="autograde a class with nbgrader: parallel, isolated, "
                                     "limited; feedback and grades.csv")
    p.add_argument("assignment", help="assignment id, e.g. 01-numpy-vectorization")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from", dest="source", metavar="DIR",
                     help="folder of <student>/<assignment>/, <student>/*.ipynb or "
                          "<student>.ipynb (copied into submitted/)")
    src.add_argument("--exchange", action="store_true",
                     help="first run `nbgrader collect` from the exchange")
    p.add_argument("--student", action="append", help="only this student (repeatable)")
    p.add_argument("--workers", "-j", type=int, help="parallel graders (default 2, "
                   "c.PsmlGrader.workers)")
    p.add_argument("--cell-timeout", type=int, help="s per cell")
    p.add_argument("--timeout", type=int, help="s per notebook")
    p.add_argument("--memory-mb", type=int, help="memory (address space) per kernel")
    p.add_argument("--cpu-s", type=int, help="CPU seconds per kernel process")
    p.add_argument("--max-procs", type=int, help="processes+threads per submission")
    p.add_argument("--output-kb", type=int, help="output kept per notebook")
    p.add_argument("--network", action="store_true", help="let student code use the network")
    p.add_argument("--no-sandbox", action="store_true",
                   help="no namespaces/own uid even as root (limits still apply)")
    p.add_argument("--no-canary", action="store_true",
                   help="do not grade the instructor's solution first (c.PsmlGrader.canary)")
    p.add_argument("--course", help="course folder (default: found from here)")
    p.add_argument("--work", help="scratch folder (default: a new temp dir)")
    p.add_argument("--keep-scratch", action="store_true", help="keep scratch courses")
    p.set_defaults(func=_grade)
