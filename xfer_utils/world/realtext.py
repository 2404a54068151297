"""The real-text world: the offline tiny world rebuilt on real multilingual text (`xfer tiny DIR --text-from PATH`).

`build(root, text_from)` first writes the whole synthetic mirror (`tiny.build_data`), then OVERWRITES every config
that the real files in `text_from` cover, in the exact hub schemas (`tiny._features`), trains the tokenizer on the
pooled real text, builds the tiny models and gives them a short multilingual MLM pretraining on that text. Nothing
from `text_from` is copied into the repository: the world lives wherever `root` points (`.cache/real` by default,
which git ignores). `world.json` says, config by config and split by split, what is real and what stayed synthetic.

Expected layout of `text_from` (the layout of ../shared/data; users may point it at their own copies of these
public files; any part may be missing and is then left synthetic)::

    xquad/xquad.<lang>.json                        deepmind/xquad, SQuAD v1.1 JSON
    udpos/UD_<Treebank>/<code>_<tb>-ud-<split>.conllu   UD v2.5 CoNLL-U (split = train, dev or test)
    tatoeba/tatoeba.<xxx>-eng.{<xxx>,eng}           LASER Tatoeba v1, line-aligned
    xcopa/<lang>/{val,test}.<lang>.jsonl            cambridgeltl/xcopa
    stsb_multi_mt/stsb-<lang>-{train,dev,test}.csv  PhilipMay/stsb-multi-mt (no header: s1, s2, score)

What becomes of each (the world's ``world.json`` lists it per config and split):

* ``google/xtreme XQuAD.<lang>`` validation <- ``xquad.<lang>.json``; Romanian goes to ``google/xquad xquad.ro``
  (refs/convert/parquet layout), as the registry reads it.
* ``google/xtreme MLQA.<lang>.<lang>`` <- the XQuAD text of the same language (same-language, MLQA-style):
  the first `MLQA_VALIDATION_ARTICLES` articles are ``validation``, the rest ``test``.
* ``rajpurkar/squad plain_text`` (the English QA training task) <- XQuAD English: ``train`` = the articles
  after the first `SQUAD_VALIDATION_ARTICLES`, ``validation`` = those first articles. This is acceptable only for a
  tiny world: XQuAD/MLQA test paragraphs (and their translations) are then seen in training, so QA scores on the
  real-text world test the plumbing and the tokenization, not generalisation.
* ``google/xtreme udpos.<Language>`` test <- every ``*-ud-test.conllu`` of that language (concatenated, as XTREME
  does); English ``train``/``validation`` <- EWT **dev** split in two (the first `UD_TRAIN_SHARE` of its
  sentences train, the rest validation), because the snapshot has no UD train files. Multiword tokens are
  collapsed into their surface form the XTREME way (``--replace_subtokens_with_fused_forms``, see `fuse_multiword`).
* ``google/xtreme tatoeba.<code3>`` validation and the LASER-layout user files ``user/tatoeba`` <- Tatoeba.
* ``cambridgeltl/xcopa <lang>`` validation/test <- XCOPA (``val`` is the hub's ``validation``).
* ``PhilipMay/stsb_multi_mt <lang>`` dev/test (and English train) <- STS-B multi-MT; ``ja`` is in the files but not
  a hub config, so it is skipped.
* ``user/mlm/<lang>.txt`` (MLM co-training text) <- the pooled real text of that language, where there is any.

Everything else (NLI, PAWS-X, PAN-X, BUCC, TyDiQA, COPA/SIQA, non-English train splits, ...) stays synthetic.

>>> pos_head([("ADP", 2), ("DET", 2)], "de")     # German 'im' = in + dem, both attached to the noun: ADP wins
0
>>> pos_head([("VERB", 1), ("PRON", 2)], "es")   # one subword is higher in the tree: it heads the span
0
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

from .. import tasks
from . import tiny

DEFAULT_PRETRAIN_STEPS = 600          # per model: 16-45 s for tiny-xlmr-s, 43-95 s for tiny-xlmr-m on one shared core
DEFAULT_PRETRAIN_LR = 1e-3
DEFAULT_VOCAB_SIZE = 8000
MAX_LINES_PER_LANGUAGE = 1000         # cap of the pooled text per language (tokenizer and MLM)
UNTRAINED_SUFFIX = "-untrained"      # models/<name>-untrained: the encoder before MLM pretraining, for comparison
MLQA_VALIDATION_ARTICLES = 8          # of XQuAD's 48 articles
SQUAD_VALIDATION_ARTICLES = 8
UD_TRAIN_SHARE = 0.8
# ud-conversion-tools (conllu_to_conll.py, as XTREME runs it): the POS that heads a multiword token when several
# subwords are equally high in the tree. German uses the default list (its own entry is commented out there).
POS_PRECEDENCE = {
    "default": "VERB NOUN PROPN PRON ADJ NUM ADV INTJ AUX ADP DET PART CCONJ SCONJ X PUNCT".split(),
    "es": "VERB AUX PRON ADP DET".split(),
    "fr": "VERB AUX PRON NOUN ADJ ADV ADP DET PART SCONJ CONJ".split(),
    "it": "VERB AUX ADV PRON ADP DET INTJ".split(),
}
XTREME = "google/xtreme"


def default_source() -> Path | None:
    """../shared/data beside the repo (or $XFER_SHARED_DATA); None when absent (files.shared_data)."""
    from .. import files
    return files.shared_data()


# ---------------------------------------------------------------- readers (one per source format)
def read_squad_json(path: str | os.PathLike) -> list[dict]:
    """SQuAD v1.1 JSON -> rows {id, title, context, question, answers{answer_start, text}}, article order kept;
    `article` is the article's index (used to split by article)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = []
    for a, art in enumerate(doc["data"]):
        for par in art["paragraphs"]:
            for qa in par["qas"]:
                rows.append({"id": qa["id"], "title": art.get("title", ""), "context": par["context"],
                             "question": qa["question"], "article": a,
                             "answers": {"answer_start": [int(x["answer_start"]) for x in qa["answers"]],
                                         "text": [x["text"] for x in qa["answers"]]}})
    return rows


