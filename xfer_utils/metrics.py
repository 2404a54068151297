"""Metric functions that match the official XTREME scorers number for number, plus XTREME's aggregation.

Every function is pure (plain lists and dicts in, floats out) and returns values on XTREME's 0-100 scale.
Which official behaviour each one reproduces (google-research/xtreme `evaluate.py`;
docs/sources.md, XTREME scorer behaviour):

* `accuracy`: XNLI, PAWS-X, XCOPA; share of equal items.
* `tagging_scores`: PAN-X and UD-POS "F1" are seqeval's default (lenient, conlleval-style) chunk F1, not token
  accuracy: runs of identical tags become chunks. The chunker is re-implemented here (no seqeval at run time):
  - ``scheme="lenient"`` is seqeval >= 1.0 (checked against 1.2.2): a tag's first character is its chunk prefix
    and the chunk type is what follows the first "-" (``chunk[1:].split("-", 1)[-1]``, "_" when empty).
  - ``scheme="pos0012"`` is seqeval 0.0.12, which XTREME's published UD-POS numbers and jiant used: the chunk
    type is what follows the *last* "-" (``chunk.split("-")[-1]``), so for a POS tag it is the whole tag.
    For POS tags the two differ, e.g. SCONJ and CCONJ get the same type "CONJ" in 1.2.2 (so a CCONJ right after
    a SCONJ does not open a new chunk) but different types in 0.0.12: 70.398 (1.2.2) vs 70.2175 (0.0.12) on
    XTREME's mock data (docs/sources.md, XTREME scorer behaviour). For IOB2 NER tags (B-PER, I-LOC, O) both schemes
    are identical.
  `xfer score` uses ``pos0012`` for UD-POS, so numbers compare with published XTREME POS numbers, and
  ``lenient`` for PAN-X. Both were checked against the real seqeval packages on random and real tag sequences
  (tests/test_metrics.py pins hand-computed cases that separate the two).
* `squad_scores`: the SQuAD v1.1 script (XTREME uses it for XQuAD and TyDiQA in every language): lower-case,
  drop ASCII punctuation, drop English a/an/the, split on whitespace; EM and token F1 maxed over gold answers,
  averaged over questions; an unanswered question scores 0. Note: when both sides normalise to nothing
  (gold "The", prediction "a"), EM is 100 but F1 is 0, as in the official script.
* `mlqa_scores`: MLQA's `mlqa_evaluation_v1.py`: strip every Unicode punctuation character, drop the language's
  articles (Arabic: every "ال"), split Chinese into CJK characters (mixed segmentation).
* `squad_v2_scores`: the SQuAD v2.0 script (`evaluate-v2.0.py`): the v1.1 normalisation; gold answers that
  normalise to nothing are dropped and a question left without gold is unanswerable, its only gold being the
  empty string, so EM = F1 = 1 exactly when the prediction is empty (normalises to nothing); the v2.0 token F1
  is 1 when both sides are empty and 0 when one is. Questions without a prediction are skipped, not scored 0:
  the v2.0 script averages over the predicted questions only (it prints "Missing prediction").
* `token_accuracy`: CCG supertagging (jiant's CCG task): the share of gold words whose predicted tag is right,
  over all words of all sentences.
* `bucc_scores`: precision/recall/F1 over sets of (source id, target id) pairs.
* `tatoeba_accuracy`: share of queries whose retrieved index is the gold index.
* `correlation_scores`: Pearson and Spearman x 100 (cross-lingual STS).
* `xtreme_aggregate`: per task mean over languages, task score (QA: (EM+F1)/2), group and overall means.

>>> round(accuracy(["a", "b", "b"], ["a", "b", "a"]), 4)
66.6667
"""
from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Hashable, Iterable, Mapping, Sequence

from xfer_utils import tasks

