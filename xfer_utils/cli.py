"""`xfer` command line. Each module that owns a command exposes `register(subparsers)`; this file only wires them,
importing lazily so that `xfer tasks` does not pay for torch."""
from __future__ import annotations

import argparse
import importlib
import sys

# module -> the subcommands it registers (for lazy import and for --help listing)
MODULES = {
    "xfer_utils.registry_cli": ("tasks",),
    "xfer_utils.tiny": ("tiny",),
    "xfer_utils.runner": ("run", "status", "collect"),
    "xfer_utils.scoring": ("score",),
    "xfer_utils.ladder": ("models",),
    "xfer_utils.datacheck": ("check-data",),
    "xfer_utils.token_lengths": ("token-lengths",),
    "xfer_utils.gains": ("gains",),
    "xfer_utils.rehearse": ("rehearse",),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xfer", description="xfer: English intermediate-task training and "
                                     "zero-shot cross-lingual transfer, as a reproducible study kit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod, cmds in MODULES.items():
        if only is not None and only not in cmds:
            continue
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:      # a command whose module is not part of this checkout yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {c for cmds in MODULES.values() for c in cmds}
    parser = build_parser(first if first in known else None)
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError) as e:   # bad input: one clear sentence, no traceback
        print(f"xfer {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