def pos_head(subwords: list[tuple[str, int]], lang: str = "default") -> int:
    """Index of the subword whose UPOS a fused multiword token takes. `subwords`: (upos, depth in the tree).
    ud-conversion-tools' rule: the single highest subword (fewest ancestors) heads the span; among several equally
    high ones, the first in the language's POS precedence list (`POS_PRECEDENCE`; unlisted tags rank last)."""
    top = min(d for _, d in subwords)
    highest = [i for i, (_, d) in enumerate(subwords) if d == top]
    if len(highest) == 1:
        return highest[0]
    order = POS_PRECEDENCE.get(lang, POS_PRECEDENCE["default"])
    rank = {p: k for k, p in enumerate(order)}
    return min(highest, key=lambda i: (rank.get(subwords[i][0], len(order)), i))


def read_conllu(path: str | os.PathLike, fuse_multiword: bool = True, lang: str = "default") \
        -> list[tuple[list[str], list[str]]]:
    """CoNLL-U -> [(tokens, upos)] per sentence. Empty nodes (``8.1``) are skipped. With `fuse_multiword` (XTREME's
    ``--replace_subtokens_with_fused_forms``) a range line ``19-20 im`` replaces its subwords (``in`` + ``dem``) by
    one token ``im`` whose UPOS is the subword chosen by `pos_head`; without it the subwords are kept and the range
    line dropped (what the HF ``google/xtreme`` loading script did). Sentences whose forms are all ``_`` are dropped
    and whitespace inside a form is collapsed to one space (XTREME's utils_preprocess)."""
    out = []
    words: dict[int, tuple[str, str, int]] = {}
    ranges: list[tuple[int, int, str]] = []

    def flush():
        if not words:
            return
        heads = {i: h for i, (_, _, h) in words.items()}

        def depth(i):
            d, seen = 0, set()
            while heads.get(i, 0) != 0 and i not in seen:
                seen.add(i)
                i, d = heads[i], d + 1
            return d
        skip, fused = set(), {}
        if fuse_multiword:
            for a, b, form in ranges:
                span = [i for i in range(a, b + 1) if i in words]
                if not span:
                    continue
                k = pos_head([(words[i][1], depth(i)) for i in span], lang)
                fused[span[0]] = (form, words[span[k]][1])
                skip.update(span[1:])
        toks, tags = [], []
        for i in sorted(words):
            if i in skip:
                continue
            form, upos = fused.get(i, words[i][:2])
            toks.append(" ".join(form.split()) or form)
            tags.append(upos)
        if not all(t == "_" for t in toks):
            out.append((toks, tags))

    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            flush()
            words, ranges = {}, []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 10:
            raise ValueError(f"{path}: not a CoNLL-U line (expected 10 tab-separated columns): {line[:80]!r}")
        idx = cols[0]
        if "." in idx:
            continue
        if "-" in idx:
            a, b = idx.split("-")
            ranges.append((int(a), int(b), cols[1]))
            continue
        words[int(idx)] = (cols[1], cols[3], int(cols[6]) if cols[6].isdigit() else 0)
    flush()
    return out


