"""The task registry: every intermediate and target task of the study, as data.

Sources for every list and default (docs/architecture.md "Sources"): the hub cards of each dataset (hub ids,
configs, splits, schemas), the paper's protocol (languages and English training tasks), jiant's hyper-parameters,
XTREME-R's task list. Languages and configs come from here only; notebooks never hard-code them.

>>> get("xnli").train_task
('mnli', 'en')
>>> languages("pawsx")
['de', 'en', 'es', 'fr', 'ja', 'ko', 'zh']
>>> get("xnlii")
Traceback (most recent call last):
...
ValueError: unknown task 'xnlii'; valid tasks: anli_plus, ccg, commonsenseqa, copa, cosmosqa, hellaswag, mlm, mnli, qqp, siqa, snli, squad, squad_v2, sst2, stsb, bucc2018, mlqa, panx, pawsx, stsb_cross, stsb_cross_cosine, stsb_multi_mt, tatoeba, tydiqa, udpos, xcopa, xnli, xquad
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# Task types: each has one normalized record shape (see data.NORMALIZED_FIELDS) and one head (models.py).
TYPES = ("classification", "pair_classification", "regression", "multiple_choice", "span_qa", "tagging",
         "retrieval", "mlm")
SPLITS = ("train", "validation", "test")
BENCHMARKS = ("xtreme", "xtreme-r")

NLI_LABELS = ["entailment", "neutral", "contradiction"]
UPOS_LABELS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
               "PUNCT", "SCONJ", "SYM", "VERB", "X"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]

# ISO 639-1 -> the language names of google/xtreme `udpos.<Name>` configs (docs/sources.md, XTREME tasks and languages).
UDPOS_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
# ISO 639-1 -> ISO 639-3 as used by google/xtreme `tatoeba.<code3>` and the LASER files (jiant's map).
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
    # XTREME-R additions (not in google/xtreme; read from LASER-layout files at a user path)
    "az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr", "ro": "ron",
}
# TyDiQA-GoldP: language lives in the id prefix (docs/sources.md, Hub dataset quirks).
TYDIQA_PREFIX = {"en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian",
                 "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"}
# UD v2.7 treebanks for the XTREME-R-only UD-POS languages: every treebank of the language, as XTREME-R reads
# them (scripts/download_data.sh converts every v2.7 .conllu file whose name starts with the language code; the same
# concatenation of all treebanks as its v2.5 data: docs/sources.md, Hub dataset quirks). Source of the list and of
# each treebank's splits: the hub `universal_dependencies` loading script (v2.7, `_UD_DATASETS` in
# huggingface/datasets datasets/universal_dependencies/universal_dependencies.py); splits are normalized names.
UD27_TREEBANKS_SOURCE = ("universal-dependencies/universal_dependencies v2.7 (refs/convert/parquet); treebank list "
                         "and splits from its loading script's _UD_DATASETS; XTREME-R uses all v2.7 treebanks of "
                         "lt pl uk wo ro (google-research/xtreme scripts/download_data.sh)")
UD27_TREEBANKS = {
    "lt": {"lt_alksnis": ("train", "validation", "test")},
    "pl": {"pl_lfg": ("train", "validation", "test"), "pl_pdb": ("train", "validation", "test"), "pl_pud": ("test",)},
    "uk": {"uk_iu": ("train", "validation", "test")},
    "wo": {"wo_wtb": ("train", "validation", "test")},
    "ro": {"ro_nonstandard": ("train", "validation", "test"), "ro_rrt": ("train", "validation", "test"),
           "ro_simonero": ("train", "validation", "test")},
}
# Treebanks XTREME-R has but the hub cannot give right: why each is left out.
UD27_LEFT_OUT = {"lt_hse": "the hub script reads lt_hse-ud-train.conllu for its dev and test splits too, so its "
                           "test split would repeat training sentences"}

# Cross-lingual STS "languages": sentence1's language - sentence2's language, English paired with each other
# stsb_multi_mt language in both directions.
STS_CROSS_PAIRS = tuple(p for lg in "de es fr it nl pl pt ru zh".split() for p in (f"en-{lg}", f"{lg}-en"))

# XTREME's TASK2LANGS, in the order of google-research/xtreme evaluate.py (docs/sources.md, XTREME tasks and languages).
XTREME_LANGS = {
    "pawsx": "de en es fr ja ko zh",
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh",
    "panx": "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw yo my zh "
            "kk tr et fi hu",
    "udpos": "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh",
    "bucc2018": "de fr ru zh",
    "tatoeba": "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw zh kk tr "
               "et fi hu",
    "xquad": "en es de el ru tr ar vi th zh hi",
    "mlqa": "en es de ar hi vi zh",
    "tydiqa": "en ar bn fi id ko ru sw te",
}
# XTREME-R additions (google-research/xtreme evaluate.py XTREME_R_TASK2LANGS;
# docs/sources.md, XTREME tasks and languages).
XTREME_R_EXTRA = {"udpos": "lt pl uk wo ro", "panx": "qu pl uk az lt pa gu ro", "xquad": "ro",
                  "tatoeba": "az lt pl uk ro"}
XTREME_R_TASKS = ("xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba")

# Official group structure of evaluate.py (XTREME_GROUP2TASK / XTREME_R_GROUP2TASK).
GROUPS = {
    "xtreme": {"classification": ["pawsx", "xnli"], "tagging": ["udpos", "panx"], "qa": ["xquad", "mlqa", "tydiqa"],
               "retrieval": ["bucc2018", "tatoeba"]},
    "xtreme-r": {"classification": ["xnli", "xcopa"], "tagging": ["udpos", "panx"], "qa": ["xquad", "mlqa", "tydiqa"],
                 "retrieval": ["tatoeba", "mewslix"], "multi_choice": ["xcopa"]},
}


@dataclass(frozen=True)
class Source:
    """Where one language's data lives on the hub. `config` may hold `{lang}`, `{name}` (udpos), `{code3}`."""
    hub_id: str
    config: str | None
    splits: dict[str, str]                       # normalized split -> hub split name
    revision: str | None = None                  # "refs/convert/parquet" if script-only (docs/sources.md, Hub loading)
    fields: dict[str, str] = field(default_factory=dict)   # normalized field -> hub column ("a.b" = nested)
    labels: str = "int"                          # label encoding, see data._decode_labels
    filter: str | None = None                    # "language" column or "id_prefix" (one config, many languages)
    splits_by_lang: dict[str, tuple[str, ...]] = field(default_factory=dict)  # languages missing some splits
    # Several configs read as one (UD v2.7: all treebanks of a language): (config, normalized splits it has).
    treebanks: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Task:
    name: str
    family: str                                  # "intermediate" or "target"
    type: str
    source: Source | None                        # None: composite (anli_plus) or user-path data (ccg)
    languages: dict[str, tuple[str, ...]]        # benchmark -> languages
    label_names: tuple[str, ...] = ()
    n_choices: int = 0
    metrics: tuple[str, ...] = ("accuracy",)
    primary_metric: str = "accuracy"
    train_task: tuple[str, str] | None = None    # (task, language) whose English train split trains this target
    eval_split: str = "test"
    max_length: int = 256
    epochs: float = 3.0
    batch_size: int = 32                         # effective batch (gradient accumulation makes it up)
    lr: float = 1e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    components: tuple[str, ...] = ()             # composite tasks: the tasks pooled into one label space
    lang_sources: dict[str, Source] = field(default_factory=dict)  # per-language source overrides
    user_path: str | None = None                 # env var naming a local path for data not on the hub
    note: str = ""

    def source_for(self, language: str) -> Source | None:
        return self.lang_sources.get(language, self.source)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["languages"] = {k: list(v) for k, v in self.languages.items()}
        return d


