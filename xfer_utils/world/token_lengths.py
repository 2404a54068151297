"""Token lengths measured with XLM-R's genuine tokenizer on the real text of ../shared/data, for the cost model.

`xfer token-lengths [--data PATH] [--tokenizer PATH] [--out FILE]` regenerates ``resources/token_lengths.yaml``
(default: ``../shared/data`` and its ``xlmr_tokenizer``). `cost.tokens_per_example` reads that file and falls back
to its own estimates (``cost.TOKENS_PER_EXAMPLE``) for every task it does not cover; `xfer run PLAN --dry-run` says
which figures are measured and which are estimated.

A figure is the number of tokens the model processes for one example, special tokens included, exactly as
`xfer_utils.features` builds them (and as `cost.py` counts: every window of a QA example, both sides of a pair,
every choice of a multiple-choice example):

* span QA: question + context in doc-stride windows (`features.span_qa`, max_length 384, doc_stride 128), summed
  over the example's windows (``windows`` says how many per example);
* pairs (STS): ``<s> a </s></s> b </s>`` (`features.classification`, the task's max_length);
* tagging (UD): the sentence's words (`features.tagging`, the task's max_length; a long sentence's pieces added up);
* Tatoeba: one sentence, ``<s> s </s>`` (each side is embedded on its own);
* multiple choice (XCOPA): the sum over both choices of ``<s> premise question </s></s> choice </s>``
  (`features.multiple_choice`).

``status`` per figure: ``measured`` (the task's own text), ``measured-proxy`` (real text of a close stand-in,
named in ``text``), and in cost.py ``estimated`` for everything else.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import features, tasks
from ..files import RESOURCES

RESOURCE = RESOURCES / "token_lengths.yaml"
QA_MAX_LENGTH, QA_STRIDE = 384, 128          # the registry's span-QA max_length and the doc_stride default
PERCENTILES = (50, 90, 95, 99)


def stats(values: list[int]) -> dict:
    """mean, percentiles (nearest rank), max and n of a list of lengths.

    >>> stats([1, 2, 3, 4, 10])
    {'mean': 4.0, 'p50': 3, 'p90': 10, 'p95': 10, 'p99': 10, 'max': 10, 'n': 5}
    """
    import math
    v = sorted(values)
    out = {"mean": round(sum(v) / len(v), 2)}
    for p in PERCENTILES:
        out[f"p{p}"] = v[max(0, math.ceil(p / 100 * len(v)) - 1)]
    out.update(max=v[-1], n=len(v))
    return out


def _ds(cols: dict):
    from datasets import Dataset
    return Dataset.from_dict(cols)


def qa_lengths(rows: list[dict], tokenizer) -> tuple[list[int], float]:
    """(tokens per example summed over its windows, windows per example) of SQuAD-style rows."""
    ds = _ds({"id": [r["id"] for r in rows], "question": [r["question"] for r in rows],
              "context": [r["context"] for r in rows]})
    feats = features.span_qa(ds, tokenizer, QA_MAX_LENGTH, QA_STRIDE, train=False)
    per = [0] * len(rows)
    for f in feats:
        per[f["example_index"]] += f["length"]
    return per, round(len(feats) / len(rows), 3)


def pair_lengths(pairs: list[tuple[str, str]], tokenizer) -> list[int]:
    ds = _ds({"text_a": [a for a, _ in pairs], "text_b": [b for _, b in pairs], "label": [0] * len(pairs)})
    return [f["length"] for f in features.classification(ds, tokenizer, tasks.get("stsb_multi_mt").max_length)]


def tagging_lengths(sentences: list[list[str]], tokenizer, max_length: int) -> list[int]:
    ds = _ds({"tokens": sentences, "tags": [[0] * len(s) for s in sentences]})
    per: dict[int, int] = {}
    for f in features.tagging(ds, tokenizer, max_length):
        per[f["example_index"]] = per.get(f["example_index"], 0) + f["length"]
    return [per[i] for i in sorted(per)]


def sentence_lengths(lines: list[str], tokenizer) -> list[int]:
    return [len(ids) for ids in tokenizer(lines, truncation=True, max_length=512)["input_ids"]]


def mc_lengths(rows: list[dict], tokenizer) -> list[int]:
    ds = _ds({"context": [r["premise"] for r in rows], "question": [r["question"] for r in rows],
              "choices": [[r["choice1"], r["choice2"]] for r in rows], "label": [r["label"] for r in rows]})
    ml = tasks.get("xcopa").max_length
    return [sum(len(x) for x in f["input_ids"]) for f in features.multiple_choice(ds, tokenizer, ml)]


def _by_language(per_lang: dict[str, list[int]], extra: dict | None = None) -> tuple[dict, dict]:
    """(pooled figure: the mean over languages of each language's mean, per-language stats)."""
    per = {lg: {**stats(v), **((extra or {}).get(lg, {}))} for lg, v in per_lang.items()}
    mean = round(sum(s["mean"] for s in per.values()) / len(per), 2)
    pooled = stats([x for v in per_lang.values() for x in v])
    pooled["mean"] = mean
    return {**pooled, "languages": len(per)}, per


def measure(data: str | os.PathLike, tokenizer_path: str | os.PathLike, log=print) -> dict:
    """Every figure the real text supports (see the module docstring), as the YAML document."""
    from transformers import AutoTokenizer

    from . import realtext
    src, tok_dir = Path(data), Path(tokenizer_path)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    inv = realtext.inventory(src)
    out: dict = {}

    if inv["xquad"]:
        per, windows = {}, {}
        for lg in inv["xquad"]:
            rows = realtext.read_squad_json(src / "xquad" / f"xquad.{lg}.json")
            per[lg], w = qa_lengths(rows, tok)
            windows[lg] = {"windows": w}
        pooled, per_stats = _by_language(per, windows)
        unit = (f"tokens per example: question + context in doc-stride windows (max_length {QA_MAX_LENGTH}, "
                f"doc_stride {QA_STRIDE}), summed over the example's windows, special tokens included")
        out["xquad"] = {"status": "measured", "unit": unit,
                        "text": f"xquad/xquad.<lang>.json, {len(per)} languages x 1190 questions",
                        "eval": pooled, "per_language": per_stats}
        mlqa_langs = [lg for lg in tasks.all_languages("mlqa") if lg in per]
        if mlqa_langs:
            pooled, per_stats = _by_language({lg: per[lg] for lg in mlqa_langs}, windows)
            out["mlqa"] = {"status": "measured-proxy", "unit": unit,
                           "text": f"XQuAD text of MLQA's languages ({', '.join(mlqa_langs)}), MLQA-style "
                                   f"same-language question + context; MLQA itself is not in the data",
                           "eval": pooled, "per_language": per_stats}
        if "en" in per:
            en = stats(per["en"])
            out["squad"] = {"status": "measured", "unit": unit,
                            "text": "xquad/xquad.en.json: SQuAD v1.1 dev paragraphs (240) and questions (1190), "
                                    "SQuAD's own English text; the train split is not in the data",
                            "train": en, "eval": en}
            out["squad_v2"] = {"status": "measured-proxy", "unit": unit,
                               "text": "SQuAD v1.1 dev text (xquad/xquad.en.json); SQuAD 2.0 shares its "
                                       "paragraphs, its unanswerable questions are not in the data",
                               "train": en, "eval": en}
    if inv["stsb"]:
        per = {}
        for lg in inv["stsb"]:
            per[lg] = pair_lengths([(r["sentence1"], r["sentence2"]) for r in realtext.read_stsb(src, lg, "test")],
                                   tok)
        pooled, per_stats = _by_language(per)
        unit = f"tokens per pair: <s> a </s></s> b </s> (max_length {tasks.get('stsb_multi_mt').max_length})"
        out["stsb_multi_mt"] = {"status": "measured", "unit": unit,
                                "text": f"stsb_multi_mt/stsb-<lang>-test.csv, {len(per)} languages x 1379 pairs",
                                "eval": pooled, "per_language": per_stats}
        if (src / "stsb_multi_mt" / "stsb-en-train.csv").exists():
            tr = stats(pair_lengths([(r["sentence1"], r["sentence2"])
                                     for r in realtext.read_stsb(src, "en", "train")], tok))
            dev = stats(pair_lengths([(r["sentence1"], r["sentence2"])
                                      for r in realtext.read_stsb(src, "en", "dev")], tok))
            out["stsb"] = {"status": "measured", "unit": unit,
                           "text": "stsb_multi_mt/stsb-en-{train,dev}.csv (the English STS-B)", "train": tr,
                           "eval": dev}
    if inv["udpos"]:
        ml = tasks.get("udpos").max_length
        ud = realtext.ud_files(src)
        per = {lg: tagging_lengths([t for f in ud[lg]["test"] for t, _ in realtext.read_conllu(f, lang=lg)], tok, ml)
               for lg in inv["udpos"] if "test" in ud[lg]}
        pooled, per_stats = _by_language(per)
        entry = {"status": "measured",
                 "unit": f"tokens per sentence (features.tagging, max_length {ml}; pieces of a longer sentence "
                         f"added up), multiword tokens fused as XTREME does",
                 "text": f"udpos/UD_*/<code>-ud-test.conllu (UD v2.5), {len(per)} treebanks", "eval": pooled,
                 "per_language": per_stats}
        if "dev" in ud.get("en", {}):
            entry["train"] = stats(tagging_lengths([t for f in ud["en"]["dev"]
                                                    for t, _ in realtext.read_conllu(f, lang="en")], tok, ml))
            entry["text"] += "; train: English EWT dev (the train file is not in the data)"
        out["udpos"] = entry
    if inv["tatoeba"]:
        per = {}
        for lg in inv["tatoeba"]:
            s, t = realtext.read_tatoeba(src, tasks.TATOEBA_CODES[lg])
            per[lg] = sentence_lengths(s + t, tok)
        pooled, per_stats = _by_language(per)
        out["tatoeba"] = {"status": "measured", "unit": "tokens per sentence: <s> s </s>, both sides counted",
                          "text": f"tatoeba/tatoeba.<xxx>-eng.{{<xxx>,eng}}, {len(per)} languages",
                          "eval": pooled, "per_language": per_stats}
    if inv["xcopa"]:
        per = {lg: mc_lengths(realtext.read_xcopa(src, lg, "test"), tok) for lg in inv["xcopa"]}
        pooled, per_stats = _by_language(per)
        out["xcopa"] = {"status": "measured",
                        "unit": "tokens per example: both choices, each <s> premise question </s></s> choice </s>",
                        "text": f"xcopa/<lang>/test.<lang>.jsonl, {len(per)} languages x 500 items",
                        "eval": pooled, "per_language": per_stats}
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(tok_dir.glob("*.json"))}
    return {"tokenizer": {"name": "XLM-R (xlm-roberta-base/large sentencepiece, 250,002 ids)"
                          if len(tok) == 250002 else tok_dir.name, "vocab_size": len(tok), "sha256": files},
            "data": "../shared/data (see its README.md for the source of every file)",
            "generated_by": "xfer token-lengths --data ../shared/data --tokenizer ../shared/data/xlmr_tokenizer",
            "cost_uses": "mean (train: the English training text where measured, else eval; eval: the mean over "
                         "languages of each language's mean)",
            "tasks": out}


