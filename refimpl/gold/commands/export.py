"""``refimpl gold export``: write the given arrays of some gold cases for another framework."""
from __future__ import annotations

from pathlib import Path

from ... import _cli_args
from . import add_gold_argument, fail


def add_arguments(parser) -> None:
    parser.add_argument("--case", default="*", metavar="PATTERN",
                        help="case name, name prefix or shell pattern, commas between several "
                             "(default: all)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the inputs to")
    add_gold_argument(parser)


def main(args) -> int:
    from .. import GoldError, export

    try:
        _cli_args.check_output_folder("--out", args.out)
    except _cli_args.UsageError as e:
        return _cli_args.usage_error("refimpl gold export", e)
    try:
        names = export(args.case, args.out, gold=args.gold)
    except (GoldError, ValueError) as e:
        return fail("export", e)
    print(f"wrote the inputs of {len(names)} gold cases to {args.out}: <case>.npz and cases.json")
    print("compute every 'expected' key of cases.json, save them as <case>.npz with those keys, "
          "then run: refimpl gold verify RESULTS")
    return 0
