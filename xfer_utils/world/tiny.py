"""The offline world: a tiny XLM-R-shaped model and a local mirror of every dataset config the study uses.

`xfer tiny DIR` writes
  DIR/models/tiny-xlmr-s, DIR/models/tiny-xlmr-m   checkpoints loadable with AutoTokenizer/AutoModel like hub ones
  DIR/data/<hub_id>/...                            every config in its exact hub schema (columns, dtypes, ClassLabel
                                                   names, split names), laid out like the hub repo (README.md with
                                                   `configs:` for parquet repos; <config>/<split>/*.parquet for repos
                                                   read from refs/convert/parquet), so data.load takes the same path
  DIR/data/user/<task>/...                         data that is not on the hub, in the layouts users bring:
                                                   ccg/{train,dev,test}.tsv (XFER_CCG_PATH), bucc2018/ (the
                                                   original BUCC 2018 files, XFER_BUCC_PATH), tatoeba/ (LASER
                                                   files, XFER_TATOEBA_PATH), mlm/<lang>.txt; a run on this mirror
                                                   reads them without those variables (data.user_path)

The fixture text carries a learnable signal that is the same in every language: each label has a marker word
(Latin, shared across languages) hidden among filler words that are language-specific (drawn from the language's
own script). A model trained on English learns the markers and so transfers zero-shot to every other language.
Everything is deterministic from `seed`.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from .. import tasks

MODEL_SIZES = {  # name -> XLMRobertaConfig overrides; two sizes so the model-size study runs offline
    "tiny-xlmr-s": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "tiny-xlmr-m": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128),
}
DEFAULT_MODEL = "tiny-xlmr-s"
SIZES = {"train": 320, "validation": 48, "test": 48}     # English; other languages get NON_EN_TRAIN train rows
NON_EN_TRAIN = 24
LABEL_MARKERS = ["alpha", "bravo", "charlie", "delta", "echo"]   # label k <-> marker k, in every language
RIGHT, CUE, SAME = "right", "quiz", "same"                          # MC answer, QA cue, STS similarity
ANSWER_WORDS = ["kilo", "lima", "mike", "oscar", "papa"]
POS_PREFIX = ["ja", "pa", "va", "xa", "ca", "da", "ia", "na", "ma", "ta", "ra", "pra", "pu", "sa", "sy", "ve", "xo"]
# Entities are shared names (as names often are across languages), so NER transfers zero-shot like in PAN-X.
# A span is a first word (B-) and an optional second word (I-) of its own kind: 'anna garcia', 'acme corp'.
ENTITIES = {"PER": (["anna", "boris", "chen", "dara", "emil", "fatima"], ["garcia", "ivanova", "smith"]),
            "ORG": (["acme", "globex", "initech", "umbra"], ["corp", "group", "holdings"]),
            "LOC": (["paris", "lagos", "osaka", "quito", "oslo"], ["city", "bay", "hills"])}
WIKIPEDIA_DUMP = "20231101"      # the wikimedia/wikipedia dump data.mlm_text reads
BUCC_SIZES = {"sample": 24, "training": 40}   # gold pairs per BUCC part; as many distractors again on each side
CCG_TAGS = ["N", "NP", "S[dcl]\\NP", "(S[dcl]\\NP)/NP", "N/N", "PP/NP", "."]
# Unicode blocks for filler words: scripts matter for tokenization, so the tiny world has them too.
SCRIPTS = {
    "cyrillic": (0x0430, 0x044F, "ru bg uk kk"), "greek": (0x03B1, 0x03C9, "el"), "arabic": (0x0628, 0x064A, "ar fa ur"),
    "hebrew": (0x05D0, 0x05EA, "he"), "devanagari": (0x0915, 0x0939, "hi mr"), "bengali": (0x0995, 0x09B9, "bn"),
    "tamil": (0x0B95, 0x0BB9, "ta"), "telugu": (0x0C15, 0x0C39, "te"), "malayalam": (0x0D15, 0x0D39, "ml"),
    "thai": (0x0E01, 0x0E2E, "th"), "georgian": (0x10D0, 0x10F0, "ka"), "hangul": (0xAC00, 0xAC60, "ko"),
    "cjk": (0x4E00, 0x4E80, "zh ja"), "myanmar": (0x1000, 0x1020, "my"), "gujarati": (0x0A95, 0x0AB9, "gu"),
    "gurmukhi": (0x0A15, 0x0A38, "pa"),
}


def _entity_words() -> list[str]:
    return [w for first, second in ENTITIES.values() for w in first + second]


def world_languages() -> list[str]:
    out = ["en"]
    for name in tasks.REGISTRY:
        out += [lg for lg in tasks.all_languages(name) if lg not in out and "-" not in lg]   # not "en-de" pairs
    return out


class Lang:
    """Filler vocabulary of one language: 60 words from the language's script (or its own Latin letters)."""

    def __init__(self, code: str, seed: int):
        rng = random.Random(f"{seed}-{code}")
        block = next((b for b in SCRIPTS.values() if code in b[2].split()), None)
        if block:
            chars = [chr(c) for c in range(block[0], block[1] + 1)]
        else:  # Latin: each language its own consonant subset, so fillers differ across languages
            chars = rng.sample("bcdfghklmnprstvwz", 8) + list("aeiou")
        self.code = code
        self.words = sorted({"".join(rng.choice(chars) for _ in range(rng.randint(3, 6))) for _ in range(80)})[:60]
        # Markers and fillers must never collide.
        reserved = set(LABEL_MARKERS + ANSWER_WORDS + [RIGHT, CUE, SAME]) | set(_entity_words())
        self.words = [w for w in self.words if w not in reserved]

    def fill(self, rng: random.Random, n: int) -> list[str]:
        return [rng.choice(self.words) for _ in range(n)]


