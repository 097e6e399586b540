"""Directives that build pages from the code, so that no page repeats what a docstring or the gold data says.

``.. errata-index::`` renders :func:`refimpl.errata.collect` as one table (``:module:`` limits it to the
errata whose object lies in that module); ``.. gold-cases:: PATTERN`` lists the gold cases that match.
"""
import importlib
import inspect
import re

from docutils.parsers.rst import Parser, directives
from docutils.utils import new_document
from sphinx.util.docutils import SphinxDirective

from refimpl import errata, gold

#: a cross-reference written relative to its module (``:func:`ecdf```), which the index page must qualify
RELATIVE_ROLE = re.compile(r":(func|class|mod|meth|data|attr|obj):`(~?)([A-Za-z_][\w]*)`")


def _module_of(obj: str) -> str:
    try:
        importlib.import_module(obj)
        return obj
    except ImportError:
        return obj.rsplit(".", 1)[0]


def _role(obj: str) -> str:
    module = _module_of(obj)
    if module == obj:
        return "mod"
    value = getattr(importlib.import_module(module), obj.rsplit(".", 1)[1])
    return "class" if inspect.isclass(value) else "func"


def _link(obj: str, short: bool = False) -> str:
    """A cross-reference to ``obj`` shown without the leading ``refimpl.`` (``short``: its last name only)."""
    shown = obj.rsplit(".", 1)[-1] if short else obj.removeprefix("refimpl.")
    return f":{_role(obj)}:`{shown} <{obj}>`"


def _qualify(text: str, module: str) -> str:
    """Relative cross-references in ``text`` made absolute, shown as written."""
    return RELATIVE_ROLE.sub(lambda m: f":{m[1]}:`~{module}.{m[3]}`", text)


def _plain(text: str) -> str:
    """Plain text (a gold case's description) escaped for reST: ``|x|`` is not a substitution, and so on."""
    return re.sub(r"([\\`*_|])", r"\\\1", text)


def _list_table(header, rows, widths):
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}",
             "   :class: refimpl-table", ""]
    for row in [header, *rows]:
        for k, cell in enumerate(row):
            lines.append(f"   {'*' if k == 0 else ' '} - {cell}")
    return lines


class _Generated(SphinxDirective):
    def _render(self, lines):
        """The nodes of reST ``lines``, parsed as reST whatever the page's own markup (MyST pages included)."""
        document = new_document(self.get_source_info()[0], self.state.document.settings)
        Parser().parse("\n".join(lines), document)
        return document.children


class ErrataIndex(_Generated):
    """Every erratum marked in the code's docstrings, in one table."""

    option_spec = {"module": directives.unchanged}

    def run(self):
        found = errata.collect()
        module = self.options.get("module")
        if module:
            found = [e for e in found if e.obj == module or e.obj.startswith(module + ".")]
        if not found:
            raise self.error(f"no erratum found{' in ' + module if module else ''}")
        found.sort(key=lambda e: (errata.PAPERS.index(e.paper), e.source != "paper", e.where))
        for name in {_module_of(e.obj) for e in found}:
            self.env.note_dependency(inspect.getsourcefile(importlib.import_module(name)))
        rows = [(e.paper, e.where if e.source == "paper" else f"authors' code, {e.where}",
                 _qualify(e.text, _module_of(e.obj)), _link(e.obj, short=bool(module))) for e in found]
        if module:  # one loss: its paper goes without saying
            return self._render(_list_table(("where", "erratum", "handled in"), [r[1:] for r in rows], (18, 64, 18)))
        return self._render(_list_table(("paper", "where", "erratum", "handled in"), rows, (8, 16, 52, 24)))


class GoldCases(_Generated):
    """The gold cases whose names match the pattern (as ``refimpl gold export --case`` reads it)."""

    required_arguments = 1

    def run(self):
        manifest = gold.manifest()["cases"]
        names = gold.cases(self.arguments[0])
        if not names:
            raise self.error(f"no gold case matches {self.arguments[0]!r}")
        rows = [(f"``{n}``", f":func:`{manifest[n]['function']}`", _plain(manifest[n]["description"])) for n in names]
        return self._render(_list_table(("case", "function", "what it holds"), rows, (25, 25, 50)))


def setup(app):
    app.add_directive("errata-index", ErrataIndex)
    app.add_directive("gold-cases", GoldCases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
