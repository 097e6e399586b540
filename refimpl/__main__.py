"""``python -m refimpl`` is the ``refimpl`` command."""
from .cli import main

if __name__ == "__main__":  # not on import (the documentation imports every module)
    raise SystemExit(main())
