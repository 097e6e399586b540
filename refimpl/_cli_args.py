"""Checks of the ``refimpl`` command's arguments, made before any work starts.

A mistake on the command line must cost seconds, not a training run: the
argparse types here refuse a bad number while the command line is parsed, and
the output checks refuse a path that cannot be written before anything is
computed. Every refusal is one line naming the argument and what was expected,
with exit status 2 (argparse's status for usage errors).

>>> non_negative_int("3"), positive_int("2")
(3, 2)
>>> non_negative_int("-1")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected a non-negative integer, got '-1'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

#: The file whose presence marks a folder as an earlier ``refimpl run``'s output.
RUN_MARKER = "config.json"


class UsageError(Exception):
    """An argument that cannot work; the message starts with the argument's name."""


def usage_error(prog: str, error: UsageError) -> int:
    """Print ``error`` as argparse prints usage errors (one line, stderr); exit status 2."""
    print(f"{prog}: error: argument {error}", file=sys.stderr)
    return 2


def _integer(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type of a seed: an integer >= 0."""
    return _integer(text, 0, "a non-negative integer")


def positive_int(text: str) -> int:
    """argparse type of a count (threads): an integer >= 1."""
    return _integer(text, 1, "a positive integer")


def _writable(directory: Path) -> str | None:
    """Why files cannot be created in the existing folder ``directory``, or None when they can.

    Tries it (a temporary file, removed at once): permission bits do not tell,
    a superuser passes them and still cannot write to /proc or a read-only mount.
    """
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def _creatable(option: str, path: Path) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option}: cannot create {path}: {parent} is a file, not a folder")
    reason = _writable(parent)
    if reason:
        raise UsageError(f"{option}: cannot create {path}: cannot write in {parent} ({reason})")


def check_run_folder(option: str, path, *, overwrite: bool) -> None:
    """``path`` can take a run's files without mixing them with another run's.

    It must be a new folder, an empty one, or, with ``overwrite``, an earlier
    run's folder (plain files and a ``config.json``), whose files
    :func:`clear_run_folder` removes before the run.
    """
    check_output_folder(option, path)
    path = Path(path)
    entries = sorted(os.listdir(path)) if path.is_dir() else []
    if entries and not overwrite:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UsageError(f"{option}: {path} is not empty ({shown}); give a new or empty folder, "
                         "or add --overwrite to replace an earlier run's files")
    if entries and not _is_run_folder(path, entries):
        raise UsageError(f"{option}: {path} is not the folder of an earlier refimpl run (no {RUN_MARKER}, "
                         "or it holds sub-folders); --overwrite replaces only a run's files: give a "
                         "new or empty folder")


def _is_run_folder(path: Path, entries: list) -> bool:
    if RUN_MARKER not in entries or not all((path / e).is_file() for e in entries):
        return False
    try:
        return "recipe" in json.loads((path / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def clear_run_folder(path) -> list:
    """Remove the files of an earlier run from ``path`` (checked by :func:`check_run_folder`)."""
    path = Path(path)
    removed = sorted(os.listdir(path)) if path.is_dir() else []
    for name in removed:
        (path / name).unlink()
    return removed


def check_output_file(option: str, path) -> None:
    """``path`` can be written as a file (replacing an existing file)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option}: {path} is a folder; expected a file name")
    if path.exists():
        reason = None if os.access(path, os.W_OK) else "permission denied"
        reason = reason or _writable(path.parent)
        if reason:
            raise UsageError(f"{option}: cannot write {path} ({reason})")
        return None
    return _creatable(option, path)


def check_output_folder(option: str, path) -> None:
    """``path`` is a folder that exists and can be written, or can be created."""
    path = Path(path)
    if not path.exists():
        return _creatable(option, path)
    if not path.is_dir():
        raise UsageError(f"{option}: {path} is an existing file; expected a folder")
    reason = _writable(path)
    if reason:
        raise UsageError(f"{option}: {path} is not writable ({reason})")
    return None


def inside_installed_package(path, package_dir) -> bool:
    """Whether ``path`` lies in ``package_dir`` of an installed (not source checkout) package.

    A source checkout (``setup.py`` beside the package, outside site-packages)
    is where the shipped data is regenerated; an installed copy must stay as
    it was installed.

    >>> inside_installed_package("/x/site-packages/refimpl/gold/data", "/x/site-packages/refimpl")
    True
    >>> inside_installed_package("/tmp/gold", "/x/site-packages/refimpl")
    False
    """
    path, package_dir = Path(path).resolve(), Path(package_dir).resolve()
    if path != package_dir and package_dir not in path.parents:
        return False
    in_site = any(part in ("site-packages", "dist-packages") for part in package_dir.parts)
    return in_site or not (package_dir.parent / "setup.py").is_file()
