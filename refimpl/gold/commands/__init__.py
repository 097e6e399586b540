"""The ``refimpl gold list | make | export | verify`` commands (see :mod:`refimpl.cli`)."""
from __future__ import annotations

import sys
from pathlib import Path


def add_gold_argument(parser) -> None:
    parser.add_argument("--gold", type=Path, default=None,
                        help="gold folder to read (default: the gold data shipped in the package)")


def fail(command: str, error: Exception) -> int:
    """Print a gold or usage error to stderr; exit status 2 (1 is kept for failed cases)."""
    print(f"refimpl gold {command}: {error}", file=sys.stderr)
    return 2
