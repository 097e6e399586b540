"""``refimpl gold list``: the gold cases, their function, variant, keyword arguments and description."""
from __future__ import annotations

import json

from . import add_gold_argument, fail


def add_arguments(parser) -> None:
    parser.add_argument("pattern", nargs="?", default="*",
                        help="case name, name prefix or shell pattern, commas between several (default: all)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_gold_argument(parser)


def main(args) -> int:
    from .. import GoldError, describe

    try:
        rows = describe(args.pattern, gold=args.gold)
    except (GoldError, ValueError) as e:
        return fail("list", e)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = {c: max(len(str(r[c])) for r in rows) for c in ("name", "function", "variant")}
    for r in rows:
        kwargs = " ".join(f"{k}={v!r}" for k, v in r["kwargs"].items()) or "defaults"
        print(f"{r['name']:<{width['name']}}  {r['function']:<{width['function']}}  "
              f"{r['variant']:<{width['variant']}}  {kwargs}  | {r['description']}")
    print(f"{len(rows)} gold cases (keyword arguments: those that differ from the function's defaults)")
    return 0