def _langs(task: str) -> dict[str, tuple[str, ...]]:
    base = tuple(XTREME_LANGS[task].split())
    out = {"xtreme": base}
    if task in XTREME_R_TASKS:
        out["xtreme-r"] = base + tuple(XTREME_R_EXTRA.get(task, "").split())
    return out


EN = {"xtreme": ("en",), "xtreme-r": ("en",)}
_XT = "google/xtreme"
_PARQUET = "refs/convert/parquet"
_QA_FIELDS = {"id": "id", "context": "context", "question": "question", "answers": "answers"}
_PAIR = {"text_a": "premise", "text_b": "hypothesis", "label": "label"}
_TVT = {"train": "train", "validation": "validation", "test": "test"}
_TV = {"train": "train", "validation": "validation"}
_SQUAD_HP = dict(max_length=384, epochs=2.0, batch_size=16)

_TASKS: list[Task] = [
    # ---- English intermediate tasks (docs/sources.md, Intermediate tasks) ----
    Task("anli_plus", "intermediate", "pair_classification", None, EN, tuple(NLI_LABELS),
         components=("anli_r1", "anli_r2", "anli_r3", "mnli", "snli"),
         note="ANLI R1-R3 + MNLI + SNLI in one NLI label space (jiant: proportional sampling, one shared head); "
              "SNLI's unlabeled (-1) rows dropped"),
    Task("mnli", "intermediate", "pair_classification",
         Source("nyu-mll/glue", "mnli", {"train": "train", "validation": "validation_matched"}, fields=_PAIR),
         EN, tuple(NLI_LABELS)),
    Task("mnli_mt", "intermediate", "pair_classification",
         Source("facebook/xnli", "{lang}", _TVT, fields=_PAIR),
         {"xtreme": tuple(XTREME_LANGS["xnli"].split())}, tuple(NLI_LABELS),
         note="machine-translated MNLI (XNLI's translate-train data) for the translated-intermediate variant: "
              "an intermediate label 'mnli@de' trains on the German translation"),
    Task("snli", "intermediate", "pair_classification",
         Source("stanfordnlp/snli", "plain_text", _TVT, fields=_PAIR), EN, tuple(NLI_LABELS),
         note="component of anli_plus; unlabeled (-1) rows dropped"),
    Task("qqp", "intermediate", "pair_classification",
         Source("nyu-mll/glue", "qqp", _TV, fields={"text_a": "question1", "text_b": "question2", "label": "label"}),
         EN, ("not_duplicate", "duplicate")),
    Task("sst2", "intermediate", "classification",
         Source("nyu-mll/glue", "sst2", _TV, fields={"text_a": "sentence", "label": "label"}),
         EN, ("negative", "positive")),
    Task("squad", "intermediate", "span_qa", Source("rajpurkar/squad", "plain_text", _TV, fields=_QA_FIELDS),
         EN, metrics=("exact_match", "f1"), primary_metric="f1", **_SQUAD_HP, note="SQuAD v1.1"),
    Task("squad_v2", "intermediate", "span_qa", Source("rajpurkar/squad_v2", "squad_v2", _TV, fields=_QA_FIELDS),
         EN, metrics=("exact_match", "f1"), primary_metric="f1", **_SQUAD_HP, note="unanswerable = empty answers"),
    Task("hellaswag", "intermediate", "multiple_choice",
         Source("Rowan/hellaswag", "default", _TV, revision=_PARQUET, labels="str_int",
                fields={"context": "ctx", "choices": "endings", "label": "label"}),
         EN, n_choices=4),
    Task("cosmosqa", "intermediate", "multiple_choice",
         Source("allenai/cosmos_qa", "default", _TV, revision=_PARQUET,
                fields={"context": "context", "question": "question",
                        "choices": "answer0,answer1,answer2,answer3", "label": "label"}),
         EN, n_choices=4, note="hub repo is script-only; parquet branch unverified (docs/sources.md, Hub loading)"),
    Task("commonsenseqa", "intermediate", "multiple_choice",
         Source("tau/commonsense_qa", "default", _TV, labels="letter",
                fields={"question": "question", "choices": "choices.text", "label": "answerKey"}),
         EN, n_choices=5),
    Task("ccg", "intermediate", "tagging", Source("user", None, {"train": "train", "validation": "dev",
                                                               "test": "test"}),
         EN, user_path="XFER_CCG_PATH", max_length=256, metrics=("accuracy",), primary_metric="accuracy",
         note="CCGbank supertagging (LDC2005T13, licensed: https://catalog.ldc.upenn.edu/LDC2005T13); "
              "files {train,dev,test}.tsv, one 'word<TAB>supertag' per line, blank line between sentences; scored by "
              "per-word supertag accuracy (jiant's CCG task)"),
    Task("siqa", "intermediate", "multiple_choice",
         Source("allenai/social_i_qa", "default", _TV, revision=_PARQUET, labels="str_int_1based",
                fields={"context": "context", "question": "question", "choices": "answerA,answerB,answerC",
                        "label": "label"}),
         EN, n_choices=3, lr=2e-5, epochs=5.0, max_length=128, note="XTREME-R route to XCOPA: SIQA, then COPA"),
    Task("copa", "intermediate", "multiple_choice",
         Source("aps/super_glue", "copa", _TV, revision=_PARQUET,
                fields={"context": "premise", "question": "question", "choices": "choice1,choice2", "label": "label"}),
         EN, n_choices=2, lr=2e-5, epochs=5.0, max_length=128),
    Task("stsb", "intermediate", "regression",
         Source("PhilipMay/stsb_multi_mt", "en", {"train": "train", "validation": "dev", "test": "test"},
                labels="float", fields={"text_a": "sentence1", "text_b": "sentence2", "label": "similarity_score"}),
         EN, metrics=("pearson", "spearman"), primary_metric="spearman", epochs=3.0),
    Task("mlm", "intermediate", "mlm", None, EN, metrics=("loss",), primary_metric="loss",
         note="multilingual MLM co-training text: a text source parameter (hub id wikimedia/wikipedia "
              "20231101.<lang>, or a local folder of <lang>.txt files)"),
    # ---- XTREME targets (docs/sources.md, XTREME tasks and languages; docs/sources.md, Hyper-parameters) ----
    Task("xnli", "target", "pair_classification",
         Source(_XT, "XNLI", {"validation": "validation", "test": "test"}, labels="names", filter="language",
                fields={"text_a": "sentence1", "text_b": "sentence2", "label": "gold_label"}),
         _langs("xnli"), tuple(NLI_LABELS), train_task=("mnli", "en"), epochs=2.0),
    Task("pawsx", "target", "pair_classification",
         Source(_XT, "PAWS-X.{lang}", _TVT, labels="str_int",
                fields={"text_a": "sentence1", "text_b": "sentence2", "label": "label"}),
         _langs("pawsx"), ("0", "1"), train_task=("pawsx", "en"), epochs=5.0),
    Task("udpos", "target", "tagging",
         Source(_XT, "udpos.{name}", _TVT, fields={"tokens": "tokens", "tags": "pos_tags"},
                splits_by_lang={"tl": ("test",), "th": ("test",), "yo": ("test",), "kk": ("train", "test")}),
         _langs("udpos"), tuple(UPOS_LABELS), metrics=("f1", "precision", "recall"), primary_metric="f1",
         train_task=("udpos", "en"), epochs=10.0,
         lang_sources={lg: Source("universal-dependencies/universal_dependencies", next(iter(tbs)), _TVT,
                                  revision=_PARQUET, fields={"tokens": "tokens", "tags": "upos"},
                                  treebanks=tuple(tbs.items()))
                       for lg, tbs in UD27_TREEBANKS.items()},
         note="XTREME-R languages lt pl uk wo ro: every UD v2.7 treebank of the language (tasks.UD27_TREEBANKS), "
              "multiword-token ranges and empty nodes dropped (data.py)"),
    Task("panx", "target", "tagging",
         Source(_XT, "PAN-X.{lang}", _TVT, fields={"tokens": "tokens", "tags": "ner_tags"}),
         _langs("panx"), tuple(NER_LABELS), metrics=("f1", "precision", "recall"), primary_metric="f1",
         train_task=("panx", "en"), epochs=10.0,
         lang_sources={lg: Source("unimelb-nlp/wikiann", lg, _TVT, fields={"tokens": "tokens", "tags": "ner_tags"})
                       for lg in XTREME_R_EXTRA["panx"].split()}),
    Task("xquad", "target", "span_qa", Source(_XT, "XQuAD.{lang}", {"test": "validation"}, fields=_QA_FIELDS),
         _langs("xquad"), metrics=("exact_match", "f1"), primary_metric="f1", train_task=("squad", "en"),
         **_SQUAD_HP, lang_sources={"ro": Source("google/xquad", "xquad.ro", {"test": "validation"},
                                                revision=_PARQUET, fields=_QA_FIELDS)}),
    Task("mlqa", "target", "span_qa",
         Source(_XT, "MLQA.{lang}.{lang}", {"validation": "validation", "test": "test"}, fields=_QA_FIELDS),
         _langs("mlqa"), metrics=("exact_match", "f1"), primary_metric="f1", train_task=("squad", "en"),
         **_SQUAD_HP),
    Task("tydiqa", "target", "span_qa",
         Source(_XT, "tydiqa", {"train": "train", "validation": "validation", "test": "validation"},
                filter="id_prefix", fields=_QA_FIELDS),
         _langs("tydiqa"), metrics=("exact_match", "f1"), primary_metric="f1", train_task=("tydiqa", "en"),
         **_SQUAD_HP, note="XTREME scores TyDiQA-GoldP on its dev set; test = hub validation"),
    Task("bucc2018", "target", "retrieval",
         Source(_XT, "bucc18.{lang}", {"validation": "validation", "test": "test"},
                fields={"source": "source_sentence", "target": "target_sentence", "source_id": "source_lang",
                        "target_id": "target_lang"}),
         _langs("bucc2018"), metrics=("f1", "precision", "recall"), primary_metric="f1", max_length=512,
         user_path="XFER_BUCC_PATH",
         note="hub configs hold only the gold pairs (a proxy, not the real mining task); the real task reads the "
              "BUCC 2018 corpora (https://comparable.limsi.fr/bucc2018/) from a user path"),
    Task("tatoeba", "target", "retrieval",
         Source(_XT, "tatoeba.{code3}", {"test": "validation"},
                fields={"source": "source_sentence", "target": "target_sentence"}),
         _langs("tatoeba"), max_length=512, user_path="XFER_TATOEBA_PATH",
         lang_sources={lg: Source("user", None, {"test": "test"}) for lg in XTREME_R_EXTRA["tatoeba"].split()},
         note="XTREME-R extras (az lt pl uk ro) are not on the hub: LASER files tatoeba.<xxx>-eng.{xxx,eng}"),
    # ---- XTREME-R and follow-up targets ----
    Task("xcopa", "target", "multiple_choice",
         Source("cambridgeltl/xcopa", "{lang}", {"validation": "validation", "test": "test"},
                fields={"context": "premise", "question": "question", "choices": "choice1,choice2",
                        "label": "label"}),
         {"xtreme-r": tuple("et ht id it qu sw ta th tr vi zh".split())}, n_choices=2, train_task=("copa", "en"),
         lr=2e-5, epochs=5.0, max_length=128, note="XTREME-R recipe: SIQA, then COPA (English), then predict"),
    Task("stsb_multi_mt", "target", "regression",
         Source("PhilipMay/stsb_multi_mt", "{lang}", {"train": "train", "validation": "dev", "test": "test"},
                labels="float", fields={"text_a": "sentence1", "text_b": "sentence2", "label": "similarity_score"}),
         {"xtreme-r": tuple("en de es fr it nl pl pt ru zh".split())}, metrics=("pearson", "spearman"),
         primary_metric="spearman", train_task=("stsb", "en")),
    # Cross-lingual STS: the row-aligned stsb_multi_mt test/dev sets (row i is the same pair, same score, in every
    # language) give pairs whose two sentences are in two languages; language "en-de" = sentence1 English,
    # sentence2 German (data.load builds them). Trained on English STS-B like stsb_multi_mt ...
    Task("stsb_cross", "target", "regression",
         Source("PhilipMay/stsb_multi_mt", "{lang}", {"validation": "dev", "test": "test"}, labels="float",
                filter="language_pair",
                fields={"text_a": "sentence1", "text_b": "sentence2", "label": "similarity_score"}),
         {"xtreme-r": STS_CROSS_PAIRS}, metrics=("pearson", "spearman"), primary_metric="spearman",
         train_task=("stsb", "en"), note="en-xx and xx-en pairs from the row-aligned stsb_multi_mt sets"),
    # ... and without any target training: cosine of the encoder's mean-pooled embeddings (the retrieval layer), the
    # Spearman x 100 of that cosine against the gold scores, run by the retrieval phase like Tatoeba.
    Task("stsb_cross_cosine", "target", "regression", None, {"xtreme-r": STS_CROSS_PAIRS},
         metrics=("pearson", "spearman"), primary_metric="spearman", max_length=512,
         note="unsupervised cross-lingual STS: no target training; reads stsb_cross's pairs (retrieval phase)"),
]
# ANLI rounds are components of anli_plus, not tasks of their own in the paper, but loadable for the same reason.
_TASKS += [Task(f"anli_r{r}", "intermediate", "pair_classification",
                Source("facebook/anli", "plain_text", {"train": f"train_r{r}", "validation": f"dev_r{r}",
                                                       "test": f"test_r{r}"}, fields=_PAIR),
                EN, tuple(NLI_LABELS), note="component of anli_plus") for r in (1, 2, 3)]