def ud_files(text_from: Path) -> dict[str, dict[str, list[Path]]]:
    """{lang: {split: [conllu files]}} under `text_from/udpos` (language = the file name's prefix)."""
    out: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for f in sorted((Path(text_from) / "udpos").glob("UD_*/*-ud-*.conllu")):
        lang = f.name.split("_")[0]
        split = f.stem.rsplit("-", 1)[-1]
        out[lang][split].append(f)
    return {k: dict(v) for k, v in out.items()}


def read_tatoeba(text_from: Path, code3: str) -> tuple[list[str], list[str]]:
    """(non-English lines, English lines) of LASER's tatoeba.<xxx>-eng.{xxx,eng} under `text_from`/tatoeba; line i
    translates line i. The one LASER reader is retrieval.read_tatoeba."""
    from .. import retrieval
    return retrieval.read_tatoeba(Path(text_from) / "tatoeba", code3)


def read_xcopa(text_from: Path, lang: str, split: str) -> list[dict]:
    fname = {"validation": "val", "test": "test"}[split]
    path = Path(text_from) / "xcopa" / lang / f"{fname}.{lang}.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def read_stsb(text_from: Path, lang: str, split: str) -> list[dict]:
    """STS-B multi-MT CSV (excel dialect, no header): sentence1, sentence2, similarity_score."""
    path = Path(text_from) / "stsb_multi_mt" / f"stsb-{lang}-{split}.csv"
    with path.open(encoding="utf-8", newline="") as f:
        return [{"sentence1": r[0], "sentence2": r[1], "similarity_score": float(r[2])}
                for r in csv.reader(f) if r]


# ---------------------------------------------------------------- what the source folder holds
def inventory(text_from: str | os.PathLike) -> dict:
    """Which languages each part of `text_from` covers (only those the registry knows)."""
    src = Path(text_from)
    xq = sorted(p.name.split(".")[1] for p in (src / "xquad").glob("xquad.*.json"))
    ud = ud_files(src)
    inv = {
        "xquad": [lg for lg in tasks.all_languages("xquad") if lg in xq],
        "udpos": {lg: sorted(ud[lg]) for lg in tasks.all_languages("udpos") if lg in ud},
        "tatoeba": [lg for lg in tasks.all_languages("tatoeba")
                    if (src / "tatoeba" / f"tatoeba.{tasks.TATOEBA_CODES[lg]}-eng.eng").exists()],
        "xcopa": [lg for lg in tasks.all_languages("xcopa") if (src / "xcopa" / lg).is_dir()],
        "stsb": [lg for lg in tasks.all_languages("stsb_multi_mt")
                 if (src / "stsb_multi_mt" / f"stsb-{lg}-test.csv").exists()],
    }
    inv["mlqa"] = [lg for lg in tasks.all_languages("mlqa") if lg in inv["xquad"]]
    return inv


_SENT_END = re.compile(r"(?<=[.!?。！？।؟])\s*")


def _sentences(text: str, max_chars: int = 400) -> list[str]:
    """A paragraph cut at sentence ends (Latin, CJK, Devanagari, Arabic marks), long pieces cut at max_chars."""
    out = []
    for s in _SENT_END.split(text):
        s = s.strip()
        while len(s) > max_chars:
            cut = s.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            out.append(s[:cut].strip())
            s = s[cut:].strip()
        if s:
            out.append(s)
    return out


def corpus(text_from: str | os.PathLike, max_per_language: int = MAX_LINES_PER_LANGUAGE, seed: int = 0) \
        -> dict[str, list[str]]:
    """The pooled real text, per ISO 639-1 language: XQuAD contexts (cut into sentences) and questions, UD
    sentences, both sides of Tatoeba, XCOPA premises and choices, STS-B sentences. Deduplicated, shuffled with
    `seed`, capped at `max_per_language` lines per language so that English does not swamp the rest."""
    src = Path(text_from)
    inv = inventory(src)
    text: dict[str, list[str]] = defaultdict(list)
    for lg in inv["xquad"]:
        rows = read_squad_json(src / "xquad" / f"xquad.{lg}.json")
        for ctx in dict.fromkeys(r["context"] for r in rows):
            text[lg] += _sentences(ctx)
        text[lg] += [r["question"] for r in rows]
    ud = ud_files(src)
    for lg in inv["udpos"]:
        for files in ud[lg].values():
            for f in files:
                text[lg] += [_join_tokens(t, lg) for t, _ in read_conllu(f, lang=lg)]
    for lg in inv["tatoeba"]:
        s, t = read_tatoeba(src, tasks.TATOEBA_CODES[lg])
        text[lg] += s
        text["en"] += t
    for lg in inv["xcopa"]:
        for split in ("validation", "test"):
            for r in read_xcopa(src, lg, split):
                text[lg] += [r["premise"], r["choice1"], r["choice2"]]
    for lg in inv["stsb"]:
        for split in ("train", "dev", "test"):
            if (src / "stsb_multi_mt" / f"stsb-{lg}-{split}.csv").exists():
                for r in read_stsb(src, lg, split):
                    text[lg] += [r["sentence1"], r["sentence2"]]
    out = {}
    for lg in sorted(text):
        lines = list(dict.fromkeys(x.strip() for x in text[lg] if x.strip()))
        random.Random(f"{seed}|{lg}").shuffle(lines)
        out[lg] = lines[:max_per_language]
    return out


