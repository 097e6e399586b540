"""``refimpl lab source``: write the labs as nbgrader source notebooks into a course folder."""
from __future__ import annotations

from pathlib import Path

from . import refuse, selected_labs


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="COURSE",
                        help="the nbgrader course folder: writes COURSE/source/<lab>/<lab>.ipynb and, "
                             "if missing, COURSE/nbgrader_config.py")
    parser.add_argument("--lab", default=None, metavar="NAMES",
                        help="only these labs, commas between several (default: all; see `refimpl lab list`)")
    parser.add_argument("--install-from", default="", metavar="SPEC",
                        help="what the labs' first cell installs when refimpl is missing: a wheel's path or "
                             "URL, or a pip requirement such as git+https://... (default: none; the cell "
                             "then asks the student to install refimpl)")
    parser.add_argument("--course-id", default="refimpl-labs",
                        help="nbgrader's course id in a new nbgrader_config.py (default: refimpl-labs)")
    parser.add_argument("--overwrite", action="store_true", help="replace lab notebooks already in COURSE/source")


def main(args) -> int:
    from .._course import write_course

    try:
        names = selected_labs(args)
    except ValueError as e:
        return refuse(str(e))
    existing = [args.out / "source" / n / f"{n}.ipynb" for n in names]
    existing = [p for p in existing if p.exists()]
    if existing and not args.overwrite:
        return refuse(f"--out: {existing[0]} exists (--overwrite replaces the lab notebooks)")
    try:
        written = write_course(args.out, names, install_from=args.install_from, course_id=args.course_id)
    except OSError as e:
        return refuse(f"--out: cannot write into {args.out} ({e.strerror or e})")
    for path in written:
        print(f"wrote {path}")
    print(f"next, in {args.out}: nbgrader generate_assignment <lab>  (see docs/guide/teaching.md)")
    return 0