def _insert(rng: random.Random, words: list[str], item: str) -> list[str]:
    i = rng.randint(0, len(words))
    return words[:i] + [item] + words[i:]


def _sentence(rng, lang, marker=None, n=(4, 10)) -> str:
    words = lang.fill(rng, rng.randint(*n))
    return " ".join(_insert(rng, words, marker) if marker else words)


# ---------------------------------------------------------------- generators: one row in the hub schema each
def _pair(rng, lang, n_labels):
    k = rng.randrange(n_labels)
    return _sentence(rng, lang), _sentence(rng, lang, LABEL_MARKERS[k]), k


def _qa(rng, lang, i, answerable=True):
    # The answer is a shared 'entity' (a Latin name + digit, like names and numbers in real QA) after the cue word.
    answer = f"{rng.choice(ANSWER_WORDS)}{rng.randrange(10)}"
    before, after = _sentence(rng, lang, n=(6, 20)), _sentence(rng, lang, n=(6, 20))
    if answerable:
        context = f"{before} {CUE} {answer} {after}"
        start = len(before) + len(CUE) + 2
        assert context[start:start + len(answer)] == answer
        answers = {"answer_start": [start], "text": [answer]}
    else:
        context, answers = f"{before} {after}", {"answer_start": [], "text": []}
    return {"id": f"{lang.code}-{i:06d}", "context": context, "question": f"{CUE} {_sentence(rng, lang, n=(2, 5))} ?",
            "answers": answers}


def _mc(rng, lang, n):
    k = rng.randrange(n)
    return [_sentence(rng, lang, RIGHT if j == k else None, n=(3, 6)) for j in range(n)], k


def _tagged(rng, lang, kind):
    tokens, tags = [], []
    if kind == "pos":
        for _ in range(rng.randint(4, 12)):
            t = rng.randrange(len(tasks.UPOS_LABELS))
            tokens.append(POS_PREFIX[t] + rng.choice(lang.words))
            tags.append(t)
    else:  # NER: entity names of a type; B- on the first word of a span, I- on the rest
        while len(tokens) < rng.randint(5, 12):
            if rng.random() < 0.3:
                ent = rng.choice(list(ENTITIES))
                for j in range(rng.randint(1, 2)):
                    tokens.append(rng.choice(ENTITIES[ent][min(j, 1)]))
                    tags.append(tasks.NER_LABELS.index(("B-" if j == 0 else "I-") + ent))
            else:
                tokens.append(rng.choice(lang.words))
                tags.append(0)
    return tokens, tags


def _bitext(rng, lang, en, i):
    """A translation pair: shared 'content' words (names, numbers) make it retrievable, as in real bitext."""
    content = [f"n{rng.randrange(10**6):06d}", rng.choice(LABEL_MARKERS) + str(i % 97)]
    src = " ".join(_insert(rng, lang.fill(rng, rng.randint(3, 7)), " ".join(content)))
    tgt = " ".join(_insert(rng, en.fill(rng, rng.randint(3, 7)), " ".join(content)))
    return src, tgt


