"""``refimpl gold make``: regenerate the gold data, bit for bit, from the seed."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write (default: the gold data shipped in the package)")


def main(args) -> int:
    from .. import DATA_DIR, make

    out = args.out if args.out is not None else DATA_DIR
    manifest = make(out)
    files = [out / c["file"] for c in manifest["cases"].values()] + [out / "manifest.json"]
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(manifest['cases'])} gold cases and manifest.json to {out} ({size / 1024:.0f} KiB)")
    return 0