REGISTRY: dict[str, Task] = {t.name: t for t in _TASKS}
# What `xfer tasks` lists and errors name: the study's tasks (components stay loadable but unlisted).
PUBLIC = tuple(sorted(n for n, t in REGISTRY.items() if t.family == "intermediate" and not n.startswith("anli_r")
                      and n != "mnli_mt")) \
    + tuple(sorted(n for n, t in REGISTRY.items() if t.family == "target"))
# Intermediate tasks with a machine-translated version: "<task>@<lang>" trains on it
# (docs/sources.md, Intermediate tasks).
TRANSLATED = {"mnli": "mnli_mt"}
PAPER_INTERMEDIATE = ("anli_plus", "mnli", "qqp", "sst2", "squad", "hellaswag", "cosmosqa", "commonsenseqa", "ccg")
XTREME_TARGETS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
RETRIEVAL_TASKS = ("bucc2018", "tatoeba")
# Rows scored on a stand-in for a task's real data (BUCC mined from the hub's gold-pairs-only configs) carry a split
# named "proxy-<split>": they never pass for the real task's rows (analysis leaves them out of tables and averages).
PROXY_SPLIT_PREFIX = "proxy-"


NO_INTERMEDIATE = "none"   # = results.NO_INTERMEDIATE: no intermediate training (the raw pretrained encoder)
MULTITASK = "multitask"    # the paper's multi-task setting: the nine PAPER_INTERMEDIATE tasks, one head each


