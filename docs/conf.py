"""Sphinx configuration: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

Everything the built site needs is served from the site itself: MathJax comes
from the ``sphinx-mathjax-offline`` package (no CDN), the notebooks are
rendered from their stored outputs (nothing is executed), and there is no
intersphinx (its inventories would be fetched from the network at build time).
"""
import importlib.util
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]  # this checkout's refimpl, then the local extensions

import refimpl  # noqa: E402
import scipy.stats  # noqa: E402,F401  (before any mock, see autodoc_mock_imports)


def copy_notebooks(source=DOCS.parent / "tutorials", target=DOCS / "tutorials"):
    """The executed notebooks, copied into the source folder (Sphinx reads no file outside it; not committed)."""
    target.mkdir(exist_ok=True)
    notebooks = {nb.name: nb for nb in source.glob("*.ipynb")}
    for old in target.glob("*.ipynb"):
        if old.name not in notebooks:
            old.unlink()
    for name, nb in notebooks.items():
        if not (target / name).exists() or (target / name).read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target / name)


copy_notebooks()

project = "refimpl"
author = "the refimpl authors"
copyright = "the refimpl authors, MIT licence"
version = release = refimpl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax, mathjax_path pointed at it
    "numpydoc",
    "myst_nb",
    "refimpl_docs",  # docs/_ext: the errata index and the gold-case tables, made from the code
]

root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# warnings as errors (-W on the command line), and every cross-reference must resolve
nitpicky = True
# no intersphinx offline: names from these packages stay plain text instead of failing the build
nitpick_ignore_regex = [(r"py:.*", r"(numpy|scipy|cupy|torch)(\..*)?"),
                        # a docstring may point at a private helper, which has no page of its own
                        (r"py:.*", r"(.*\.)?_[a-z]\w*(\..*)?")]

# the notebooks are committed executed; the site shows their stored outputs
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True  # $$...$$ inside a paragraph or list item, as Jupyter renders it
myst_heading_anchors = 3
highlight_language = "text"  # a fence without a language (command output) is not guessed as Python

autosummary_generate = True
autosummary_ignore_module_all = True  # a page for every public module, __all__ or not
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc Parameters sections say the types
# The site builds with the docs extra alone: mock what is not installed, and only that. A mocked
# torch in sys.modules makes SciPy's array-API layer call issubclass() on the mock when a module
# first imports scipy.stats, so a module's import then fails depending on the order of imports.
autodoc_mock_imports = [name for name in ("cupy", "torch") if importlib.util.find_spec(name) is None]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "pydata_sphinx_theme"
html_title = "refimpl"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # the errata index is one wide table: no right-hand column there
    "secondary_sidebar_items": {"**": ["page-toc", "sourcelink"], "errata": []},
}
html_static_path = ["_static"]
html_css_files = ["refimpl.css"]
html_sidebars = {"index": [], "errata": []}  # pages without a section: no left column
html_show_sourcelink = True


def skip_namedtuple_fields(app, what, name, obj, skip, options):
    """The fields of a cache (a NamedTuple) are in its signature: no "Alias for field number k" entries."""
    doc = getattr(obj, "__doc__", None) or ""
    return True if doc.startswith("Alias for field number") else None


def setup(app):
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
