"""The ``refimpl lab`` subcommands (``list``, ``source``, ``data``) and ``refimpl tutorials``."""
from __future__ import annotations

import sys


def refuse(message: str) -> int:
    """One line on stderr naming what is wrong; exit status 2, as argparse does."""
    print(f"refimpl: error: {message}", file=sys.stderr)
    return 2


def selected_labs(args) -> list:
    """The labs ``--lab a,b`` names (all by default), each checked, and an ``--out`` that can be a folder.

    A ValueError names the argument that is wrong.
    """
    from .. import LABS

    names = list(LABS) if args.lab is None else [n.strip() for n in args.lab.split(",") if n.strip()]
    unknown = [n for n in names if n not in LABS]
    if unknown or not names:
        raise ValueError(f"--lab: no lab named {', '.join(unknown) or repr(args.lab)}; "
                         f"the labs are {', '.join(LABS)}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out: {args.out} is a file, not a folder")
    return names