def parse_intermediate(label: str) -> list[tuple[str, str]]:
    """The one parser of the intermediate label grammar (runs.parse_intermediate is its caller-facing name):
    'mnli+squad' -> [('mnli', 'en'), ('squad', 'en')]; 'mnli@de' -> [('mnli_mt', 'de')]; 'multitask' -> the nine
    paper tasks (further '+' parts add to them); 'none' has nothing to train and raises. Bad parts fail naming the
    valid choices."""
    if not label or label == NO_INTERMEDIATE:
        raise ValueError("intermediate is 'none': there is nothing to train in the intermediate phase")
    out = []
    parts = label.split("+")
    if parts[0] == MULTITASK:
        parts = list(PAPER_INTERMEDIATE) + parts[1:]
    for part in parts:
        name, _, lang = part.partition("@")
        t = get(name)
        if t.type == "retrieval":
            raise ValueError(f"{name!r} is a retrieval task and cannot be trained; choose a task with a head")
        if lang:
            if name not in TRANSLATED:
                raise ValueError(f"no translated data for {name!r}; translated variants exist for: "
                                 f"{', '.join(TRANSLATED)}")
            name = TRANSLATED[name]
            check_language(name, lang)
        out.append((name, lang or "en"))
    return out


# Scored straight from an encoder by the retrieval phase too, without being retrieval (their own rows and task name).
EMBEDDING_TASKS = ("stsb_cross_cosine",)
# The task whose pairs an embedding task scores.
EMBEDDING_DATA = {"stsb_cross_cosine": "stsb_cross"}


