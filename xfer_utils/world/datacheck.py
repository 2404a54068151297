"""How much of the data survives tokenization: `xfer check-data --task T --world DIR [--model M]`.

For span-QA tasks (xquad, mlqa, tydiqa, squad): the share of gold answers whose character span maps to tokens
and decodes back to the same answer text after the official normalisation (SQuAD v1.1's ``normalize_answer``;
MLQA's per-language one for ``mlqa``). The answer is decoded the way QA post-processing does it: the context
characters from the start of the first token that ends after the answer start to the end of the last token that
starts before the answer end (offset mapping), in the doc-stride windows `features.span_qa` builds. A lost answer
is *lost by tokenization* when even the whole context, tokenized without windows, does not give it back (a token
straddles an answer boundary: Arabic clitics, Chinese and Thai text without spaces), and *lost by
truncation/stride* when the tokens are right but no window holds the whole answer.

For tagging tasks (udpos, panx, ccg): the share of words that receive exactly one labelled sub-word in the
features `features.tagging` builds; a word without one is lost by tokenization when it yields no token at all,
by truncation only when it is itself longer than `max_length` sub-words (longer sentences are split between
words, as in XTREME, not truncated).

JSON shape (``--json``)::

    {"task": T, "split": S, "model": M, "world": DIR, "languages": {LANG: {"total": n, "kept": m, "rate": r,
     "lost_tokenization": a, "lost_truncation": b, "source": "real"|"synthetic", ...}}}

``rate`` is a percentage (0-100), like every score in this project.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import data, features, metrics, tasks
from . import tiny

QA_TYPES = ("span_qa",)
TAGGING_TYPES = ("tagging",)
MAX_EXAMPLES_SHOWN = 5          # lost items kept per language in the result, for a quick look at what went wrong


def _world_paths(world_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(world root, data dir): `world_dir` may be a world built by `xfer tiny` or its data folder."""
    w = Path(world_dir)
    if (w / "data").is_dir():
        return w, w / "data"
    if w.is_dir() and any(w.glob("*/*")):
        return w.parent, w
    raise FileNotFoundError(f"{w} is not a world built by `xfer tiny DIR` (no {w / 'data'})")


def _model_path(model: str | None, root: Path) -> str:
    """A model name of the world (tiny-xlmr-s, tiny-xlmr-m, their -untrained copies) -> its folder in the world;
    anything else (a hub id, a folder) is passed on unchanged."""
    name = model or tiny.DEFAULT_MODEL
    local = root / "models" / name
    if local.is_dir():
        return str(local)
    if name.split("-untrained")[0] in tiny.MODEL_SIZES:
        raise FileNotFoundError(f"the world {root} has no model {name!r} ({local} is missing); pass --model with a "
                                f"checkpoint name or folder")
    return name


def _tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise FileNotFoundError(f"cannot load the tokenizer of {name!r} (not a local folder, not in the hub cache, "
                                f"or offline): {e}") from e


def _real_languages(root: Path) -> dict[str, list[str]]:
    try:
        return json.loads((root / "world.json").read_text()).get("real_languages", {})
    except (OSError, ValueError):
        return {}


def _normalizer(task: str, lang: str):
    if task == "mlqa" and lang in metrics.MLQA_LANGS:
        return (lambda s: metrics.mlqa_normalize(s, lang)), "mlqa"
    return metrics.squad_normalize, "squad"