def _join_tokens(tokens: list[str], lang: str) -> str:
    return ("" if lang in ("zh", "ja", "th") else " ").join(tokens)


# ---------------------------------------------------------------- writing configs into the mirror
def _layouts() -> dict[tuple[str, str, str], str]:
    return {(h, c, s): layout for h, c, s, _k, _lg, layout in tiny._mirror_spec()}


def _write_config(data_root: Path, hub_id: str, config: str, split: str, kind: str, rows: list[dict],
                  layouts: dict) -> str:
    """Overwrite one (config, split) of the mirror with `rows` in the hub schema of `kind`; returns the path."""
    from datasets import Dataset
    layout = layouts.get((hub_id, config, split))
    if layout is None:
        raise ValueError(f"{hub_id} {config} {split} is not part of the mirror (tiny._mirror_spec)")
    feats = tiny._features(kind)
    cols = {k: [r[k] for r in rows] for k in feats}
    ds = Dataset.from_dict(cols, features=feats)
    rel = f"{hub_id}/{config}/{split}/0000.parquet" if layout == "parquet" else \
        f"{hub_id}/{config}/{split}-00000-of-00001.parquet"
    out = data_root / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out))
    return rel


def _qa_rows(rows: list[dict], kind: str) -> list[dict]:
    out = []
    for r in rows:
        row = {"id": r["id"], "title": r["title"], "context": r["context"], "question": r["question"],
               "answers": dict(r["answers"])}
        if kind == "squad":   # rajpurkar/squad key order: (text, answer_start)
            row["answers"] = {"text": r["answers"]["text"], "answer_start": r["answers"]["answer_start"]}
        out.append(row)
    return out


