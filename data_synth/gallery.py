"""A PNG gallery of the synthetic data sets (``refimpl data gallery``).

Rows: two examples of every severity level of :func:`ordinal_severity`; six
films of :func:`continuous_target` at increasing target quantiles; one patient
per stage of :func:`volumes` at six depths. Drawn with matplotlib's
object-oriented API on the Agg canvas, so no global backend is touched.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .continuous import continuous_target
from .ordinal import ordinal_severity
from .volumes import volumes

COLUMNS = 6


def gallery(path="gallery.png", *, seed=0, size=64, levels=6, stages=4) -> Path:
    """Write the gallery figure to ``path`` (PNG) and return the path.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    seed : int
        Seed passed to every generator.
    size : int
        Image size in pixels.
    levels, stages : int
        Severity levels of the ordinal set, disease stages of the volumes.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = gallery(os.path.join(tmp, "g.png"), size=32, levels=3, stages=2)
    ...     out.stat().st_size > 1000
    True
    """
    from matplotlib.figure import Figure

    rows = [_ordinal_rows(seed, size, levels), [_continuous_row(seed, size)], _volume_rows(seed, size, stages)]
    rows = [row for block in rows for row in block]
    ncols = max(COLUMNS, levels)
    gap = max(2, size // 16)
    fig = Figure(figsize=(1.25 * ncols + 1.4, 1.45 * len(rows)))
    fig.subplots_adjust(left=1.4 / (1.25 * ncols + 1.4), right=0.99, top=0.98, bottom=0.01, hspace=0.3)
    # One axes per row showing a mosaic of its tiles: far cheaper to lay out than an axes per tile.
    for ax, (label, tiles) in zip(fig.subplots(len(rows), 1, squeeze=False)[:, 0], rows):
        mosaic = np.ones((size, ncols * (size + gap) - gap), dtype=np.float32)
        for j, tile in enumerate(tiles):
            if tile is not None:
                x0 = j * (size + gap)
                mosaic[:, x0:x0 + size] = tile[0]
                ax.text(x0 + size / 2, -1, tile[1], ha="center", va="bottom", fontsize=7)
        ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _ordinal_rows(seed, size, levels):
    d = ordinal_severity(12 * levels, levels=levels, size=size, seed=seed)
    rows = []
    for example in range(2):
        tiles = []
        for level in range(levels):
            idx = np.flatnonzero(d.severity == level)
            tiles.append((d.images[idx[example], 0], f"severity {level}") if len(idx) > example else None)
        rows.append(("ordinal_severity\n(ConPro)" if example == 0 else "", tiles))
    return rows


def _continuous_row(seed, size):
    d = continuous_target(200, size=size, seed=seed)
    order = np.argsort(d.target, kind="stable")
    pick = order[np.linspace(0, len(order) - 1, COLUMNS).round().astype(int)]
    return "continuous_target\n(AdaCon, BMD)", [(d.images[i, 0], f"target {d.target[i]:.2f}") for i in pick]


def _volume_rows(seed, size, stages):
    v = volumes(10 * stages, size=size, stages=stages, seed=seed, stage_weights=np.ones(stages))
    rows = []
    for stage in range(stages):
        idx = np.flatnonzero(v.stage == stage)
        tiles = []
        if len(idx):
            own = np.flatnonzero(v.patient == v.patient[idx[0]])
            for q in np.linspace(0.0, 0.95, COLUMNS):
                i = own[np.argmin(np.abs(v.depth[own] - q))]
                tiles.append((v.images[i, 0], f"depth {v.depth[i]:.2f}"))
        rows.append((f"volumes (WSP)\nstage {stage}", tiles))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``refimpl data gallery`` (checked by the ``refimpl`` command's own argument types)."""
    from refimpl._cli_args import non_negative_int, positive_int

    parser.add_argument("--out", default="gallery.png", help="output PNG path (default: gallery.png)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of every generator, an integer >= 0 (default: 0)")
    parser.add_argument("--size", type=positive_int, default=64,
                        help="image size in pixels, at least 16 (default: 64)")


def main(args) -> int:
    """Write the gallery and print where it went; exit status 2 for an argument that cannot work."""
    from refimpl import _cli_args

    try:
        if args.size < 16:
            raise _cli_args.UsageError(f"--size: expected at least 16 pixels, got {args.size}")
        _cli_args.check_output_file("--out", args.out)
    except _cli_args.UsageError as e:
        return _cli_args.usage_error("refimpl data gallery", e)
    print(gallery(args.out, seed=args.seed, size=args.size))
    return 0