def write(doc: dict, path: str | os.PathLike = RESOURCE) -> Path:
    import yaml

    from ..files import atomic_write_text
    head = ("# Token lengths measured with XLM-R's real tokenizer on the real text of ../shared/data.\n"
            "# GENERATED by `xfer token-lengths` (xfer_utils/world/token_lengths.py, which documents every unit); do not "
            "edit by hand.\n# Read by xfer_utils/runner/cost.py (tokens_per_example); tasks not listed here keep cost.py's "
            "estimates.\n")
    path = Path(path)
    atomic_write_text(path, head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))
    return path


def load(path: str | os.PathLike = RESOURCE) -> dict:
    """The measured figures ({} when the file is absent)."""
    import yaml
    p = Path(path)
    return yaml.safe_load(p.read_text(encoding="utf-8")) if p.exists() else {}


def cmd_token_lengths(args) -> int:
    from .realtext import default_source
    data = Path(args.data) if args.data else default_source()
    if data is None or not data.is_dir():
        raise FileNotFoundError("no real data: pass --data (a folder laid out like ../shared/data) or set "
                                "XFER_SHARED_DATA")
    tok = Path(args.tokenizer) if args.tokenizer else data / "xlmr_tokenizer"
    if not (tok / "tokenizer.json").exists() and not (tok / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"--tokenizer {tok}: no tokenizer there; give a folder AutoTokenizer loads")
    doc = measure(data, tok)
    out = write(doc, args.out)
    for name, e in doc["tasks"].items():
        figs = ", ".join(f"{use} {e[use]['mean']:.1f} (p95 {e[use]['p95']})" for use in ("train", "eval") if use in e)
        print(f"{name:14} {e['status']:15} {figs}")
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("token-lengths", help="measure tokens per example with the real XLM-R tokenizer on the real "
                       "text (regenerates xfer_utils/resources/token_lengths.yaml)")
    p.add_argument("--data", default=None, help="folder laid out like ../shared/data (default: ../shared/data or "
                   "$XFER_SHARED_DATA)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: DATA/xlmr_tokenizer)")
    p.add_argument("--out", default=str(RESOURCE), help="output YAML (default: the packaged resource)")
    p.set_defaults(func=cmd_token_lengths)