TAGGING_SCHEMES = ("lenient", "pos0012")
TAGGING_SCHEME = {"udpos": "pos0012", "panx": "lenient"}       # per task; identical on IOB2 tags (see tagging_scores)
MLQA_LANGS = ("en", "es", "hi", "vi", "de", "ar", "zh")


def _check_lengths(predictions: Sequence, labels: Sequence, what: str) -> None:
    if len(predictions) != len(labels):
        raise ValueError(f"{what}: {len(predictions)} predictions but {len(labels)} labels; they must match one to one")
    if len(labels) == 0:
        raise ValueError(f"{what}: there is nothing to score (no labels)")


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    """Percentage of predictions equal to their label (XTREME `accuracy`; items compared as given).

    >>> accuracy([1, 0, 1, 1], [1, 1, 1, 1])
    75.0
    """
    _check_lengths(predictions, labels, "accuracy")
    correct = sum(int(p == g) for p, g in zip(predictions, labels))
    return float(correct) / len(predictions) * 100


def _paired_sentences(gold, pred, what: str):
    """Gold and predicted tag sentences that pair up one to one with equal lengths, else one-sentence errors."""
    gold, pred = _as_sentences(gold), _as_sentences(pred)
    _check_lengths(pred, gold, what)
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"{what}: sentence {i} has {len(g)} gold tags but {len(p)} predicted tags")
    return gold, pred


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Per-word tag accuracy x 100 over all words of all sentences (supertagging is scored this way).

    >>> token_accuracy([["N", "NP", "."], ["N/N", "N"]], [["N", "N", "."], ["N/N", "N"]])
    80.0
    """
    gold, pred = _paired_sentences(gold, pred, "token accuracy")
    n = sum(len(g) for g in gold)
    if n == 0:
        raise ValueError("token accuracy: there is nothing to score (no gold words)")
    return 100.0 * sum(int(a == b) for g, p in zip(gold, pred) for a, b in zip(g, p)) / n


# ---------------------------------------------------------------- tagging (seqeval chunk F1)

def _chunk_type(tag: str, scheme: str) -> str:
    if scheme == "pos0012":
        return tag.split("-")[-1]
    return tag[1:].split("-", 1)[-1] or "_"


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # conlleval's rules, as seqeval's end_of_chunk (the same in 0.0.12 and 1.2.2)
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # seqeval's start_of_chunk (the same in 0.0.12 and 1.2.2)
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_chunks(sentences: Sequence[Sequence[str]], scheme: str = "lenient") -> list[tuple[str, int, int]]:
    """seqeval's `get_entities`: (type, start, end) chunks over the sentences joined with an "O" after each.

    >>> get_chunks([["B-PER", "I-PER", "O", "B-LOC"]])
    [('PER', 0, 1), ('LOC', 3, 3)]
    >>> get_chunks([["NOUN", "NOUN", "VERB"]], scheme="pos0012")
    [('NOUN', 0, 1), ('VERB', 2, 2)]
    """
    if scheme not in TAGGING_SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; valid schemes: {', '.join(TAGGING_SCHEMES)}")
    flat: list[str] = []
    for sent in sentences:
        flat.extend(sent)
        flat.append("O")
    flat.append("O")
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate(flat):
        if not isinstance(label, str) or not label:
            raise ValueError(f"tags must be non-empty strings, got {label!r} at token {i}")
        tag, type_ = label[0], _chunk_type(label, scheme)
        if _ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _as_sentences(seq: Sequence) -> list[Sequence[str]]:
    if len(seq) and all(isinstance(s, str) for s in seq):   # one flat sentence
        return [seq]
    return list(seq)


def tagging_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                   scheme: str = "lenient") -> dict[str, float]:
    """seqeval's micro chunk F1/precision/recall x 100 over sentences of tags (see the module docstring).

    Sentences must pair up one to one and have equal lengths (seqeval 1.x raises too).

    >>> gold = [["O", "B-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    >>> pred = [["O", "B-MISC", "I-MISC", "I-MISC"], ["B-PER", "I-PER", "O"]]
    >>> tagging_scores(gold, pred)
    {'f1': 50.0, 'precision': 50.0, 'recall': 50.0}
    >>> tagging_scores([["SCONJ", "CCONJ"]], [["SCONJ", "CCONJ"]], scheme="pos0012")["f1"]
    100.0
    """
    gold, pred = _paired_sentences(gold, pred, "tagging")
    true_chunks = set(get_chunks(gold, scheme))
    pred_chunks = set(get_chunks(pred, scheme))
    correct = len(true_chunks & pred_chunks)
    p = correct / len(pred_chunks) if pred_chunks else 0
    r = correct / len(true_chunks) if true_chunks else 0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0
    return {"f1": f1 * 100, "precision": p * 100, "recall": r * 100}


# ---------------------------------------------------------------- extractive QA

_ASCII_PUNCT = frozenset(string.punctuation)
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")
_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 `normalize_answer`: lower, drop ASCII punctuation, drop a/an/the, collapse whitespace.

    >>> squad_normalize("The  Denver Broncos!")
    'denver broncos'
    """
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(_EN_ARTICLES.sub(" ", text).split())


@lru_cache(maxsize=None)
def _is_unicode_punct(ch: str) -> bool:
    # MLQA's PUNCT set: every character whose Unicode category starts with "P", plus string.punctuation
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _mixed_segmentation(text: str) -> list[str]:
    out: list[str] = []
    buf = ""
    for ch in text:
        if _CJK.search(ch) or _is_unicode_punct(ch):
            if buf:
                out.extend(buf.split())
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(buf.split())
    return out


def mlqa_normalize(text: str, lang: str) -> str:
    """MLQA's per-language `normalize_answer` (languages: en es hi vi de ar zh).

    >>> mlqa_normalize("Die Hauptstadt, Berlin.", "de")
    'hauptstadt berlin'
    >>> mlqa_normalize("北京大学。", "zh")
    '北 京 大 学'
    """
    if lang not in MLQA_LANGS:
        raise ValueError(f"MLQA normalisation has no language {lang!r}; valid languages: {', '.join(MLQA_LANGS)}")
    text = "".join(ch for ch in text.lower() if not _is_unicode_punct(ch))
    if lang in _MLQA_ARTICLES:
        text = _MLQA_ARTICLES[lang].sub(" ", text)
    elif lang == "ar":
        text = text.replace("ال", " ")       # the official regex '\sال^|ال' removes every occurrence
    tokens = _mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip() != "")


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0
    precision = 1.0 * same / len(pred_tokens)
    recall = 1.0 * same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def _qa_scores(gold: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str], normalize) -> dict:
    if not gold:
        raise ValueError("QA: there are no gold questions to score")
    em = f1 = 0.0
    for qid, answers in gold.items():
        if isinstance(answers, str) or not answers:
            raise ValueError(f"QA: question {qid!r} needs a non-empty list of gold answer strings, got {answers!r}")
        if qid not in predictions:
            continue                                        # unanswered: scores 0, as in the official scripts
        pred = predictions[qid]
        if not isinstance(pred, str):
            raise ValueError(f"QA: the prediction for {qid!r} must be a string, got {type(pred).__name__}")
        p = normalize(pred)
        golds = [normalize(a) for a in answers]
        em += max(float(p == g) for g in golds)
        f1 += max(_token_f1(p.split(), g.split()) for g in golds)
    return {"exact_match": 100.0 * em / len(gold), "f1": 100.0 * f1 / len(gold)}


