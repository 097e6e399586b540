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
    packages=find_packages(include=["refimpl", "refimpl.*", "data_synth", "data_synth.*"]),
    package_data={"refimpl": ["gold/data/*.npz", "gold/data/*.json", "recipes/claims.json"]},
    install_requires=["numpy>=2.1", "scipy>=1.11", "matplotlib>=3.8", "tqdm>=4.60"],
    extras_require={
        "gpu": ["cupy-cuda12x>=14"],
        "test": TEST,
        "torch": ["torch==2.13.0"],
        "notebooks": ["jupytext>=1.16", "nbclient>=0.10", "ipykernel>=6"],
        "blas": ["threadpoolctl>=3.5"],
    },
    entry_points={"console_scripts": ["refimpl=refimpl.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Intended Audience :: Education",
        "Intended Audience :: Science/Research",
    ],
)
