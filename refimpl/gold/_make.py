"""Making the gold data: every case computed by refimpl in float64, the files and the manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..fingerprint import fingerprint
from . import _cases_layers, _cases_losses, _store
from ._conventions import CONVENTIONS, case_notes
from ._spec import GIVEN_ROLES, compute

FORMAT_VERSION = 1
SEED = 20240608
#: (rtol, atol factor) by result dtype; a case's atol is the factor times the largest |value|
#: of its expected arrays (outputs and gradients), rounded to one significant digit.
TOLERANCE = {"float64": (1e-9, 1e-12), "float32": (1e-3, 1e-5)}

def specs() -> list:
    """Every gold case, losses first; names are unique."""
    found = _cases_losses.specs() + _cases_layers.specs()
    names = [s.name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate gold case names: {duplicates}")
    return found


def _tolerance(expected: list) -> dict:
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in expected)
    return {dtype: {"rtol": rtol, "atol": float(f"{factor * max(scale, 1e-300):.0e}")}
            for dtype, (rtol, factor) in TOLERANCE.items()}


def _describe(spec, kwargs: dict, rows: list) -> str:
    """The spec's description, then what applies to this case alone (anchors without positives, views)."""
    given = {name: a for name, role, a in rows if role in GIVEN_ROLES}
    parts = [spec.description.rstrip(".") + "."] if spec.description else []
    return " ".join(parts + case_notes(spec.forward, kwargs, given))


def _array_entry(role: str, a: np.ndarray) -> dict:
    return {"role": role, "dtype": str(a.dtype), "shape": list(a.shape), "sha256": _store.array_sha256(a)}


def build(seed: int = SEED):
    """``(manifest, files)``: the manifest dict and ``{file name: bytes}`` of every case."""
    cases, files = {}, {}
    for spec in specs():
        kwargs, rows = compute(spec, seed)
        file_name = f"{spec.name}.npz"
        files[file_name] = _store.npz_bytes({name: a for name, _, a in rows})
        has_grad = any(role == "grad" for _, role, _ in rows)
        cases[spec.name] = {
            "function": spec.forward,
            "backward": spec.backward_path if has_grad else None,
            "kwargs": kwargs,
            "description": _describe(spec, kwargs, rows),
            "file": file_name,
            "sha256": _store.sha256_bytes(files[file_name]),
            "tolerance": _tolerance([a for _, role, a in rows if role not in GIVEN_ROLES]),
            "arrays": {name: _array_entry(role, a) for name, role, a in rows},
        }
    manifest = {
        "format_version": FORMAT_VERSION,
        "refimpl": __version__,
        "seed": seed,
        "generated_with": fingerprint(),  # what decides the outputs' last bits
        "conventions": CONVENTIONS,
        "cases": cases,
    }
    return manifest, files


def make(out, seed: int = SEED) -> dict:
    """Write every case and the manifest to the folder ``out``; returns the manifest.

    Case files that an earlier manifest in ``out`` listed and this one does not
    are removed; other files are left alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest, files = build(seed)
    try:
        previous = [entry.get("file") for entry in _store.read_manifest(out)["cases"].values()]
    except (_store.GoldError, KeyError, AttributeError, TypeError):  # none, or not one of ours
        previous = []
    for name in previous:
        if isinstance(name, str) and name.endswith(".npz") and name not in files:
            (out / Path(name).name).unlink(missing_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / _store.MANIFEST).write_text(_store.dump_json(manifest), encoding="utf-8")
    return manifest