def squad_scores(gold: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str]) -> dict[str, float]:
    """SQuAD v1.1 EM and F1 x 100: `gold` maps question id -> gold answer strings, `predictions` id -> answer.

    >>> gold = {"q1": ["Denver Broncos"], "q2": ["1912", "in 1912"], "q3": ["Paris"]}
    >>> squad_scores(gold, {"q1": "the Denver Broncos", "q2": "1912 or 1913"})
    {'exact_match': 33.333333333333336, 'f1': 50.0}
    """
    return _qa_scores(gold, predictions, squad_normalize)


def squad_v2_scores(gold: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str]) -> dict[str, float]:
    """SQuAD v2.0 EM and F1 x 100 (`evaluate-v2.0.py` with no no-answer probabilities): an empty gold list (or
    golds that all normalise to nothing) means unanswerable, scored 100 only for an empty prediction.

    >>> squad_v2_scores({"q1": ["Denver Broncos"], "q2": [], "q3": []}, {"q1": "Denver", "q2": "", "q3": "x"})
    {'exact_match': 33.333333333333336, 'f1': 55.55555555555555}
    """
    if not gold:
        raise ValueError("QA: there are no gold questions to score")
    em, f1, n = [], [], 0
    for qid, answers in gold.items():
        if isinstance(answers, str):
            raise ValueError(f"QA: question {qid!r} needs a list of gold answer strings, got {answers!r}")
        if qid not in predictions:
            continue                              # evaluate-v2.0.py: "Missing prediction", left out of the mean
        pred = predictions[qid]
        if not isinstance(pred, str):
            raise ValueError(f"QA: the prediction for {qid!r} must be a string, got {type(pred).__name__}")
        golds = [squad_normalize(a) for a in answers if squad_normalize(a)] or [""]
        p = squad_normalize(pred)
        em.append(max(float(p == g) for g in golds))
        f1.append(max(_token_f1(p.split(), g.split()) if p and g else float(p == g) for g in golds))
    if not em:
        raise ValueError("QA: no question has a prediction; there is nothing to score")
    return {"exact_match": 100.0 * sum(em) / len(em), "f1": 100.0 * sum(f1) / len(f1)}