# ---------------------------------------------------------------- schemas (docs/sources.md, Hub schemas)
def _features(kind: str):
    from datasets import ClassLabel, Features, List, Value
    s, i32 = Value("string"), Value("int32")
    qa = {"answers": {"answer_start": List(i32), "text": List(s)}}
    nli = ClassLabel(names=tasks.NLI_LABELS)
    return Features({
        "glue_mnli": {"premise": s, "hypothesis": s, "label": nli, "idx": i32},
        "glue_qqp": {"question1": s, "question2": s, "label": ClassLabel(names=["not_duplicate", "duplicate"]),
                     "idx": i32},
        "glue_sst2": {"sentence": s, "label": ClassLabel(names=["negative", "positive"]), "idx": i32},
        "snli": {"premise": s, "hypothesis": s, "label": nli},
        "xnli_mt": {"premise": s, "hypothesis": s, "label": nli},
        "anli": {"uid": s, "premise": s, "hypothesis": s, "label": nli, "reason": s},
        "squad_v2": {"id": s, "title": s, "context": s, "question": s,
                     "answers": {"text": List(s), "answer_start": List(i32)}},
        "squad": {"id": s, "title": s, "context": s, "question": s,
                  "answers": {"text": List(s), "answer_start": List(i32)}},
        "hellaswag": {"ind": i32, "activity_label": s, "ctx_a": s, "ctx_b": s, "ctx": s, "endings": List(s),
                      "source_id": s, "split": s, "split_type": s, "label": s},
        "cosmos_qa": {"id": s, "context": s, "question": s, "answer0": s, "answer1": s, "answer2": s, "answer3": s,
                      "label": i32},
        "commonsense_qa": {"id": s, "question": s, "question_concept": s,
                           "choices": {"label": List(s), "text": List(s)}, "answerKey": s},
        "social_i_qa": {"context": s, "question": s, "answerA": s, "answerB": s, "answerC": s, "label": s},
        "copa": {"premise": s, "choice1": s, "choice2": s, "question": s, "idx": i32,
                 "label": ClassLabel(names=["choice1", "choice2"])},
        "xcopa": {"premise": s, "choice1": s, "choice2": s, "question": s, "label": i32, "idx": i32,
                  "changed": Value("bool")},
        "stsb": {"sentence1": s, "sentence2": s, "similarity_score": Value("float32")},
        "XNLI": {"language": s, "sentence1": s, "sentence2": s, "gold_label": s},
        "PAWS-X": {"sentence1": s, "sentence2": s, "label": s},
        "udpos": {"tokens": List(s), "pos_tags": List(ClassLabel(names=tasks.UPOS_LABELS))},
        "ud27": {"idx": s, "text": s, "tokens": List(s), "lemmas": List(s),
                 "upos": List(ClassLabel(names=UD27_UPOS)), "xpos": List(s), "feats": List(s), "head": List(s),
                 "deprel": List(s), "deps": List(s), "misc": List(s)},
        "PAN-X": {"tokens": List(s), "ner_tags": List(ClassLabel(names=tasks.NER_LABELS)), "langs": List(s)},
        "wikiann": {"tokens": List(s), "ner_tags": List(ClassLabel(names=tasks.NER_LABELS)), "langs": List(s),
                    "spans": List(s)},
        "XQuAD": {"id": s, "context": s, "question": s, **qa},
        "MLQA": {"id": s, "title": s, "context": s, "question": s, **qa},
        "bucc18": {"source_sentence": s, "target_sentence": s, "source_lang": s, "target_lang": s},
        "tatoeba": {"source_sentence": s, "target_sentence": s, "source_lang": s, "target_lang": s},
        "wikipedia": {"id": s, "url": s, "title": s, "text": s},
    }[kind])


# The hub `universal_dependencies` upos ClassLabel order differs from XTREME's (data.py maps labels by name).
UD27_UPOS = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN", "PRON", "X", "_",
             "ADV", "INTJ", "VERB", "AUX"]


def ud27_multiword(row: dict, j: int) -> dict:
    """`row` (hub universal_dependencies schema) with words j and j+1 made the parts of a multiword token: a range
    row (CoNLL-U `3-4 im`) is inserted before them the way the hub's loading script writes one (the fused form,
    UPOS `_`, lemma `_`, xpos None, the other columns str(None) = "None"), and the text shows the fused form."""
    fused = row["tokens"][j] + row["tokens"][j + 1]
    out = {k: list(v) if isinstance(v, list) else v for k, v in row.items()}
    for col, val in (("tokens", fused), ("lemmas", "_"), ("upos", UD27_UPOS.index("_")), ("xpos", None),
                     ("feats", "None"), ("head", "None"), ("deprel", "None"), ("deps", "None"), ("misc", "None")):
        out[col].insert(j, val)
    out["text"] = " ".join(row["tokens"][:j] + [fused] + row["tokens"][j + 2:])
    return out


