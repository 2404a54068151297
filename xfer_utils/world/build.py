"""`xfer tiny DIR [--text-from PATH]`: build an offline world, the fixture world (tiny.py) or the one built from real
multilingual text (realtext.py)."""
from __future__ import annotations

from . import realtext, tiny


def cmd_tiny(args) -> int:
    import time
    if args.text_from and args.tokenizer:
        raise ValueError("--tokenizer and --text-from cannot be combined yet: the real-text world trains its own "
                         "tokenizer; use one of them")
    if args.text_from:   # the world built from real multilingual text (issue 9): world/realtext.py
        return realtext.cli_build(args.dir, args.text_from, seed=args.seed, pretrain_steps=args.pretrain_steps)
    t0 = time.time()
    paths = tiny.build(args.dir, seed=args.seed, tokenizer=args.tokenizer)
    for k, v in paths.items():
        print(f"{k:12} {v}")
    print(f"built the tiny world in {time.time() - t0:.1f}s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("tiny", help="build the offline tiny world (model + dataset mirror)")
    p.add_argument("dir", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-from", metavar="PATH", help="build from real text in a folder laid out like "
                   "../shared/data (xquad/, udpos/, tatoeba/, xcopa/, stsb_multi_mt/; see README)")
    p.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="build the tiny models on this tokenizer folder (e.g. ../shared/data/xlmr_tokenizer, XLM-R's "
                   "own 250,002-id vocabulary) instead of one trained on the mirror")
    p.add_argument("--pretrain-steps", type=int, default=None, metavar="N",
                   help="with --text-from: multilingual MLM steps for the tiny encoders (default: a couple of minutes)")
    p.set_defaults(func=cmd_tiny)
