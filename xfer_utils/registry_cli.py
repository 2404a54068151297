"""`xfer tasks [--json]`: print the task registry."""
from __future__ import annotations

import json

from . import tasks


def cmd_tasks(args) -> int:
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


def register(sub) -> None:
    p = sub.add_parser("tasks", help="list every task: family, type, metric, languages")
    p.add_argument("--json", action="store_true", help="print the full registry as JSON")
    p.set_defaults(func=cmd_tasks)