def _rows(kind: str, lang: Lang, en: Lang, n: int, rng: random.Random, split: str) -> dict[str, list]:
    """`n` rows of `kind` in `lang`, as a dict of columns."""
    cols: dict[str, list] = {}

    def add(**kv):
        for k, v in kv.items():
            cols.setdefault(k, []).append(v)

    for i in range(n):
        if kind == "xnli_mt":
            a, b, k = _pair(rng, lang, 3)
            add(premise=a, hypothesis=b, label=k)
        elif kind in ("glue_mnli", "snli", "anli"):
            a, b, k = _pair(rng, lang, 3)
            extra = {"idx": i} if kind == "glue_mnli" else {"uid": f"u{i}", "reason": ""} if kind == "anli" else {}
            # SNLI marks no-consensus pairs with -1 (docs/sources.md, Label encodings)
            if kind == "snli" and i % 10 == 9:
                k = -1
            add(premise=a, hypothesis=b, label=k, **extra)
        elif kind == "glue_qqp":
            a, b, k = _pair(rng, lang, 2)
            add(question1=a, question2=b, label=k, idx=i)
        elif kind == "glue_sst2":
            k = rng.randrange(2)
            add(sentence=_sentence(rng, lang, LABEL_MARKERS[k]), label=k, idx=i)
        elif kind in ("XNLI",):
            a, b, k = _pair(rng, lang, 3)
            add(language=lang.code, sentence1=a, sentence2=b, gold_label=tasks.NLI_LABELS[k])
        elif kind == "PAWS-X":
            a, b, k = _pair(rng, lang, 2)
            add(sentence1=a, sentence2=b, label=str(k))
        elif kind == "stsb":
            # Row-aligned across languages, as the real translations are: row i has the same score and the same
            # shared content words (numbers, like names in real text) in every language; fillers are the
            # language's own. The score is the number of SAME markers in sentence2 (the learnable signal) and of
            # content words the two sentences share (what an untrained encoder's cosine can see).
            shared = random.Random(f"stsb|{split}|{i}")
            score = shared.randrange(6)
            content = [f"n{shared.randrange(10**4):04d}" for _ in range(5)]
            s1 = lang.fill(rng, rng.randint(2, 5))
            for w in content:
                s1 = _insert(rng, s1, w)
            words = lang.fill(rng, rng.randint(4, 8))
            for w in content[:score]:
                words = _insert(rng, words, w)
            for _ in range(score):
                words = _insert(rng, words, SAME)
            add(sentence1=" ".join(s1), sentence2=" ".join(words), similarity_score=float(score))
        elif kind in ("squad", "squad_v2", "XQuAD", "MLQA"):
            row = _qa(rng, lang, i, answerable=not (kind == "squad_v2" and i % 5 == 4))
            if kind != "XQuAD":
                row["title"] = f"title{i % 7}"
            if kind.startswith("squad"):  # squad key order is (text, answer_start)
                row["answers"] = {"text": row["answers"]["text"], "answer_start": row["answers"]["answer_start"]}
            add(**row)
        elif kind == "hellaswag":
            ends, k = _mc(rng, lang, 4)
            a, b = _sentence(rng, lang), lang.fill(rng, 1)[0]
            add(ind=i, activity_label="activity", ctx_a=a, ctx_b=b, ctx=f"{a} {b}", endings=ends,
                source_id=f"src~{i}", split={"validation": "val"}.get(split, split), split_type="indomain",
                label="" if split == "test" else str(k))
        elif kind == "cosmos_qa":
            ends, k = _mc(rng, lang, 4)
            add(id=f"c{i}", context=_sentence(rng, lang), question=_sentence(rng, lang, n=(2, 4)),
                **{f"answer{j}": e for j, e in enumerate(ends)}, label=-1 if split == "test" else k)
        elif kind == "commonsense_qa":
            ends, k = _mc(rng, lang, 5)
            add(id=f"q{i}", question=_sentence(rng, lang), question_concept=lang.fill(rng, 1)[0],
                choices={"label": list("ABCDE"), "text": ends}, answerKey="" if split == "test" else "ABCDE"[k])
        elif kind == "social_i_qa":
            ends, k = _mc(rng, lang, 3)
            add(context=_sentence(rng, lang), question=_sentence(rng, lang, n=(2, 4)), answerA=ends[0],
                answerB=ends[1], answerC=ends[2], label=str(k + 1))
        elif kind in ("copa", "xcopa"):
            ends, k = _mc(rng, lang, 2)
            row = dict(premise=_sentence(rng, lang), choice1=ends[0], choice2=ends[1],
                       question=rng.choice(["cause", "effect"]), idx=i)
            if kind == "copa":
                add(**row, label=-1 if split == "test" else k)
            else:
                add(**row, label=k, changed=False)
        elif kind in ("udpos", "ud27"):
            toks, tags = _tagged(rng, lang, "pos")
            if kind == "udpos":
                add(tokens=toks, pos_tags=tags)
            else:
                m = len(toks)
                row = dict(idx=f"s{i}", text=" ".join(toks), tokens=toks, lemmas=toks,
                           upos=[UD27_UPOS.index(tasks.UPOS_LABELS[t]) for t in tags], xpos=["_"] * m,
                           feats=["None"] * m, head=["0"] + ["1"] * (m - 1), deprel=["root"] + ["dep"] * (m - 1),
                           deps=["None"] * m, misc=["None"] * m)
                if i % 3 == 0 and m >= 3:   # a multiword token, as the hub rows keep it (see ud27_multiword)
                    row = ud27_multiword(row, rng.randrange(m - 1))
                add(**row)
        elif kind in ("PAN-X", "wikiann"):
            toks, tags = _tagged(rng, lang, "ner")
            row = dict(tokens=toks, ner_tags=tags, langs=[lang.code] * len(toks))
            if kind == "wikiann":
                row.pop("langs")
                row = dict(row, langs=[lang.code] * len(toks), spans=[])
            add(**row)
        elif kind == "bucc18":
            src, tgt = _bitext(rng, lang, en, i)
            add(source_sentence=src, target_sentence=tgt, source_lang=f"{lang.code}-{i:09d}",
                target_lang=f"en-{n + i:09d}")
        elif kind == "tatoeba":
            # trailing newline kept, source_lang unusable, as on the hub (docs/sources.md, Hub dataset quirks)
            src, tgt = _bitext(rng, lang, en, i)
            add(source_sentence=src + "\n", target_sentence=tgt + "\n", source_lang=f"tatoeba.{lang.code}-download",
                target_lang="eng")
        elif kind == "wikipedia":   # wikimedia/wikipedia: one article per row, paragraphs separated by "\n"
            add(id=str(i + 1), url=f"https://{lang.code}.wikipedia.org/wiki?curid={i + 1}", title=f"title{i}",
                text="\n".join(_sentence(rng, lang) for _ in range(rng.randint(3, 6))))
        else:
            raise ValueError(f"no fixture generator for {kind!r}")
    return cols


