"""``refimpl gold verify``: compare saved results with the gold data; exit 1 when any case fails."""
from __future__ import annotations

import json
from pathlib import Path

from . import add_gold_argument, fail


def add_arguments(parser) -> None:
    parser.add_argument("results", type=Path,
                        help="an .npz of results (keys <key> in <case>.npz, or <case>/<key>) "
                             "or a folder of them")
    parser.add_argument("--case", default=None, metavar="PATTERN",
                        help="check only the matching cases; those without a result are listed")
    parser.add_argument("--exported", type=Path, default=None, metavar="DIR",
                        help="the folder `refimpl gold export` wrote (or its cases.json): check its cases, "
                             "list those without a result")
    parser.add_argument("--strict", action="store_true",
                        help="also fail on selected cases without a result and on result keys a case "
                             "does not have")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_gold_argument(parser)


def main(args) -> int:
    from .. import GoldError, verify_results

    try:
        report = verify_results(args.results, args.case, gold=args.gold, strict=args.strict,
                                exported=args.exported)
    except (GoldError, ValueError) as e:
        return fail("verify", e)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report)
    return 0 if report.ok else 1
