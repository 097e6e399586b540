"""The errata: every place where a paper's printed equations, or its authors' code, and refimpl part ways.

Each erratum is written once, in the docstring of the function or module that
handles it, as a paragraph (or list item) that starts with a marker: for
instance ``Erratum (ConPro Eq. 2):`` where a printed equation is wrong or
ambiguous, ``Erratum (WSP code, losses.py):`` where the authors' code departs
from the paper (what the ``"official"`` variants reproduce).
:func:`collect` reads them back from every module of the package, so the
documentation's errata index is made from the docstrings themselves and
cannot drift from them; ``python -m refimpl.errata`` prints the list.

>>> from refimpl import errata
>>> found = errata.collect()
>>> sorted({e.paper for e in found})
['AdaCon', 'ConPro', 'WSP']
>>> first = next(e for e in found if e.where == "Eq. 2")
>>> first.paper, first.obj
('ConPro', 'refimpl.losses.margin.forward')
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import textwrap
from typing import NamedTuple

#: the papers an erratum may name (PAPERS: the short names the docstrings use).
PAPERS = ("ConPro", "WSP", "AdaCon")

#: ``Erratum (<paper>[ code], <where>): <text>`` at the start of a paragraph or list item.
MARKER = re.compile(r"^(?:[*-] )?Erratum \((?P<paper>\w+)(?P<code> code)?,? (?P<where>[^)]*)\):\s*(?P<text>.*)",
                    re.DOTALL)


class Erratum(NamedTuple):
    """One erratum as its docstring states it."""

    paper: str  # one of PAPERS
    source: str  # "paper" (the printed equations) or "code" (the authors' public code)
    where: str  # "Eq. 3-4", "Sec. III", or the code's file
    text: str  # the rest of the paragraph, reST as written
    obj: str  # dotted name of the function, class or module whose docstring holds it


def paragraphs(doc: str) -> list[str]:
    """The paragraphs and list items of a docstring, dedented, each joined into one string."""
    lines = inspect.cleandoc(doc).splitlines()
    blocks, current = [], []
    for line in lines:
        starts_item = re.match(r"^[*-] ", line)
        if not line.strip() or (starts_item and current):
            if current:
                blocks.append(" ".join(s.strip() for s in current))
            current = [line] if starts_item else []
        else:
            current.append(line)
    if current:
        blocks.append(" ".join(s.strip() for s in current))
    return blocks


def from_docstring(doc: str, obj: str) -> list[Erratum]:
    """The errata marked in one docstring; a malformed marker raises ValueError naming ``obj``."""
    found = []
    for block in paragraphs(doc or ""):
        if not re.match(r"^(?:[*-] )?Erratum\b", block):
            continue
        match = MARKER.match(block)
        if match is None or match["paper"] not in PAPERS:
            raise ValueError(f"{obj}: an erratum must start 'Erratum (<paper>[ code], <where>): ' with <paper> "
                             f"one of {PAPERS}; got {block[:60]!r}")
        found.append(Erratum(match["paper"], "code" if match["code"] else "paper", match["where"].strip(),
                             match["text"].strip(), obj))
    return found


def modules(package: str = "refimpl") -> list[str]:
    """Every module of ``package``, private ones included (errata may sit in helpers), ``__main__`` excluded."""
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    return [n for n in names if not n.endswith("__main__") and not n.startswith("refimpl.bench.torch")]


def collect(package: str = "refimpl") -> list[Erratum]:
    """Every erratum in the docstrings of ``package``'s modules and of the functions and classes they define."""
    found = []
    for name in modules(package):
        module = importlib.import_module(name)
        found += from_docstring(module.__doc__, name)
        for attr, value in vars(module).items():
            if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == name:
                found += from_docstring(value.__doc__, f"{name}.{attr}")
    return found


def main() -> int:
    """Print every erratum, grouped by paper."""
    for e in sorted(collect(), key=lambda e: (PAPERS.index(e.paper), e.source != "paper", e.where)):
        label = f"{e.paper}{' code' if e.source == 'code' else ''}, {e.where}"
        print(f"{label}  ({e.obj})")
        print(textwrap.indent(textwrap.fill(e.text, 88), "    "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