def get(name: str) -> Task:
    """The registry record of `name`; an unknown name fails with the valid choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(PUBLIC)}") from None


def languages(task: str, benchmark: str = "xtreme") -> list[str]:
    """The official language list of `task` under `benchmark` (falls back to the task's only list)."""
    t = get(task)
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(BENCHMARKS)}")
    if benchmark in t.languages:
        return list(t.languages[benchmark])
    return list(next(iter(t.languages.values())))


def all_languages(task: str) -> list[str]:
    """Every language the task has under any benchmark, XTREME order first."""
    out: list[str] = []
    for langs in get(task).languages.values():
        out += [lg for lg in langs if lg not in out]
    return out


def check_language(task: str, language: str) -> None:
    valid = all_languages(task)
    if language not in valid:
        raise ValueError(f"task {task!r} has no language {language!r}; valid languages: {', '.join(valid)}")


def splits(task: str, language: str = "en") -> list[str]:
    """Normalized split names available for (task, language)."""
    t = get(task)
    if task in EMBEDDING_DATA:
        return splits(EMBEDDING_DATA[task], language)
    if t.components:
        return [s for s in SPLITS if all(s in splits(c) for c in t.components)]
    src = t.source_for(language)
    if src is None:  # user-path data (ccg)
        return list(SPLITS)
    avail = [s for s in SPLITS if s in src.splits]
    only = src.splits_by_lang.get(language)
    return [s for s in avail if only is None or s in only]


