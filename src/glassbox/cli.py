"""`glassbox COMMAND`: a thin command line over the Python API.

Each command is a module of glassbox.commands with `add_parser` and `run`; this file only
builds the parser from them, dispatches, and turns a GlassboxError into one line on
stderr and exit code 2. Nothing here imports torch, so `glassbox --help` is quick.
"""

from __future__ import annotations

import argparse
import os
import sys

from glassbox.commands import COMMANDS
from glassbox.errors import GlassboxError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassbox", description="Train, sample and evaluate transformers built from scratch."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except GlassboxError as err:
        print(f"glassbox: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `glassbox sample | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # what a shell reports for a process ended by SIGPIPE
    except OSError as err:  # a full disk, a folder that is a file, no permission, ...
        where = f": {err.filename}" if err.filename else ""
        print(f"glassbox: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nglassbox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
