"""Package metadata for refimpl.

All metadata lives here; ``pyproject.toml`` holds only ``[build-system]``
because a ``[project]`` table there would make setuptools ignore the extras
declared below.
"""
from setuptools import find_packages, setup

TEST = ["pytest>=8", "hypothesis>=6.100", "array-api-strict>=2.3"]

setup(
    name="refimpl",
    version="0.1.0",
    description=(
        "Reference NumPy/CuPy implementation of severity and ordered-representation "
        "losses (ConPro, WSP, AdaCon) with hand-written forward and backward passes"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # the tutorials travel with the package (``refimpl tutorials --out DIR`` copies them out)
    packages=find_packages(include=["refimpl", "refimpl.*", "data_synth", "data_synth.*"]) + ["refimpl._tutorials"],
    package_dir={"refimpl._tutorials": "tutorials"},
    package_data={"refimpl": ["gold/data/*.npz", "gold/data/*.json", "labs/data/*.npz", "labs/data/*.json",
                              "labs/sources/*.py", "recipes/claims.json"],
                  "refimpl._tutorials": ["*.ipynb"]},
    install_requires=["numpy>=2.1", "scipy>=1.11", "matplotlib>=3.8", "tqdm>=4.60"],
    extras_require={
        "gpu": ["cupy-cuda12x>=14"],
        "test": TEST,
        # pytorch-metric-learning: the worked example of checking a library's losses against the gold data
        "torch": ["torch==2.13.0", "pytorch-metric-learning==2.9.0"],
        # jupytext: the tutorials' sources; nbclient + ipykernel: run them; notebook (Jupyter
        # Notebook 7, with JupyterLab) to open them; nbconvert: `jupyter nbconvert` (HTML, scripts)
        "notebooks": ["jupytext>=1.16", "nbclient>=0.10", "ipykernel>=6", "notebook>=7", "nbconvert>=7"],
        "blas": ["threadpoolctl>=3.5"],
        # the site: python -m sphinx -W --keep-going -b html docs docs/_build/html (MathJax bundled, no CDN)
        "docs": ["sphinx>=8.1", "numpydoc>=1.8", "myst-nb>=1.2", "pydata-sphinx-theme>=0.16",
                 "sphinx-mathjax-offline>=0.0.2"],
        "lab": ["nbgrader>=0.9.6", "jupytext>=1.16", "ipykernel>=6"],
    },
    entry_points={"console_scripts": ["refimpl=refimpl.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Intended Audience :: Education",
        "Intended Audience :: Science/Research",
    ],
)