def check_split(task: str, split: str, language: str = "en") -> None:
    valid = splits(task, language)
    if split not in valid:
        raise ValueError(f"task {task!r} ({language}) has no split {split!r}; valid splits: {', '.join(valid)}")


def config_name(task: str, language: str) -> str | None:
    src = get(task).source_for(language)
    if src is None or src.config is None:
        return None
    return src.config.format(lang=language, name=UDPOS_NAMES.get(language, language),
                             code3=TATOEBA_CODES.get(language, language))


def hyperparameters(task: str) -> dict:
    """Protocol defaults (docs/sources.md, Hyper-parameters) for training on `task`; every one is a notebook
    parameter."""
    t = get(task)
    return {"max_length": t.max_length, "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
            "warmup": t.warmup, "weight_decay": t.weight_decay}


# Multi-task runs train one encoder with one optimizer: one value per hyper-parameter, whatever the order of the
# label's parts (`mnli+squad` == `squad+mnli`). The rule (unverified in the protocol, see README design notes):
# the most conservative step (smallest lr, smallest batch), and no task fewer passes or less warmup/decay than its
# own protocol asks (largest epochs, warmup, weight decay); max_length stays per task (each task brings its own).
MULTITASK_RULE = {"lr": min, "batch_size": min, "epochs": max, "warmup": max, "weight_decay": max, "max_length": max}