def mlqa_scores(gold: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str],
                lang: str) -> dict[str, float]:
    """MLQA EM and F1 x 100 with the answer language's normalisation (same inputs as `squad_scores`).

    >>> mlqa_scores({"q1": ["北京大学"]}, {"q1": "北京"}, "zh")
    {'exact_match': 0.0, 'f1': 66.66666666666666}
    """
    if lang not in MLQA_LANGS:
        raise ValueError(f"MLQA scoring has no language {lang!r}; valid languages: {', '.join(MLQA_LANGS)}")
    return _qa_scores(gold, predictions, lambda s: mlqa_normalize(s, lang))


def squad_gold(dataset) -> dict[str, list[str]]:
    """{question id: [gold answer texts]} from SQuAD-format JSON (the whole file, or its "data" list).

    >>> squad_gold({"data": [{"paragraphs": [{"qas": [{"id": "q1", "answers": [{"text": "x", "answer_start": 0}]}]}]}]})
    {'q1': ['x']}
    """
    articles = dataset["data"] if isinstance(dataset, Mapping) and "data" in dataset else dataset
    if not isinstance(articles, list):
        raise ValueError("SQuAD gold must be a JSON object with a 'data' list or a list of articles")
    out: dict[str, list[str]] = {}
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out[qa["id"]] = [a["text"] for a in qa["answers"]]
    return out


# ---------------------------------------------------------------- regression, retrieval

