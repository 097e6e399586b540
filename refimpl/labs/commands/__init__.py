"""The ``refimpl lab`` subcommands (``list``, ``source``, ``data``) and ``refimpl tutorials``."""
from __future__ import annotations

import sys


def refuse(message: str) -> int:
    """One line on stderr naming what is wrong; exit status 2, as argparse does."""
    print(f"refimpl: error: {message}", file=sys.stderr)
    return 2


def lab_names(value: str) -> list:
    """``--lab a,b`` -> the names, each checked."""
    from .. import LABS

    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in LABS]
    if unknown or not names:
        raise ValueError(f"--lab: no lab named {', '.join(unknown) or repr(value)}; the labs are {', '.join(LABS)}")
    return names
