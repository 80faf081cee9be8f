"""Command line: one sub-command module per method, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from nst.errors import NSTError
from nst.runtime import tune_allocator

COMMAND_MODULES = [
    "nst.cli.gatys_cmd",
    "nst.cli.adain_cmd",
    "nst.cli.weights_cmd",
    "nst.cli.johnson_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nst", description="AutoArt neural style transfer.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the chosen command and turn library errors into a message and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()
    try:
        return int(args.handler(args) or 0)
    except NSTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
