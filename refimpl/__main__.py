"""``python -m refimpl`` is the ``refimpl`` command."""
from .cli import main

raise SystemExit(main())