# ---------------------------------------------------------------- the mirror: which (repo, config, split) exist
def _mirror_spec() -> list[tuple[str, str, str, str, str, str]]:
    """(hub_id, config, split, kind, language, layout) for every config the registry can ask for."""
    spec = []

    def add(hub_id, config, split_names, kind, lang, layout="main"):
        for s in split_names:
            spec.append((hub_id, config, s, kind, lang, layout))

    add("nyu-mll/glue", "mnli", ["train", "validation_matched", "validation_mismatched"], "glue_mnli", "en")
    add("nyu-mll/glue", "qqp", ["train", "validation"], "glue_qqp", "en")
    add("nyu-mll/glue", "sst2", ["train", "validation"], "glue_sst2", "en")
    for lg in tasks.all_languages("mnli_mt"):
        add("facebook/xnli", lg, ["train", "validation", "test"], "xnli_mt", lg)
    add("stanfordnlp/snli", "plain_text", ["train", "validation", "test"], "snli", "en")
    add("facebook/anli", "plain_text", [f"{s}_r{r}" for r in (1, 2, 3) for s in ("train", "dev", "test")], "anli", "en")
    add("rajpurkar/squad", "plain_text", ["train", "validation"], "squad", "en")
    add("rajpurkar/squad_v2", "squad_v2", ["train", "validation"], "squad_v2", "en")
    add("Rowan/hellaswag", "default", ["train", "validation", "test"], "hellaswag", "en", "parquet")
    add("allenai/cosmos_qa", "default", ["train", "validation", "test"], "cosmos_qa", "en", "parquet")
    add("tau/commonsense_qa", "default", ["train", "validation", "test"], "commonsense_qa", "en")
    add("allenai/social_i_qa", "default", ["train", "validation"], "social_i_qa", "en", "parquet")
    add("aps/super_glue", "copa", ["train", "validation", "test"], "copa", "en", "parquet")
    for lg in tasks.all_languages("stsb_multi_mt"):
        add("PhilipMay/stsb_multi_mt", lg, ["train", "test", "dev"], "stsb", lg)
    for lg in tasks.all_languages("xcopa"):
        add("cambridgeltl/xcopa", lg, ["validation", "test"], "xcopa", lg)
    xt = "google/xtreme"
    for lg in tasks.all_languages("xnli"):
        add(xt, "XNLI", ["validation", "test"], "XNLI", lg)
    for lg in tasks.all_languages("pawsx"):
        add(xt, f"PAWS-X.{lg}", ["train", "validation", "test"], "PAWS-X", lg)
    for task, kind, alt_kind in (("udpos", "udpos", "ud27"), ("panx", "PAN-X", "wikiann")):
        for lg in tasks.all_languages(task):
            src = tasks.get(task).source_for(lg)
            only = src.splits_by_lang.get(lg, tasks.SPLITS)
            for config, have in src.treebanks or ((tasks.config_name(task, lg), only),):   # UD v2.7: every treebank
                add(src.hub_id, config, [src.splits[s] for s in only if s in have],
                    kind if src.hub_id == xt else alt_kind, lg, "parquet" if src.revision else "main")
    for lg in tasks.all_languages("xquad"):
        src = tasks.get("xquad").source_for(lg)
        add(src.hub_id, tasks.config_name("xquad", lg), ["validation"], "XQuAD", lg,
            "parquet" if src.revision else "main")
    for lg in tasks.all_languages("mlqa"):
        add(xt, f"MLQA.{lg}.{lg}", ["validation", "test"], "MLQA", lg)
    for lg in tasks.all_languages("tydiqa"):
        add(xt, "tydiqa", ["train", "validation"], "MLQA", lg)
    for lg in tasks.all_languages("bucc2018"):
        add(xt, f"bucc18.{lg}", ["validation", "test"], "bucc18", lg)
    for lg in tasks.languages("tatoeba", "xtreme"):
        add(xt, f"tatoeba.{tasks.TATOEBA_CODES[lg]}", ["validation"], "tatoeba", lg)
    for lg in tasks.languages("xnli"):   # `mlm_text: wikipedia` in the MLM default languages (data.mlm_text)
        add("wikimedia/wikipedia", f"{WIKIPEDIA_DUMP}.{lg}", ["train"], "wikipedia", lg)
    return spec


