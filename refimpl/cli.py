"""The ``refimpl`` command.

Subcommands are thin: each names a module that provides
``add_arguments(parser)`` and ``main(args) -> int``; the module is imported
only when its subcommand runs (or when ``--help`` lists its options), so
``refimpl info`` stays fast and optional dependencies (torch) are touched only
by the commands that need them.

    refimpl info                  versions and backends
    refimpl run conpro            train a paper's pipeline, print its metrics and claims
    refimpl bench tinynet         one TinyNet training step, refimpl vs PyTorch
    refimpl bench losses          forward+backward of each loss, refimpl vs PyTorch
    refimpl bench gpu             both, on CuPy vs PyTorch CUDA
    refimpl data gallery          PNG gallery of the synthetic data sets
    refimpl gold list|make|export|verify   gold data: list the cases, regenerate, export inputs, verify
    refimpl lab list|source|data  graded course labs as nbgrader assignments
    refimpl tutorials --out DIR   copy the tutorials into a folder
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import textwrap

from . import __version__, backend

#: top-level command -> (module, one-line help)
TOP_COMMANDS = {
    "run": ("refimpl.recipes.cli", "train a paper's pipeline (conpro, wsp, adacon, augscale, all)"),
    "tutorials": ("refimpl.labs.commands.tutorials", "copy the tutorials (notebooks and sources) into a folder"),
}

DESCRIPTION = ("Reference NumPy implementation of the ConPro, WSP and AdaCon losses with hand-written "
               "backward passes: train each paper's pipeline and check its claims (run), verify another "
               "implementation against gold data (gold), time it against PyTorch (bench), draw the "
               "synthetic data (data), hand out graded course labs (lab) and the tutorials (tutorials).")

#: group -> one-line help
GROUP_HELP = {"bench": "time refimpl against PyTorch (tinynet, losses, gpu)",
              "data": "the synthetic data sets (gallery)",
              "gold": "gold data: list the cases, make, export inputs, verify results",
              "lab": "graded course labs as nbgrader assignments (list, source, data)"}

#: group -> {name: (module, one-line help)}
COMMANDS = {
    "bench": {
        "tinynet": ("refimpl.bench.tinynet", "time one TinyNet+head training step vs PyTorch"),
        "losses": ("refimpl.bench.losses", "time and memory of each loss vs torch autograd"),
        "gpu": ("refimpl.bench.gpu", "TinyNet step and losses on CuPy vs torch CUDA (needs a GPU)"),
    },
    "data": {
        "gallery": ("data_synth.gallery", "write a PNG gallery of the synthetic data sets"),
    },
    "gold": {
        "list": ("refimpl.gold.commands.listing", "list the gold cases: function, variant, kwargs, description"),
        "make": ("refimpl.gold.commands.make", "regenerate the gold data bit for bit from its seed"),
        "export": ("refimpl.gold.commands.export", "write the inputs of gold cases for another framework"),
        "verify": ("refimpl.gold.commands.verify", "compare saved results with the gold data"),
    },
    "lab": {
        "list": ("refimpl.labs.commands.listing", "the graded course labs, their exercises and points"),
        "source": ("refimpl.labs.commands.source", "write the labs as nbgrader source notebooks into a course"),
        "data": ("refimpl.labs.commands.data", "recompute the labs' stored references (maintainers)"),
    },
}


def _info(_args) -> int:
    import numpy as np

    from . import fingerprint

    print(f"refimpl {__version__}")
    print(f"python  {platform.python_version()}")
    print(f"numpy   {np.__version__}")
    print(f"fingerprint {fingerprint.describe(fingerprint.fingerprint())}")
    print(f"cupy    {'available' if backend.cupy_available() else 'not available (no CUDA device or not installed)'}")
    try:
        import torch
        print(f"torch   {torch.__version__} (cross-checks enabled)")
    except ImportError:
        print("torch   not installed (cross-checks skipped)")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage stays one ``--help`` away)."""

    def error(self, message):
        """Print ``message`` and where help is on one line to stderr; exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The parser; a subcommand's own options are added only when ``argv`` selects it."""
    examples = "\n".join(line.strip() for line in __doc__.split("\n\n")[2].splitlines())
    parser = Parser(prog="refimpl", description=textwrap.fill(DESCRIPTION, 79), epilog=f"commands:\n{examples}",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    groups.add_parser("info", help="versions and available backends",
                      description="versions and available backends").set_defaults(func=_info)
    for name, (module_name, help_text) in TOP_COMMANDS.items():
        p = groups.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(module=module_name)
        if list(argv[:1]) == [name]:
            importlib.import_module(module_name).add_arguments(p)
    for group, commands in COMMANDS.items():
        sub = groups.add_parser(group, help=GROUP_HELP[group], description=GROUP_HELP[group]).add_subparsers(
            dest="name", required=True, metavar="NAME")
        for name, (module_name, help_text) in commands.items():
            p = sub.add_parser(name, help=help_text, description=help_text)
            p.set_defaults(module=module_name)
            if list(argv[:2]) == [group, name]:
                importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    args.argv = argv  # lets a command re-run itself in a fresh interpreter
    try:
        code = args.func(args) if hasattr(args, "func") else importlib.import_module(args.module).main(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``refimpl ... | head``): Python's documented recipe, stdout to
        # devnull so the flush at exit fails no more, and the status of a command killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    return code


if __name__ == "__main__":
    raise SystemExit(main())