def write_real_data(data_root: str | os.PathLike, text_from: str | os.PathLike, fuse_multiword: bool = True,
                    log=print) -> dict:
    """Overwrite, in a mirror written by `tiny.build_data`, every config the files in `text_from` cover (see the
    module docstring). Returns {"configs": {path: source description}, "real_languages": {task: [langs]}}."""
    data_root, src = Path(data_root), Path(text_from)
    inv = inventory(src)
    layouts = _layouts()
    written: dict[str, str] = {}
    real: dict[str, list[str]] = defaultdict(list)

    def put(hub_id, config, split, kind, rows, what):
        written[_write_config(data_root, hub_id, config, split, kind, rows, layouts)] = f"{what} ({len(rows)} rows)"

    # XQuAD (+ ro via google/xquad), MLQA-style same-language data, SQuAD English training data
    for lg in inv["xquad"]:
        rows = read_squad_json(src / "xquad" / f"xquad.{lg}.json")
        s = tasks.get("xquad").source_for(lg)
        put(s.hub_id, tasks.config_name("xquad", lg), "validation", "XQuAD", _qa_rows(rows, "XQuAD"),
            f"xquad/xquad.{lg}.json")
        real["xquad"].append(lg)
        if lg in inv["mlqa"]:
            val = [r for r in rows if r["article"] < MLQA_VALIDATION_ARTICLES]
            test = [r for r in rows if r["article"] >= MLQA_VALIDATION_ARTICLES]
            put(XTREME, f"MLQA.{lg}.{lg}", "validation", "MLQA", _qa_rows(val, "MLQA"),
                f"xquad/xquad.{lg}.json articles 0-{MLQA_VALIDATION_ARTICLES - 1}")
            put(XTREME, f"MLQA.{lg}.{lg}", "test", "MLQA", _qa_rows(test, "MLQA"),
                f"xquad/xquad.{lg}.json articles {MLQA_VALIDATION_ARTICLES}-")
            real["mlqa"].append(lg)
        if lg == "en":
            val = [r for r in rows if r["article"] < SQUAD_VALIDATION_ARTICLES]
            train = [r for r in rows if r["article"] >= SQUAD_VALIDATION_ARTICLES]
            put("rajpurkar/squad", "plain_text", "train", "squad", _qa_rows(train, "squad"),
                f"xquad/xquad.en.json articles {SQUAD_VALIDATION_ARTICLES}- (stands in for SQuAD train)")
            put("rajpurkar/squad", "plain_text", "validation", "squad", _qa_rows(val, "squad"),
                f"xquad/xquad.en.json articles 0-{SQUAD_VALIDATION_ARTICLES - 1} (stands in for SQuAD dev)")
            real["squad"].append("en")
    # UD-POS
    ud = ud_files(src)
    for lg in inv["udpos"]:
        config = tasks.config_name("udpos", lg)
        s = tasks.get("udpos").source_for(lg)
        kind = "udpos" if s.hub_id == XTREME else "ud27"
        if kind != "udpos":
            log(f"udpos {lg}: the registry reads it from {s.hub_id} (UD v2.7); left synthetic")
            continue

        def rows_of(files):
            return [{"tokens": t, "pos_tags": [tasks.UPOS_LABELS.index(p) for p in tags]}
                    for f in files for t, tags in read_conllu(f, fuse_multiword, lg)]
        if "test" in ud[lg]:
            rows = rows_of(ud[lg]["test"])
            put(XTREME, config, "test", "udpos", rows, ", ".join(str(f.relative_to(src)) for f in ud[lg]["test"]))
            real["udpos"].append(lg)
        if lg == "en" and "dev" in ud[lg]:
            dev = rows_of(ud[lg]["dev"])
            cut = int(len(dev) * UD_TRAIN_SHARE)
            what = ", ".join(str(f.relative_to(src)) for f in ud[lg]["dev"])
            if "train" in ud[lg]:
                put(XTREME, config, "train", "udpos", rows_of(ud[lg]["train"]), "UD train files")
                put(XTREME, config, "validation", "udpos", dev, what)
            else:
                put(XTREME, config, "train", "udpos", dev[:cut], f"{what}: first {cut} sentences")
                put(XTREME, config, "validation", "udpos", dev[cut:], f"{what}: sentences {cut}-")
    # Tatoeba: hub configs (36 languages) and the LASER-layout user files (all 41)
    user_tat = data_root / "user" / "tatoeba"
    user_tat.mkdir(parents=True, exist_ok=True)
    for lg in inv["tatoeba"]:
        c3 = tasks.TATOEBA_CODES[lg]
        srcs, tgts = read_tatoeba(src, c3)
        s = tasks.get("tatoeba").source_for(lg)
        # trailing newline kept, source_lang unusable: as the hub (docs/sources.md, Hub dataset quirks)
        if s is not None and s.hub_id == XTREME:
            put(XTREME, f"tatoeba.{c3}", "validation", "tatoeba",
                [{"source_sentence": a + "\n", "target_sentence": b + "\n", "source_lang": f"tatoeba.{c3}-download",
                  "target_lang": "eng"} for a, b in zip(srcs, tgts)], f"tatoeba/tatoeba.{c3}-eng.*")
        for ext, lines in ((c3, srcs), ("eng", tgts)):
            (user_tat / f"tatoeba.{c3}-eng.{ext}").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        written[f"user/tatoeba/tatoeba.{c3}-eng.*"] = f"tatoeba/tatoeba.{c3}-eng.* ({len(srcs)} lines)"
        real["tatoeba"].append(lg)
    # XCOPA
    for lg in inv["xcopa"]:
        for split in ("validation", "test"):
            rows = [{k: r[k] for k in ("premise", "choice1", "choice2", "question", "label", "idx", "changed")}
                    for r in read_xcopa(src, lg, split)]
            fname = "val" if split == "validation" else "test"
            put("cambridgeltl/xcopa", lg, split, "xcopa", rows, f"xcopa/{lg}/{fname}.{lg}.jsonl")
        real["xcopa"].append(lg)
    # STS-B multi-MT (hub split names: train, dev, test)
    for lg in inv["stsb"]:
        for split in ("train", "dev", "test"):
            if (src / "stsb_multi_mt" / f"stsb-{lg}-{split}.csv").exists():
                put("PhilipMay/stsb_multi_mt", lg, split, "stsb", read_stsb(src, lg, split),
                    f"stsb_multi_mt/stsb-{lg}-{split}.csv")
        real["stsb_multi_mt"].append(lg)
        if lg == "en":
            real["stsb"].append("en")
    log(f"real data: {len(written)} config splits from {src}")
    return {"configs": dict(sorted(written.items())), "real_languages": dict(real)}