def build_data(root: str | Path, seed: int = 0, sizes: dict | None = None) -> Path:
    """Write the whole mirror under `root` (a `data` folder). Returns root."""
    import datasets
    from datasets import Dataset, concatenate_datasets

    datasets.disable_progress_bars()

    root = Path(root)
    sizes = {**SIZES, **(sizes or {})}
    langs = {lg: Lang(lg, seed) for lg in world_languages()}
    en = langs["en"]
    groups: dict[tuple, list] = {}
    for hub_id, config, split, kind, lg, layout in _mirror_spec():
        groups.setdefault((hub_id, config, split, kind, layout), []).append(lg)
    readmes: dict[str, dict[str, dict[str, str]]] = {}
    for (hub_id, config, split, kind, layout), lgs in groups.items():
        norm = "train" if split.startswith("train") else "test" if split.startswith("test") else "validation"
        parts = []
        for lg in lgs:   # several languages in one config: XNLI, tydiqa
            full = lg == "en" or kind == "xnli_mt"   # translated training data is a full-size training set
            n = sizes[norm] if full else (NON_EN_TRAIN if norm == "train" else sizes[norm])
            rng = random.Random(f"{seed}|{hub_id}|{config}|{split}|{lg}")
            cols = _rows(kind, langs[lg], en, n, rng, norm)
            if hub_id == "google/xtreme" and config == "tydiqa":
                cols["id"] = [f"{tasks.TYDIQA_PREFIX[lg]}-{i}" for i in range(n)]
            feats = _features(kind)
            parts.append(Dataset.from_dict({k: cols[k] for k in feats}, features=feats))  # the hub's column order
        ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        repo = root / hub_id
        if layout == "parquet":   # refs/convert/parquet layout: <config>/<split>/0000.parquet
            out = repo / config / split / "0000.parquet"
        else:                     # parquet on main: <config>/<split>-00000-of-00001.parquet + README configs
            out = repo / config / f"{split}-00000-of-00001.parquet"
            readmes.setdefault(hub_id, {}).setdefault(config, {})[split] = f"{config}/{split}-*.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(out))
    for hub_id, configs in readmes.items():
        lines = ["---", "configs:"]
        for config, split_paths in configs.items():
            lines += [f"- config_name: {config}", "  data_files:"]
            lines += [f"  - split: {s}\n    path: {p}" for s, p in split_paths.items()]
        (root / hub_id / "README.md").write_text("\n".join(lines + ["---", f"Offline mirror of {hub_id} (xfer tiny)."])
                                                 + "\n", encoding="utf-8")
    _write_user_data(root / "user", langs, seed, sizes)
    return root


