"""``refimpl lab data``: recompute the labs' stored inputs and references (for maintainers)."""
from __future__ import annotations

from pathlib import Path

from . import refuse, selected_labs


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to write <lab>.npz and <lab>.json to (refimpl/labs/data in a checkout)")
    parser.add_argument("--lab", default=None, metavar="NAMES",
                        help="only these labs, commas between several (default: all; data_parallel needs torch)")


def main(args) -> int:
    from .._course import write_data

    try:
        names = selected_labs(args)
    except ValueError as e:
        return refuse(str(e))
    try:
        written = write_data(names, args.out)
    except ImportError as e:
        return refuse(f"--lab: {e.name} is needed for {', '.join(names)} (the data_parallel lab: the torch extra)")
    except OSError as e:
        return refuse(f"--out: cannot write into {args.out} ({e.strerror or e})")
    for path in written:
        print(f"wrote {path}")
    return 0