def write_mlm_text(data_root: Path, text: dict[str, list[str]]) -> list[str]:
    """user/mlm/<lang>.txt from the pooled real text (languages without real text keep their synthetic file)."""
    folder = Path(data_root) / "user" / "mlm"
    folder.mkdir(parents=True, exist_ok=True)
    for lg, lines in text.items():
        (folder / f"{lg}.txt").write_text("".join(x.replace("\n", " ") + "\n" for x in lines), encoding="utf-8")
    return sorted(text)


# ---------------------------------------------------------------- MLM pretraining and the Tatoeba check
def pretrain(model_dir: str | os.PathLike, texts: list[str], steps: int = DEFAULT_PRETRAIN_STEPS, seed: int = 0,
             batch_size: int = 32, lr: float = DEFAULT_PRETRAIN_LR, max_length: int = 128, threads: int = 1,
             log=print) -> dict:
    """Short multilingual MLM pretraining of the checkpoint in `model_dir` (XLMRobertaForMaskedLM, BERT masking
    via `features.mask_tokens`, AdamW with 6% warmup and linear decay, length-grouped batches); saved back in
    place with save_pretrained, so AutoModel / AutoModelForMaskedLM load the pretrained weights.
    `threads`: torch intra-op threads during the loop (restored after): the tiny model's matrices gain little from
    more, and on shared cores two threads ran 3-20x slower than one here."""
    with _threads(threads):
        return _pretrain(model_dir, texts, steps, seed, batch_size, lr, max_length, log)


class _threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch
        self.before = torch.get_num_threads()
        if self.n > 0:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch
        torch.set_num_threads(self.before)
        return False