def _write_user_data(root: Path, langs: dict, seed: int, sizes: dict) -> None:
    """Data that is not on the hub, in the layouts users bring: CCG (.tsv), LASER Tatoeba, MLM text."""
    rng = random.Random(f"{seed}|user")
    en = langs["en"]
    ccg = root / "ccg"
    ccg.mkdir(parents=True, exist_ok=True)
    for split, norm in (("train", "train"), ("dev", "validation"), ("test", "test")):
        lines = []
        for _ in range(sizes[norm]):
            for _ in range(rng.randint(4, 10)):
                t = rng.randrange(len(CCG_TAGS))
                lines.append(f"{POS_PREFIX[t]}{rng.choice(en.words)}\t{CCG_TAGS[t]}")
            lines.append("")
        (ccg / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tat = root / "tatoeba"
    tat.mkdir(parents=True, exist_ok=True)
    for lg in tasks.all_languages("tatoeba"):
        c3 = tasks.TATOEBA_CODES[lg]
        pairs = [_bitext(rng, langs[lg], en, i) for i in range(sizes["test"])]
        (tat / f"tatoeba.{c3}-eng.{c3}").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (tat / f"tatoeba.{c3}-eng.eng").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    _write_bucc(root / "bucc2018", langs, seed)
    mlm = root / "mlm"
    mlm.mkdir(parents=True, exist_ok=True)
    for lg in world_languages():
        (mlm / f"{lg}.txt").write_text("".join(_sentence(rng, langs[lg]) + "\n" for _ in range(64)), encoding="utf-8")


def _write_bucc(root: Path, langs: dict, seed: int) -> None:
    """BUCC 2018 corpora in the original layout (<lang>-en.{sample,training}.{<lang>,en,gold}: 'id<TAB>sentence',
    gold 'src_id<TAB>tgt_id'): translation pairs (shared content words: the learnable signal) mixed, in shuffled
    order, with as many non-parallel distractor sentences on each side, as the real comparable corpora are."""
    root.mkdir(parents=True, exist_ok=True)
    en = langs["en"]
    for lg in tasks.all_languages("bucc2018"):
        for part, n in BUCC_SIZES.items():
            rng = random.Random(f"{seed}|bucc|{lg}|{part}")
            pairs = [_bitext(rng, langs[lg], en, i) for i in range(n)]
            src = [(s, k) for k, (s, _) in enumerate(pairs)] + [(_bitext(rng, langs[lg], en, n + i)[0], None)
                                                                 for i in range(n)]
            tgt = [(t, k) for k, (_, t) in enumerate(pairs)] + [(_bitext(rng, langs[lg], en, 2 * n + i)[1], None)
                                                                 for i in range(n)]
            rng.shuffle(src)
            rng.shuffle(tgt)
            src_ids = {k: f"{lg}-{i + 1:09d}" for i, (_, k) in enumerate(src) if k is not None}
            tgt_ids = {k: f"en-{i + 1:09d}" for i, (_, k) in enumerate(tgt) if k is not None}
            stem = root / f"{lg}-en.{part}"
            Path(f"{stem}.{lg}").write_text("".join(f"{lg}-{i + 1:09d}\t{s}\n" for i, (s, _) in enumerate(src)),
                                            encoding="utf-8")
            Path(f"{stem}.en").write_text("".join(f"en-{i + 1:09d}\t{t}\n" for i, (t, _) in enumerate(tgt)),
                                          encoding="utf-8")
            Path(f"{stem}.gold").write_text("".join(f"{src_ids[k]}\t{tgt_ids[k]}\n" for k in range(n)),
                                            encoding="utf-8")


# ---------------------------------------------------------------- the tiny model
def train_tokenizer(texts, vocab_size: int = 3000):
    """A sentencepiece Unigram model trained on `texts` (XLM-R's own tokenizer kind), returned as a transformers
    XLMRobertaTokenizer with XLM-R's id layout: <s>=0 <pad>=1 </s>=2 <unk>=3, the pieces, then <mask> last.
    (The `tokenizers` Unigram trainer keeps '▁' apart from almost every word; sentencepiece learns '▁word' pieces
    as XLM-R's vocabulary has them.)"""
    import io

    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer

    import string
    proto = io.BytesIO()
    # Every printable ASCII character is in the vocabulary, so prompts like COPA's questions never become <unk>.
    texts = [t for t in texts if t.strip()] + [" ".join(string.ascii_letters + string.digits + string.punctuation)] * 5
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, normalization_rule_name="identity", bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
        input_sentence_size=200000, shuffle_input_sentence=True, seed_sentencepiece_size=200000, minloglevel=2,
        user_defined_symbols=[], hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size()) if i != sp.unk_id()]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces + [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=vocab)


