"""``refimpl lab data``: recompute the labs' stored inputs and references (for maintainers)."""
from __future__ import annotations

from pathlib import Path

from . import lab_names, refuse


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to write <lab>.npz and <lab>.json to (refimpl/labs/data in a checkout)")
    parser.add_argument("--lab", default=None, metavar="NAMES",
                        help="only these labs, commas between several (default: all; data_parallel needs torch)")


def main(args) -> int:
    from .._course import write_data
    from .._references import SPECS

    try:
        names = lab_names(args.lab) if args.lab is not None else list(SPECS)
    except ValueError as e:
        return refuse(str(e))
    if args.out.exists() and not args.out.is_dir():
        return refuse(f"--out: {args.out} is a file, not a folder")
    for path in write_data(names, args.out):
        print(f"wrote {path}")
    return 0
