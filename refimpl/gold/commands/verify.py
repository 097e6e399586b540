"""``refimpl gold verify``: compare saved results with the gold data; exit 1 when any case fails."""
from __future__ import annotations

import json
from pathlib import Path

from . import add_gold_argument, fail


def add_arguments(parser) -> None:
    parser.add_argument("results", type=Path,
                        help="an .npz of results (keys <key> in <case>.npz, or <case>/<key>) "
                             "or a folder of them")
    parser.add_argument("--case", default=None, metavar="PATTERN", help="check only the matching cases")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_gold_argument(parser)


def main(args) -> int:
    from .. import GoldError, verify_results

    try:
        report = verify_results(args.results, args.case, gold=args.gold)
    except (GoldError, ValueError) as e:
        return fail("verify", e)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report)
    return 0 if report.ok else 1