def _span_tokens(offsets, start: int, end: int):
    """(first, last) index of the tokens covering chars [start, end), or None when the tokens do not hold it.
    `offsets`: (begin, end) per token, None for tokens outside the context."""
    ctx = [k for k, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start or offsets[ctx[-1]][1] < end:
        return None
    first = next((k for k in ctx if offsets[k][1] > start), None)
    last = next((k for k in reversed(ctx) if offsets[k][0] < end), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def qa_round_trip(ds, tokenizer, max_length: int = 384, doc_stride: int = 128, normalize=metrics.squad_normalize,
                  show: int = MAX_EXAMPLES_SHOWN) -> dict:
    """Round trip of every gold answer of a normalized span-QA dataset (see the module docstring)."""
    contexts = list(ds["context"])
    answers = list(ds["answers"])
    feats = features.span_qa(ds, tokenizer, max_length, doc_stride, train=False)
    windows: dict[int, list] = {}
    for f in feats:
        windows.setdefault(f["example_index"], []).append(f["offsets"])
    full = tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True)
    unk = tokenizer.unk_token_id
    out = {"total": 0, "kept": 0, "lost_tokenization": 0, "lost_truncation": 0, "unk": 0, "examples": []}
    for i, (ctx, ans) in enumerate(zip(contexts, answers)):
        offs = [tuple(o) for o in full["offset_mapping"][i]]
        for s, text in zip(ans["answer_start"], ans["text"]):
            out["total"] += 1
            e = s + len(text)
            gold = normalize(text)
            span = _span_tokens(offs, s, e)
            if span is None or normalize(ctx[offs[span[0]][0]:offs[span[1]][1]]) != gold:
                out["lost_tokenization"] += 1
                if len(out["examples"]) < show:
                    got = ctx[offs[span[0]][0]:offs[span[1]][1]] if span else ""
                    out["examples"].append({"index": i, "answer": text, "decoded": got, "lost": "tokenization"})
                continue
            if unk is not None and unk in full["input_ids"][i][span[0]:span[1] + 1]:
                out["unk"] += 1
            ok = False
            for w in windows.get(i, []):
                sp = _span_tokens(w, s, e)
                if sp and normalize(ctx[w[sp[0]][0]:w[sp[1]][1]]) == gold:
                    ok = True
                    break
            if ok:
                out["kept"] += 1
            else:
                out["lost_truncation"] += 1
                if len(out["examples"]) < show:
                    out["examples"].append({"index": i, "answer": text, "decoded": "", "lost": "truncation"})
    out["windows_per_example"] = round(len(feats) / max(1, len(contexts)), 3)
    return _rate(out)


def tagging_alignment(ds, tokenizer, max_length: int = 256, show: int = MAX_EXAMPLES_SHOWN) -> dict:
    """Share of words with exactly one labelled sub-word in `features.tagging` (see the module docstring)."""
    feats = features.tagging(ds, tokenizer, max_length)
    all_tokens = list(ds["tokens"])
    unk = tokenizer.unk_token_id
    out = {"total": 0, "kept": 0, "lost_tokenization": 0, "lost_truncation": 0, "multi_labelled": 0, "unk": 0,
           "subwords": 0, "examples": []}
    per_example: dict[int, tuple[list[int], list[int]]] = {}     # the pieces of a split sentence add up
    for f in feats:
        toks = all_tokens[f["example_index"]]
        labelled, n_sub = per_example.setdefault(f["example_index"], ([0] * len(toks), [0] * len(toks)))
        for k, (w, lab) in enumerate(zip(f["word_ids"], f["labels"])):
            if w < 0:
                continue
            n_sub[w] += 1
            if lab != features.IGNORE:
                labelled[w] += 1
                if f["input_ids"][k] == unk:
                    out["unk"] += 1
    for i, (labelled, n_sub) in per_example.items():
        toks = all_tokens[i]
        out["total"] += len(toks)
        out["subwords"] += sum(n_sub)
        missing = [w for w, c in enumerate(labelled) if c == 0]
        out["kept"] += sum(1 for c in labelled if c == 1)
        out["multi_labelled"] += sum(1 for c in labelled if c > 1)
        if missing:
            full = tokenizer(list(toks), is_split_into_words=True, truncation=False, verbose=False).word_ids()
            present = {w for w in full if w is not None}
            for w in missing:
                reason = "truncation" if w in present else "tokenization"
                out[f"lost_{reason}"] += 1
                if len(out["examples"]) < show:
                    out["examples"].append({"index": i, "word": toks[w], "position": w, "lost": reason})
    out["subwords_per_word"] = round(out.pop("subwords") / max(1, out["total"]), 3)
    return _rate(out)


def _rate(out: dict) -> dict:
    out["rate"] = round(100.0 * out["kept"] / out["total"], 3) if out["total"] else float("nan")
    return out


def check(task: str, world_dir: str | os.PathLike, model: str | None = None, languages: list[str] | None = None,
          split: str | None = None, max_length: int | None = None, doc_stride: int = 128,
          max_examples: int | None = None) -> dict:
    """Per-language survival of `task`'s data (split: the task's evaluation split) under `model`'s tokenizer
    (default: the world's tiny model; any checkpoint name or folder works)."""
    t = tasks.get(task)
    if t.type not in QA_TYPES + TAGGING_TYPES:
        raise ValueError(f"check-data covers span-QA and tagging tasks; {task!r} is a {t.type} task. Choose one of: "
                         + ", ".join(n for n in tasks.PUBLIC if tasks.get(n).type in QA_TYPES + TAGGING_TYPES))
    langs = list(languages) if languages else tasks.all_languages(task)
    for lg in langs:
        tasks.check_language(task, lg)
    split = split or t.eval_split
    root, data_dir = _world_paths(world_dir)
    model_path = _model_path(model, root)
    tokenizer = _tokenizer(model_path)
    ml = max_length or t.max_length
    real = set(_real_languages(root).get(task, []))
    out = {"task": task, "split": split, "model": model or tiny.DEFAULT_MODEL, "world": str(root),
           "max_length": ml, "languages": {}}
    if t.type in QA_TYPES:
        out["doc_stride"] = doc_stride
    for lg in langs:
        sp = split if split in tasks.splits(task, lg) else tasks.splits(task, lg)[-1]
        ds = data.load(task, sp, lg, data_dir=data_dir, max_examples=max_examples)
        if t.type in QA_TYPES:
            norm, norm_name = _normalizer(task, lg)
            res = qa_round_trip(ds, tokenizer, ml, doc_stride, norm)
            res["normalization"] = norm_name
        else:
            res = tagging_alignment(ds, tokenizer, ml)
        res["source"] = "real" if lg in real else "synthetic"
        res["split"] = sp
        out["languages"][lg] = res
    return out


def frame(result: dict):
    """The per-language table as a DataFrame (one row per language)."""
    import pandas as pd
    rows = [{"language": lg, **{k: v for k, v in r.items() if k != "examples"}}
            for lg, r in result["languages"].items()]
    return pd.DataFrame(rows)


def format_table(result: dict) -> str:
    cols = ["language", "source", "total", "kept", "rate", "lost_tokenization", "lost_truncation", "unk"]
    rows = [[lg, r.get("source", ""), r["total"], r["kept"], f"{r['rate']:.2f}", r["lost_tokenization"],
             r["lost_truncation"], r.get("unk", 0)] for lg, r in result["languages"].items()]
    widths = [max(len(str(x)) for x in [c] + [row[i] for row in rows]) for i, c in enumerate(cols)]
    what = "gold answers that round-trip" if tasks.get(result["task"]).type in QA_TYPES else \
        "words with exactly one labelled sub-word"
    lines = [f"{result['task']} ({result['split']}), model {result['model']}, max_length {result['max_length']}: "
             f"{what}",
             "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    tot = sum(r["total"] for r in result["languages"].values())
    kept = sum(r["kept"] for r in result["languages"].values())
    if tot:
        lines.append(f"all languages: {kept}/{tot} = {100.0 * kept / tot:.2f}%")
    return "\n".join(lines)


def cmd_check_data(args) -> int:
    res = check(args.task, args.world, model=args.model, languages=args.languages or None, split=args.split,
                max_length=args.max_length or None, doc_stride=args.doc_stride,
                max_examples=args.max_examples if args.max_examples > 0 else None)
    if args.json:
        print(json.dumps(res, indent=1, ensure_ascii=False))
    else:
        print(format_table(res))
    if args.min_rate > 0:
        low = [lg for lg, r in res["languages"].items() if r["rate"] < args.min_rate]
        if low:
            print(f"below {args.min_rate}%: {', '.join(low)}", file=__import__("sys").stderr)
            return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("check-data", help="how much of a task's data survives tokenization, per language")
    p.add_argument("--task", required=True, help="span-QA (xquad, mlqa, tydiqa, squad) or tagging (udpos, panx) task")
    p.add_argument("--world", required=True, help="a world built by `xfer tiny DIR` (DIR, or DIR/data)")
    p.add_argument("--model", default=None, help="checkpoint name or folder whose tokenizer to check; default: the "
                   "world's tiny-xlmr-s")
    p.add_argument("--languages", nargs="*", default=None, help="languages (default: every language of the task)")
    p.add_argument("--split", default=None, help="split (default: the task's evaluation split)")
    p.add_argument("--max-length", type=int, default=0, help="sequence length (default: the task's)")
    p.add_argument("--doc-stride", type=int, default=128, help="QA window step in context tokens (XTREME's doc_stride)")
    p.add_argument("--max-examples", type=int, default=-1, help="cap per language (seeded subset); -1 means all")
    p.add_argument("--min-rate", type=float, default=0.0, help="exit 1 when a language's rate is below this (%%)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_check_data)


def save(result: dict, path: str | os.PathLike) -> Path:
    """Write a check result as JSON (atomically)."""
    from ..files import atomic_write_text
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False))
    return path
