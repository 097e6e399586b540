"""``refimpl tutorials``: copy the tutorials (rendered notebooks and their sources) into a folder."""
from __future__ import annotations

import shutil
from pathlib import Path

from . import refuse


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write the tutorials to")
    parser.add_argument("--overwrite", action="store_true", help="replace tutorial files already in the folder")


def main(args) -> int:
    from .._course import tutorials_dir

    try:
        found = tutorials_dir()
    except FileNotFoundError as e:
        return refuse(str(e))
    files = sorted(p for pattern in ("[0-9][0-9]_*.ipynb", "[0-9][0-9]_*.py", "build.py") for p in found.glob(pattern))
    if args.out.exists() and not args.out.is_dir():
        return refuse(f"--out: {args.out} is a file, not a folder")
    clash = [args.out / p.name for p in files if (args.out / p.name).exists()]
    if clash and not args.overwrite:
        return refuse(f"--out: {clash[0]} exists (--overwrite replaces the tutorial files)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for p in files:
            shutil.copyfile(p, args.out / p.name)
    except OSError as e:
        return refuse(f"--out: cannot write into {args.out} ({e.strerror or e})")
    print(f"wrote {len(files)} files to {args.out}: the tutorials as executed notebooks (*.ipynb), their "
          "jupytext sources (*.py) and build.py, which re-executes them (the notebooks extra)")
    print("the graded course labs: refimpl lab source --out COURSE (docs/guide/teaching.md)")
    return 0
