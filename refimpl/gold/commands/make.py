"""``refimpl gold make``: regenerate the gold data, bit for bit, from the seed."""
from __future__ import annotations

from pathlib import Path

from ... import _cli_args


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to write (never inside an installed refimpl; in a source checkout, "
                             "refimpl/gold/data regenerates the shipped data)")


def main(args) -> int:
    import refimpl

    from .. import make

    package = Path(refimpl.__file__).parent
    try:
        if _cli_args.inside_installed_package(args.out, package):
            raise _cli_args.UsageError(f"--out: {args.out} is inside the installed refimpl package "
                                       f"({package}); its gold data must stay as shipped: give another folder")
        _cli_args.check_output_folder("--out", args.out)
    except _cli_args.UsageError as e:
        return _cli_args.usage_error("refimpl gold make", e)
    manifest = make(args.out)
    out = args.out
    files = [out / c["file"] for c in manifest["cases"].values()] + [out / "manifest.json"]
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(manifest['cases'])} gold cases and manifest.json to {out} ({size / 1024:.0f} KiB)")
    return 0
