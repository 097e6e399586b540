"""``refimpl lab list``: the labs, their exercises and points."""
from __future__ import annotations


def add_arguments(parser) -> None:
    del parser  # no options


def main(args) -> int:
    from .._references import SPECS

    for spec in SPECS.values():
        total = sum(e.points for e in spec.exercises)
        print(f"{spec.name:<14} {total:>2} points  {spec.title}")
        for k, e in enumerate(spec.exercises, 1):
            print(f"    Ex{k} {e.function:<22} {e.points} point{'s' if e.points > 1 else ''}")
    return 0