def multitask_hyperparameters(names) -> dict:
    """`hyperparameters` of several tasks trained together, by `MULTITASK_RULE` (order-independent).

    >>> multitask_hyperparameters(["mnli", "squad"]) == multitask_hyperparameters(["squad", "mnli"])
    True
    >>> h = multitask_hyperparameters(["mnli", "squad"]); h["batch_size"], h["epochs"], h["max_length"]
    (16, 3.0, 384)
    """
    per = [hyperparameters(n) for n in names]
    if not per:
        raise ValueError("multitask_hyperparameters needs at least one task")
    return {k: rule(p[k] for p in per) for k, rule in MULTITASK_RULE.items()}


# Evaluation splits (phase 3): XTREME's dev and test sets, under the registry's normalized names.
EVAL_SPLITS = ("validation", "test")
_SPLIT_ALIASES = {"dev": "validation", "val": "validation", "validation": "validation", "test": "test"}


def eval_splits(task: str, language: str, requested=EVAL_SPLITS) -> list[tuple[str, list[str]]]:
    """The requested evaluation splits that (task, language) has, as (hub data, split names) pairs: two names that
    read the same hub split (TyDiQA-GoldP: XTREME's "test" is the dev set) are evaluated once and written under
    both names. `requested` accepts 'dev' for 'validation'.

    >>> eval_splits("xnli", "de")
    [('validation', ['validation']), ('test', ['test'])]
    >>> eval_splits("xquad", "de"), eval_splits("tydiqa", "fi")
    ([('test', ['test'])], [('validation', ['validation', 'test'])])
    >>> eval_splits("xnli", "de", ["develop"])
    Traceback (most recent call last):
    ...
    ValueError: unknown evaluation split 'develop'; valid: dev, validation, test
    """
    names = []
    for r in ([requested] if isinstance(requested, str) else list(requested)):
        for part in str(r).split(","):
            part = part.strip()
            if part not in _SPLIT_ALIASES:
                raise ValueError(f"unknown evaluation split {part!r}; valid: dev, validation, test")
            if _SPLIT_ALIASES[part] not in names:
                names.append(_SPLIT_ALIASES[part])
    have = splits(task, language)
    src = get(task).source_for(language)
    hub = (lambda s: src.splits.get(s, s)) if src is not None else (lambda s: s)
    out: dict[str, list[str]] = {}
    for s in names:
        if s in have:
            out.setdefault(hub(s), []).append(s)
    return [(names_[0], names_) for names_ in out.values()]


def table() -> list[dict]:
    """One row per public task, for `xfer tasks`."""
    rows = []
    for name in PUBLIC:
        t = REGISTRY[name]
        rows.append({"task": name, "family": t.family, "type": t.type, "metric": t.primary_metric,
                     "train_task": "/".join(t.train_task) if t.train_task else "",
                     "languages": {b: list(v) for b, v in t.languages.items()}, **hyperparameters(name)})
    return rows