def _corpus(data_root: Path) -> list[str]:
    """Every string in the mirror (plus the MLM text): the tokenizer's training text."""
    import pyarrow.parquet as pq
    texts: list[str] = []
    for p in sorted(data_root.rglob("*.parquet")):
        for col in pq.read_table(p).to_pylist():
            for v in col.values():
                if isinstance(v, str):
                    texts.append(v)
                elif isinstance(v, list) and v and isinstance(v[0], str):
                    texts.append(" ".join(x for x in v if x is not None))   # UD v2.7 xpos holds None
                elif isinstance(v, dict):
                    texts += [" ".join(x) for x in v.values() if isinstance(x, list) and x and isinstance(x[0], str)]
    texts += [p.read_text(encoding="utf-8") for p in sorted((data_root / "user").rglob("*.txt"))]
    # Shared words (names, markers) are frequent across languages, as names are in real corpora, so they get
    # whole '▁word' pieces; otherwise Unigram splits them behind a lone '▁' that carries no signal.
    shared = LABEL_MARKERS + ANSWER_WORDS + [RIGHT, CUE, SAME] + _entity_words()
    texts += [" ".join(shared)] * 200
    return texts


def build_model(out: str | Path, tokenizer, size: str = DEFAULT_MODEL, seed: int = 0, shape: dict | None = None) \
        -> Path:
    """A randomly initialised XLMRobertaForMaskedLM of `size` (or of an explicit `shape`, e.g. XLM-R base's for
    `make realshape`) on `tokenizer`'s vocabulary, saved with the tokenizer like a hub checkpoint."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    if shape is None and size not in MODEL_SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; valid sizes: {', '.join(MODEL_SIZES)}")
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **(shape or MODEL_SIZES[size]))
    from transformers.utils import logging as hf_logging
    model = XLMRobertaForMaskedLM(cfg)   # saved with its MLM head, like the hub checkpoints
    out = Path(out)
    hf_logging.disable_progress_bar()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_tokenizer(path: str | Path):
    """A given tokenizer for the tiny models (`xfer tiny DIR --tokenizer PATH`), e.g. XLM-R's genuine one. It must
    keep XLM-R's special tokens (<s> <pad> </s> <unk> <mask>), which the features and the MLM masking rely on."""
    from transformers import AutoTokenizer
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"--tokenizer {path}: not a folder; give one that AutoTokenizer.from_pretrained "
                                f"loads (tokenizer.json + tokenizer_config.json), e.g. ../shared/data/xlmr_tokenizer")
    tok = AutoTokenizer.from_pretrained(p)
    missing = [k for k in ("bos_token", "pad_token", "eos_token", "unk_token", "mask_token")
               if getattr(tok, k, None) is None]
    if missing:
        raise ValueError(f"--tokenizer {path}: the tokenizer has no {', '.join(missing)}; the tiny XLM-R models "
                         f"need XLM-R's special tokens (<s> <pad> </s> <unk> <mask>)")
    return tok


def tokenizer_record(path: str | Path, tok) -> dict:
    """What world.json says about a given tokenizer: where it came from, its size and the sha256 of its files."""
    import hashlib
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(Path(path).glob("*.json"))}
    return {"path": str(Path(path).resolve()), "vocab_size": len(tok), "class": type(tok).__name__, "sha256": files}


def build(root: str | Path, seed: int = 0, sizes: dict | None = None, overwrite: bool = True,
          tokenizer: str | Path | None = None) -> dict[str, Path]:
    """Build the whole tiny world under `root`; returns {"data": ..., "<model name>": ...}. `tokenizer`: a folder
    with a tokenizer to build the models on (e.g. XLM-R's own, 250,002 ids) instead of training one on the mirror;
    the model shapes stay tiny (only the embedding matrix grows with the vocabulary)."""
    root = Path(root)
    given = load_tokenizer(tokenizer) if tokenizer else None     # fail fast, before anything is written
    if overwrite and root.exists():
        for sub in ("data", "models"):
            shutil.rmtree(root / sub, ignore_errors=True)
    data = build_data(root / "data", seed=seed, sizes=sizes)
    tok = given if given is not None else train_tokenizer(_corpus(data))
    out = {"data": data}
    for name in MODEL_SIZES:
        out[name] = build_model(root / "models" / name, tok, name, seed=seed)
    record = {"seed": seed, "models": list(MODEL_SIZES), "data": "data"}
    if given is not None:
        record["tokenizer"] = tokenizer_record(tokenizer, given)
    (root / "world.json").write_text(json.dumps(record, indent=1))
    return out


REQUIRED = ("user/bucc2018", "wikimedia/wikipedia")   # fixtures added after the first worlds were built


def ensure(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Build the world once; later calls reuse it (tests and the smoke plan share one world)."""
    root = Path(root)
    if not (root / "world.json").exists() or any(not (root / "data" / p).exists() for p in REQUIRED):
        return build(root, seed=seed)     # a world built before these fixtures existed is rebuilt once
    return {"data": root / "data", **{n: root / "models" / n for n in MODEL_SIZES}}