def _pretrain(model_dir, texts, steps, seed, batch_size, lr, max_length, log) -> dict:
    import torch
    from transformers import AutoTokenizer, XLMRobertaForMaskedLM

    from .. import features as F
    from ..train import length_grouped
    model_dir = Path(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = XLMRobertaForMaskedLM.from_pretrained(model_dir)
    feats = F.mlm_features(texts, tok, max_length)
    if steps <= 0 or not feats:
        return {"steps": 0, "seconds": 0.0}
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    gen = torch.Generator().manual_seed(seed)
    lengths = [f["length"] for f in feats]
    batches: list[list[int]] = []
    model.train()
    t0, losses = time.time(), []
    for step in range(steps):
        if not batches:
            batches = length_grouped(lengths, batch_size, rng, True)
        b = F.collate([feats[i] for i in batches.pop()], tok.pad_token_id)
        ids, labels = F.mask_tokens(b["input_ids"], tok, gen)
        # The vocabulary projection only where a token is masked (~15%): the same loss as
        # XLMRobertaForMaskedLM(labels=...), at a fraction of the cost of full-vocabulary logits everywhere.
        h = model.roberta(input_ids=ids, attention_mask=b["attention_mask"]).last_hidden_state
        picked = labels != F.IGNORE
        loss = torch.nn.functional.cross_entropy(model.lm_head(h[picked]).float(), labels[picked])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if (step + 1) % max(1, steps // 5) == 0 or step == steps - 1:
            log(f"  mlm {model_dir.name} step {step + 1}/{steps}: loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    k = max(1, min(20, steps // 4))            # mean loss of the first and the last k steps
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "max_length": max_length, "sequences": len(feats),
            "loss_first": round(first, 4), "loss_last": round(last, 4), "seconds": round(time.time() - t0, 1)}


def tatoeba_accuracy(model_dir: str | os.PathLike, data_root: str | os.PathLike, languages: list[str] | None = None,
                     max_examples: int | None = None, layer: int = -1, batch_size: int = 128) -> dict[str, float]:
    """Tatoeba accuracy (%) per language of the encoder in `model_dir`, read from the world's LASER-layout files,
    exactly as `runs.retrieval` scores it (mean-pooled layer `layer`, -1 = the ladder's layer; English queries)."""
    with _threads(1):
        return _tatoeba_accuracy(model_dir, data_root, languages, max_examples, layer, batch_size)


def _tatoeba_accuracy(model_dir, data_root, languages, max_examples, layer, batch_size) -> dict[str, float]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .. import embeddings, retrieval
    tok = AutoTokenizer.from_pretrained(model_dir)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()   # the MLM head in the checkpoint is expected to be unused here
    try:
        enc = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)
    enc.eval()
    n = enc.config.num_hidden_layers
    if layer < 0:   # the model ladder owns the default (ladder.retrieval_layer), as in runs.retrieval
        from .. import ladder
        layer = ladder.retrieval_layer(str(model_dir), n)[0]
    folder = Path(data_root) / "user" / "tatoeba"
    langs = languages or [lg for lg in tasks.all_languages("tatoeba")
                          if (folder / f"tatoeba.{tasks.TATOEBA_CODES[lg]}-eng.eng").exists()]
    pairs = {}
    for lg in langs:
        src, tgt = retrieval.read_tatoeba(folder, lg)
        n = min(len(src), max_examples or len(src))
        pairs[lg] = ([x.strip() for x in src[:n]], [x.strip() for x in tgt[:n]])
    texts = [x for s, t in pairs.values() for x in s + t]     # one embedding pass: fewer, fuller batches
    emb = embeddings.embed(enc, tok, texts, layer, batch_size=batch_size, progress=False)
    out, k = {}, 0
    for lg, (s, t) in pairs.items():
        n = len(s)
        pred = retrieval.tatoeba_search(emb[k:k + n], emb[k + n:k + 2 * n])
        k += 2 * n
        out[lg] = round(100.0 * sum(int(p) == i for i, p in enumerate(pred)) / n, 2)
    return out


# ---------------------------------------------------------------- the whole world
def build(root: str | os.PathLike, text_from: str | os.PathLike, seed: int = 0,
          pretrain_steps: int = DEFAULT_PRETRAIN_STEPS, sizes: dict | None = None,
          vocab_size: int = DEFAULT_VOCAB_SIZE, max_lines_per_language: int = MAX_LINES_PER_LANGUAGE,
          fuse_multiword: bool = True, model_sizes: list[str] | None = None, tatoeba_check: bool = True,
          tatoeba_examples: int = 500, keep_untrained: bool = True, overwrite: bool = True, log=print) -> dict:
    """Build the real-text world under `root` (see the module docstring); returns {"data": path, "<model>": path,
    ..., "world": the world.json record}.

    `pretrain_steps`: MLM steps per model (0: none). `vocab_size`: tokenizer pieces (it must exceed the number of
    distinct characters, ~4500 with the default cap). `tatoeba_check`: score Tatoeba (all real languages, up to
    `tatoeba_examples` pairs each, -1 = all) before and after the pretraining and record both in world.json.
    `keep_untrained`: also keep each model as it was before pretraining, as ``models/<name>-untrained``."""
    root, src = Path(root), Path(text_from)
    if not (src.is_dir() and any((src / d).is_dir() for d in ("xquad", "udpos", "tatoeba", "xcopa",
                                                                "stsb_multi_mt"))):
        raise FileNotFoundError(f"--text-from {src}: expected a folder with xquad/, udpos/, tatoeba/, xcopa/ or "
                                f"stsb_multi_mt/ laid out like ../shared/data (see `xfer_utils/world/realtext.py`)")
    t_start = time.time()
    if overwrite and root.exists():
        for sub in ("data", "models"):
            shutil.rmtree(root / sub, ignore_errors=True)
        (root / "world.json").unlink(missing_ok=True)
    log(f"synthetic mirror -> {root / 'data'}")
    data_root = tiny.build_data(root / "data", seed=seed, sizes=sizes)
    real = write_real_data(data_root, src, fuse_multiword=fuse_multiword, log=log)
    text = corpus(src, max_lines_per_language, seed)
    write_mlm_text(data_root, text)
    pooled = [x for lines in text.values() for x in lines]
    # One line of each language's synthetic filler words, so that configs left synthetic stay tokenizable.
    fillers = [" ".join(tiny.Lang(lg, seed).words) for lg in tiny.world_languages()]
    fillers.append(" ".join(tiny.LABEL_MARKERS + tiny.ANSWER_WORDS + [tiny.RIGHT, tiny.CUE, tiny.SAME]))
    t0 = time.time()
    tokenizer = tiny.train_tokenizer(pooled + fillers, vocab_size=vocab_size)
    tok_secs = time.time() - t0
    log(f"tokenizer (tiny.train_tokenizer, Unigram): {len(tokenizer)} pieces, trained on {len(pooled)} real lines "
        f"in {len(text)} languages ({tok_secs:.0f}s)")
    out: dict = {"data": data_root}
    record = {"seed": seed, "models": [], "data": "data", "text_from": str(src.resolve()),
              "kind": "real-text", "fuse_multiword": fuse_multiword,
              "tokenizer": {"vocab_size": len(tokenizer), "lines": len(pooled), "languages": sorted(text),
                            "max_lines_per_language": max_lines_per_language, "seconds": round(tok_secs, 1)},
              "real_languages": real["real_languages"], "real_configs": real["configs"],
              "synthetic": "every config and split not in real_configs (NLI, PAWS-X, PAN-X, BUCC, TyDiQA, "
                           "COPA/SIQA and the other English intermediate tasks, non-English train splits)",
              "notes": [
                  f"rajpurkar/squad is XQuAD English (train: articles {SQUAD_VALIDATION_ARTICLES}-47, validation: "
                  f"0-{SQUAD_VALIDATION_ARTICLES - 1}); XQuAD/MLQA test text is therefore seen in QA training",
                  f"MLQA.<l>.<l> is XQuAD <l> (validation: articles 0-{MLQA_VALIDATION_ARTICLES - 1}, test: the rest)",
                  f"udpos.English train/validation: EWT dev split {int(UD_TRAIN_SHARE * 100)}/"
                  f"{100 - int(UD_TRAIN_SHARE * 100)} by sentence order; test: EWT test",
                  "multiword tokens fused into their surface form (XTREME's --replace_subtokens_with_fused_forms)"
                  if fuse_multiword else "multiword tokens kept as syntactic words (HF google/xtreme script)",
                  "stsb_multi_mt ja is in the files but is not a hub config: skipped"],
              "pretrain": {}, "tatoeba": {}}
    for name in model_sizes or list(tiny.MODEL_SIZES):
        path = tiny.build_model(root / "models" / name, tokenizer, name, seed=seed)
        out[name] = path
        record["models"].append(name)
        if keep_untrained:
            shutil.copytree(path, root / "models" / f"{name}{UNTRAINED_SUFFIX}", dirs_exist_ok=True)
            out[f"{name}{UNTRAINED_SUFFIX}"] = root / "models" / f"{name}{UNTRAINED_SUFFIX}"
            record["untrained_models"] = record.get("untrained_models", []) + [f"{name}{UNTRAINED_SUFFIX}"]
        cap = tatoeba_examples if tatoeba_examples > 0 else None
        check_tatoeba = tatoeba_check and bool(real["real_languages"].get("tatoeba"))
        if check_tatoeba:
            record["tatoeba"][name] = {"examples_per_language": tatoeba_examples,
                                       "untrained": tatoeba_accuracy(path, data_root, max_examples=cap)}
        log(f"{name}: MLM pretraining, {pretrain_steps} steps")
        record["pretrain"][name] = pretrain(path, pooled, pretrain_steps, seed=seed, log=log)
        if check_tatoeba:
            after = tatoeba_accuracy(path, data_root, max_examples=cap)
            before = record["tatoeba"][name]["untrained"]
            record["tatoeba"][name].update(pretrained=after, mean_untrained=_mean(before), mean_pretrained=_mean(after))
            log(f"{name}: Tatoeba mean accuracy {_mean(before):.2f} untrained -> {_mean(after):.2f} after "
                f"{pretrain_steps} MLM steps")
    record["seconds"] = round(time.time() - t_start, 1)
    (root / "world.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    out["world"] = record
    return out


def _mean(d: dict[str, float]) -> float:
    return round(sum(d.values()) / len(d), 2) if d else float("nan")


def ensure(root: str | os.PathLike, text_from: str | os.PathLike | None = None, **kw) -> dict:
    """Build the real-text world once; later calls reuse it (world.json marks a finished build)."""
    root = Path(root)
    wj = root / "world.json"
    if wj.exists():
        rec = json.loads(wj.read_text(encoding="utf-8"))
        if rec.get("kind") == "real-text":
            names = rec["models"] + rec.get("untrained_models", [])
            return {"data": root / "data", **{n: root / "models" / n for n in names}, "world": rec}
    src = text_from or default_source()
    if src is None:
        raise FileNotFoundError("no real data: pass text_from, set XFER_SHARED_DATA, or put it at ../shared/data")
    return build(root, src, **kw)


def cli_build(root: str | os.PathLike, text_from: str | os.PathLike, seed: int = 0,
              pretrain_steps: int | None = None) -> int:
    """What `xfer tiny DIR --text-from PATH [--pretrain-steps N]` runs: build, then print the paths and the
    Tatoeba accuracy before/after the MLM pretraining. Returns the exit code."""
    t0 = time.time()
    steps = DEFAULT_PRETRAIN_STEPS if pretrain_steps is None else pretrain_steps
    paths = build(root, text_from, seed=seed, pretrain_steps=steps)
    rec = paths.pop("world")
    for k, v in paths.items():
        print(f"{k:24} {v}")
    for name, t in rec.get("tatoeba", {}).items():
        if "mean_pretrained" in t:
            print(f"Tatoeba mean accuracy over {len(t['pretrained'])} languages, {name}: untrained "
                  f"{t['mean_untrained']:.2f} -> after {rec['pretrain'][name]['steps']} MLM steps "
                  f"{t['mean_pretrained']:.2f}")
    print(f"real configs: {len(rec['real_configs'])}; see {Path(root) / 'world.json'}")
    print(f"built the real-text world in {time.time() - t0:.0f}s")
    return 0
