"""Gold files on disk: byte-deterministic ``.npz`` archives, sha256 hashes, the manifest.

``numpy.savez`` stamps each archive member with the current time, so two runs
would give different bytes. :func:`npz_bytes` writes the same format (a zip of
``.npy`` members, readable by ``numpy.load`` with ``allow_pickle=False``) with
a fixed timestamp, fixed attributes and no compression, so the bytes depend on
the arrays alone.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
#: 1980-01-01, the earliest time a zip archive can record.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class GoldError(ValueError):
    """A gold or results file is missing, corrupted, or not what the manifest says."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_sha256(a: np.ndarray) -> str:
    """sha256 of the array's bytes in C order (its dtype and shape are recorded beside it)."""
    return sha256_bytes(np.asarray(a, order="C").tobytes())


def npz_bytes(arrays: dict) -> bytes:
    """The ``.npz`` archive of ``arrays`` (name -> array), identical bytes for identical arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(a, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.create_system = 3  # Unix, whatever the platform that writes it
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def load_npz(path, *, what: str = "file") -> dict:
    """All arrays of an ``.npz`` file, read without pickle; a clear GoldError if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    except FileNotFoundError:
        raise GoldError(f"{what} {path} does not exist") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        # NumPy reads a file that is not an .npz as a pickle and then advises loading it
        # unsafely; that advice is wrong here, so it is not repeated.
        detail = "" if "pickle" in str(e) else f": {e}"
        raise GoldError(f"{what} {path} is not valid: not a readable .npz archive of plain arrays "
                        f"(saved with numpy.savez, no pickled objects){detail}") from None


def dump_json(obj) -> str:
    return json.dumps(obj, indent=1) + "\n"


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GoldError(f"no gold manifest at {path}; run `refimpl gold make --out {directory}` "
                        "or reinstall refimpl") from None
    except json.JSONDecodeError as e:
        raise GoldError(f"gold manifest {path} is not valid JSON ({e}): corrupted or modified; "
                        f"reinstall refimpl or regenerate it with `refimpl gold make --out {directory}`") from None


def read_checked(directory: Path, entry: dict) -> dict:
    """The arrays of one case's file, after checking its sha256 against the manifest entry."""
    path = Path(directory) / entry["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GoldError(f"gold file {path} is missing; reinstall refimpl or run "
                        f"`refimpl gold make --out {directory}`") from None
    if sha256_bytes(data) != entry["sha256"]:
        raise GoldError(f"gold file {path} does not match its sha256 in {MANIFEST} "
                        "(corrupted or modified); reinstall refimpl or regenerate the gold "
                        f"data with `refimpl gold make --out {directory}`")
    return load_npz(io.BytesIO(data), what=f"gold file {path}")