def correlation_scores(pred: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation x 100 (NaN when one side is constant).

    >>> {k: round(v, 4) for k, v in correlation_scores([1, 2, 3, 5], [1, 2, 4, 3]).items()}
    {'pearson': 68.0336, 'spearman': 80.0}
    """
    import numpy as np
    from scipy import stats

    _check_lengths(pred, gold, "correlation")
    if len(gold) < 2:
        raise ValueError("correlation: needs at least 2 pairs")
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if np.ptp(p) == 0 or np.ptp(g) == 0:
        return {"pearson": math.nan, "spearman": math.nan}
    return {"pearson": float(stats.pearsonr(p, g)[0]) * 100, "spearman": float(stats.spearmanr(p, g)[0]) * 100}


def _pair_set(pairs: Iterable, what: str) -> set[tuple[str, str]]:
    out = set()
    for pair in pairs:
        pair = tuple(pair)
        if len(pair) != 2:
            raise ValueError(f"{what} pairs must be (source id, target id), got {pair!r}")
        out.add((str(pair[0]), str(pair[1])))
    return out


def bucc_scores(pred_pairs: Iterable, gold_pairs: Iterable) -> dict[str, float]:
    """BUCC precision/recall/F1 x 100 over sets of (source id, target id) (ids compared as strings).

    >>> bucc_scores([("de-1", "en-7"), ("de-2", "en-3")], [("de-1", "en-7"), ("de-5", "en-9"), ("de-6", "en-1")])
    {'f1': 40.0, 'precision': 50.0, 'recall': 33.33333333333333}
    """
    pred, gold = _pair_set(pred_pairs, "predicted"), _pair_set(gold_pairs, "gold")
    if not gold:
        raise ValueError("BUCC: there are no gold pairs to score against")
    correct = len(gold & pred)
    if correct == 0:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    p, r = correct / len(pred), correct / len(gold)
    return {"f1": 2 * p * r / (p + r) * 100, "precision": p * 100, "recall": r * 100}


def tatoeba_accuracy(pred_indices: Sequence[int], gold_indices: Sequence[int] | None = None) -> float:
    """Tatoeba accuracy x 100: query i is right when its retrieved index equals gold i (default gold: i).

    >>> tatoeba_accuracy([0, 2, 1, 3])
    50.0
    """
    gold = range(len(pred_indices)) if gold_indices is None else gold_indices
    _check_lengths(pred_indices, gold, "tatoeba")
    return accuracy([int(p) for p in pred_indices], [int(g) for g in gold])


# ---------------------------------------------------------------- XTREME aggregation

def benchmark_tasks(benchmark: str) -> list[str]:
    """The tasks of a benchmark's groups, in group order, each once (XTREME-R lists xcopa twice)."""
    if benchmark not in tasks.GROUPS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(tasks.GROUPS)}")
    out: list[str] = []
    for group_tasks in tasks.GROUPS[benchmark].values():
        out += [t for t in group_tasks if t not in out]
    return out


def task_score(task: str, scores: Mapping[str, float]) -> float | None:
    """THE task-score rule (evaluate.py's avg_metric): span QA (EM + F1) / 2; every other task its primary metric
    (F1 for tagging and BUCC, accuracy for classification, multiple choice and Tatoeba, Spearman for STS; for
    every registry task the same as evaluate.py's "F1, else accuracy"). None when a metric it needs is missing.

    >>> task_score("xquad", {"exact_match": 40.0, "f1": 60.0}), task_score("xquad", {"f1": 60.0})
    (50.0, None)
    >>> task_score("panx", {"f1": 70.0, "precision": 1.0, "recall": 2.0}), task_score("stsb_multi_mt", {"spearman": 8.0})
    (70.0, 8.0)
    """
    t = tasks.get(task)
    if t.type == "span_qa":
        if "exact_match" in scores and "f1" in scores:
            return (scores["exact_match"] + scores["f1"]) / 2
        return None
    return scores.get(t.primary_metric)


