"""`xfer` command line. Each module that owns a command exposes `register(subparsers)`; this file only wires them.
Every command's module is named by a real import inside a small function below (no module names as strings), and
imported only when that command (or the full --help) is asked for, so that `xfer tasks` does not pay for torch."""
from __future__ import annotations

import argparse
import json
import sys


def cmd_tasks(args) -> int:
    """`xfer tasks [--json]`: print the task registry."""
    from . import tasks
    rows = tasks.table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'task':15} {'family':12} {'type':20} {'metric':10} {'train on':12} languages")
    for r in rows:
        langs = "; ".join(f"{b}: {len(v)} ({' '.join(v) if len(v) <= 8 else ' '.join(v[:8]) + ' ...'})"
                          for b, v in r["languages"].items())
        print(f"{r['task']:15} {r['family']:12} {r['type']:20} {r['metric']:10} {r['train_task']:12} {langs}")
    return 0


def _tasks(sub) -> None:
    p = sub.add_parser("tasks", help="list every task: family, type, metric, languages")
    p.add_argument("--json", action="store_true", help="print the full registry as JSON")
    p.set_defaults(func=cmd_tasks)


def _tiny(sub) -> None:
    from .world import build
    build.register(sub)


def _runner(sub) -> None:
    from .runner import execute
    execute.register(sub)


def _score(sub) -> None:
    from . import scoring
    scoring.register(sub)


def _models(sub) -> None:
    from . import ladder
    ladder.register(sub)


def _check_data(sub) -> None:
    from .world import datacheck
    datacheck.register(sub)


def _token_lengths(sub) -> None:
    from .world import token_lengths
    token_lengths.register(sub)


def _gains(sub) -> None:
    from .analysis import gains
    gains.register(sub)


def _rehearse(sub) -> None:
    from .runner import rehearse
    rehearse.register(sub)


# the subcommands each registering function adds (for lazy import and for --help listing)
COMMANDS = (
    (("tasks",), _tasks),
    (("tiny",), _tiny),
    (("run", "status", "collect"), _runner),
    (("score",), _score),
    (("models",), _models),
    (("check-data",), _check_data),
    (("token-lengths",), _token_lengths),
    (("gains",), _gains),
    (("rehearse",), _rehearse),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xfer", description="xfer: English intermediate-task training and "
                                     "zero-shot cross-lingual transfer, as a reproducible study kit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmds, register in COMMANDS:
        if only is None or only in cmds:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {c for cmds, _ in COMMANDS for c in cmds}
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
