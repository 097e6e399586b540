"""Build the tutorials: each jupytext source ``NN_name.py`` becomes ``NN_name.ipynb``, executed.

The sources are jupytext "percent" scripts (reviewable diffs); the notebooks
beside them are rendered from them with their outputs and figures, for reading
on GitHub. Each notebook records the sha256 of the source it was rendered
from, so ``--check`` can say which are stale.

    python tutorials/build.py                  # render and execute every tutorial
    python tutorials/build.py 01 06            # only those whose names start so
    python tutorials/build.py --check          # exit 1 if a notebook is older than its source
    python tutorials/build.py --student DIR    # the lab version, without solutions, into DIR

Course labs: code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(the nbgrader markers) is the solution of an exercise; the student version
replaces it by ``raise NotImplementedError``. Every exercise is followed by a
check cell (the gradient checker or gold verify) that fails on the student
version and passes on the solution.

``REFIMPL_TUTORIAL_QUICK=1`` makes the notebooks use small sizes (the test
suite runs them so).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOLUTION = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n", re.M | re.S)
#: seconds one cell may run before the build gives up
CELL_TIMEOUT = 600


def sources(prefixes=()) -> list[Path]:
    """The tutorial sources ``NN_*.py`` in order, optionally those whose names start with a prefix."""
    found = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
    return [p for p in found if not prefixes or p.name.startswith(tuple(prefixes))]


def digest(source: Path) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def strip_solutions(text: str) -> str:
    """The student version of a source: each solution block becomes ``raise NotImplementedError``.

    >>> print(strip_solutions("def f(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION\\n"))
    def f(x):
        raise NotImplementedError("your code here")
    <BLANKLINE>
    """
    return SOLUTION.sub(lambda m: f'{m["indent"]}raise NotImplementedError("your code here")\n', text)


def notebook(text: str, *, sha256: str | None = None):
    """A jupytext percent script as an nbformat notebook (not executed)."""
    import jupytext

    nb = jupytext.reads(text, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    if sha256 is not None:
        nb.metadata["refimpl"] = {"source_sha256": sha256}
    return nb


def execute(nb, *, cwd: Path = HERE, quick: bool = False):
    """Run every cell in a fresh kernel; raises ``nbclient.exceptions.CellExecutionError`` on a failure."""
    from nbclient import NotebookClient

    # one BLAS thread, as `refimpl run` uses: small matrix products gain nothing from more, and on a
    # busy two-core machine spinning BLAS threads made a training step many times slower
    env = {"REFIMPL_TUTORIAL_QUICK": "1" if quick else "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1",
           # the kernel runs in tutorials/: without this it imports whichever refimpl is installed,
           # not the one of this checkout
           "PYTHONPATH": os.pathsep.join(filter(None, (str(HERE.parent), os.environ.get("PYTHONPATH"))))}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def stale(prefixes=()) -> list[str]:
    """Names of the sources whose notebook is missing or was rendered from another version."""
    import nbformat

    out = []
    for source in sources(prefixes):
        target = source.with_suffix(".ipynb")
        if not target.exists():
            out.append(f"{source.name}: no notebook")
            continue
        meta = nbformat.read(target, as_version=4).metadata.get("refimpl", {})
        if meta.get("source_sha256") != digest(source):
            out.append(f"{source.name}: {target.name} was rendered from another version")
    return out


def build(prefixes=(), *, quick: bool = False) -> list[Path]:
    import nbformat

    written = []
    for source in sources(prefixes):
        print(f"executing {source.name} ...", flush=True)
        nb = execute(notebook(source.read_text(), sha256=digest(source)), quick=quick)
        target = source.with_suffix(".ipynb")
        nbformat.write(nb, target)
        written.append(target)
    return written


def write_student(directory: Path, prefixes=()) -> list[Path]:
    """Student versions (solutions removed) as notebooks in ``directory``."""
    import nbformat

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources(prefixes):
        text = source.read_text()
        if not SOLUTION.search(text):
            continue
        target = directory / source.with_suffix(".ipynb").name
        nbformat.write(notebook(strip_solutions(text)), target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="only the tutorials whose names start with these")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook is older than its source")
    parser.add_argument("--student", type=Path, metavar="DIR", help="write the lab versions into DIR")
    parser.add_argument("--quick", action="store_true", help="small sizes (REFIMPL_TUTORIAL_QUICK=1)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.prefixes)
        print("\n".join(problems) or "every notebook is current")
        return 1 if problems else 0
    if args.student:
        for path in write_student(args.student, args.prefixes):
            print(f"wrote {path}")
        return 0
    for path in build(args.prefixes, quick=args.quick):
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