def score(task: str, gold, predictions, language: str = "en") -> dict[str, float]:
    """THE scorer: {metric: value (0-100)} of one task on one language, as its official script computes it.
    `gold` / `predictions` by task: span QA ``{id: [answers]}`` / ``{id: answer}``; tagging lists of tag
    sequences (both); BUCC ``[(src_id, tgt_id)]`` pairs (both); Tatoeba retrieved / gold indices; regression
    numbers; every other task labels (or label ids) compared for equality.

    >>> score("xnli", ["entailment", "neutral"], ["entailment", "contradiction"])
    {'accuracy': 50.0}
    >>> score("ccg", [["N", "NP"]], [["N", "S"]])     # CCG supertagging: per-word accuracy, not chunk F1
    {'accuracy': 50.0}
    """
    t = tasks.get(task)
    if t.type == "span_qa":
        if task == "mlqa":   # MLQA's own script, per-language normalisation; SQuAD v1.1's for the rest
            return mlqa_scores(gold, predictions, language)
        if task == "squad_v2":   # unanswerable questions (empty gold) as the SQuAD v2.0 script scores them
            return squad_v2_scores(gold, predictions)
        return squad_scores(gold, predictions)
    if task == "bucc2018":                  # sets of pairs; the counts may differ
        return bucc_scores(predictions, gold)
    if task == "tatoeba":
        return {"accuracy": tatoeba_accuracy(predictions, gold)}
    if t.type == "tagging":
        if t.metrics == ("accuracy",):
            return {"accuracy": token_accuracy(gold, predictions)}
        return tagging_scores(gold, predictions, scheme=TAGGING_SCHEME.get(task, "lenient"))
    if t.type == "regression":
        return correlation_scores(predictions, gold)
    return {"accuracy": accuracy(predictions, gold)}


def xtreme_aggregate(scores: Mapping[str, Mapping[str, Mapping[str, float]]], benchmark: str = "xtreme") -> dict:
    """XTREME's `evaluate.py` aggregation of {task: {lang: {metric: value (0-100)}}}.

    Per task: each metric averaged over the languages present, in the official language order; task score =
    (EM+F1)/2 for QA, else F1, else accuracy; ``complete`` = every official language present. Groups and
    ``overall`` (mean of task scores) appear only when all their tasks are complete; incomplete tasks are still
    reported language by language. Languages outside the benchmark's list are an error. Under ``xtreme-r`` the
    retrieval group and overall need Mewsli-X, which this kit does not score, so they stay absent/None.

    >>> out = xtreme_aggregate({"xnli": {"de": {"accuracy": 80.0}, "fr": {"accuracy": 70.0}}})
    >>> out["tasks"]["xnli"]["average"], out["tasks"]["xnli"]["complete"], out["groups"], out["overall"]
    ({'accuracy': 75.0}, False, {}, None)
    """
    bench = benchmark_tasks(benchmark)
    known = [t for t in bench if t in scores] + sorted(t for t in scores if t not in bench)
    out_tasks: dict[str, dict] = {}
    for task in known:
        official = tasks.languages(task, benchmark)
        per_lang = scores[task]
        extra = sorted(set(per_lang) - set(official))
        if extra:
            raise ValueError(f"task {task!r} has no language(s) {', '.join(extra)} in benchmark {benchmark!r}; "
                             f"valid languages: {', '.join(official)}")
        present = [lg for lg in official if lg in per_lang]
        by_metric: dict[str, list[float]] = {}
        for lg in present:
            for metric, value in per_lang[lg].items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"score {task}/{lg}/{metric} must be a number, got {value!r}")
                by_metric.setdefault(metric, []).append(value)
        average = {m: sum(v) / len(v) for m, v in by_metric.items()}
        out_tasks[task] = {"languages": {lg: dict(per_lang[lg]) for lg in present}, "average": average,
                           "score": task_score(task, average), "complete": len(present) == len(official)}

    def done(t: str) -> bool:
        return t in out_tasks and out_tasks[t]["complete"] and out_tasks[t]["score"] is not None

    groups = {g: sum(out_tasks[t]["score"] for t in ts) / len(ts)
              for g, ts in tasks.GROUPS[benchmark].items() if all(done(t) for t in ts)}
    overall = sum(out_tasks[t]["score"] for t in bench) / len(bench) if all(done(t) for t in bench) else None
    return {"benchmark": benchmark, "tasks": out_tasks, "groups": groups, "overall": overall}
