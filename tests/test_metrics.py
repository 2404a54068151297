"""metrics.py against the official scorers: hand-computed cases (each says which official behaviour it pins),
property tests on random inputs, and real-data tests on ../shared/data (skipped when absent).

Pinned real-data numbers were produced during development by the official implementations run outside this
repository (seqeval 0.0.12 and 1.2.2 from PyPI; SQuAD's evaluate-v1.1.py; MLQA's mlqa_evaluation_v1.py) on the
same deterministic perturbations as below; the project itself never imports them.
"""
from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

from xfer_utils import metrics, tasks


sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import need_data, shared_data  # noqa: E402  (one definition of where the real data lives)


# ---------------------------------------------------------------- accuracy

def test_accuracy_hand_computed():
    # evaluate.py accuracy: correct / len(predictions) * 100
    assert metrics.accuracy(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(200 / 3)
    assert metrics.accuracy([1, 1, 0, 0], [1, 0, 0, 1]) == 50.0


@pytest.mark.parametrize("pred,gold", [([1, 2], [1]), ([], [])])
def test_accuracy_rejects_bad_input(pred, gold):
    with pytest.raises(ValueError):
        metrics.accuracy(pred, gold)


# ---------------------------------------------------------------- tagging

def test_tagging_seqeval_docstring_example():
    # seqeval's own f1_score example (micro, lenient): one of two chunks right in each direction -> 0.5
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    for scheme in metrics.TAGGING_SCHEMES:
        assert metrics.tagging_scores(gold, pred, scheme) == {"f1": 50.0, "precision": 50.0, "recall": 50.0}


def test_tagging_lenient_accepts_i_without_b():
    # default (conlleval-compatible) mode: "I-ORG I-ORG" is the same chunk as "B-ORG I-ORG" (strict mode: F1 0)
    assert metrics.tagging_scores([["I-ORG", "I-ORG"]], [["B-ORG", "I-ORG"]])["f1"] == 100.0


def test_pos_runs_of_identical_tags_are_one_chunk():
    # XTREME's POS "F1" is chunk F1, not token accuracy: gold NOUN NOUN ADJ = chunks NOUN[0-1], ADJ[2];
    # pred NOUN VERB ADJ = NOUN[0], VERB[1], ADJ[2]. Correct 1 -> P 1/3, R 1/2, F1 0.4 (token accuracy 2/3).
    out = metrics.tagging_scores([["NOUN", "NOUN", "ADJ"]], [["NOUN", "VERB", "ADJ"]], scheme="pos0012")
    assert out == pytest.approx({"f1": 40.0, "precision": 100 / 3, "recall": 50.0})


def test_pos0012_and_lenient_chunk_types_differ():
    # seqeval 0.0.12 types a POS tag by the text after its last "-" (the whole tag); 1.2.2 by chunk[1:]:
    # SCONJ and CCONJ both become "CONJ" and the CCONJ extends the SCONJ's chunk (both checked on real seqeval).
    assert metrics.get_chunks([["SCONJ", "CCONJ"]], "pos0012") == [("SCONJ", 0, 0), ("CCONJ", 1, 1)]
    assert metrics.get_chunks([["SCONJ", "CCONJ"]], "lenient") == [("CONJ", 0, 0), ("CONJ", 0, 1)]
    # "X" gets type "_" in 1.2.2, the same as "O", so it never forms a chunk: a perfect [X] scores 0 there.
    assert metrics.tagging_scores([["X"]], [["X"]], "lenient")["f1"] == 0.0
    assert metrics.tagging_scores([["X"]], [["X"]], "pos0012")["f1"] == 100.0


def test_schemes_agree_on_iob2_ner():
    rng = random.Random(3)
    for _ in range(200):
        gold = [[rng.choice(tasks.NER_LABELS) for _ in range(rng.randint(1, 9))] for _ in range(3)]
        pred = [[t if rng.random() < .7 else rng.choice(tasks.NER_LABELS) for t in s] for s in gold]
        assert metrics.tagging_scores(gold, pred, "lenient") == metrics.tagging_scores(gold, pred, "pos0012")


def test_tagging_sentences_do_not_merge():
    # sentences are joined with an "O" in between, so a chunk never runs across a sentence boundary
    assert metrics.get_chunks([["NOUN"], ["NOUN"]], "pos0012") == [("NOUN", 0, 0), ("NOUN", 2, 2)]


@pytest.mark.parametrize("gold,pred", [([["A"]], [["A"], ["B"]]), ([["NOUN", "VERB"]], [["NOUN"]]),
                                       ([["NOUN"]], [[""]])])
def test_tagging_rejects_misaligned_input(gold, pred):
    with pytest.raises(ValueError):
        metrics.tagging_scores(gold, pred, "pos0012")


def test_tagging_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="valid schemes"):
        metrics.tagging_scores([["A"]], [["A"]], scheme="strict")


# ---------------------------------------------------------------- QA

def test_squad_normalisation_and_scores():
    # SQuAD v1.1: articles and ASCII punctuation dropped; F1 on tokens, max over gold answers; missing = 0
    assert metrics.squad_normalize("An apple, the PIE!") == "apple pie"
    gold = {"a": ["Denver Broncos"], "b": ["1912", "in 1912"], "c": ["Paris"], "d": ["blue whale"]}
    pred = {"a": "The Denver Broncos.", "b": "1912 or 1913", "d": "whale"}
    # a: EM 1 F1 1; b: F1 max(1/2 vs "1912", 0.4 vs "in 1912") = 0.5; c: missing; d: P 1 R 1/2 -> 2/3
    out = metrics.squad_scores(gold, pred)
    assert out["exact_match"] == pytest.approx(25.0)
    assert out["f1"] == pytest.approx(100 * (1 + 0.5 + 0 + 2 / 3) / 4)


def test_squad_uses_english_rules_for_every_language():
    # Unicode punctuation is NOT stripped by the SQuAD script (XQuAD zh keeps "。"); MLQA's script strips it
    assert metrics.squad_scores({"q": ["北京"]}, {"q": "北京。"})["exact_match"] == 0.0
    assert metrics.mlqa_scores({"q": ["北京"]}, {"q": "北京。"}, "zh")["exact_match"] == 100.0


def test_squad_empty_normalised_answers_give_em_but_no_f1():
    # official quirk: both sides normalise to "" -> exact match, but F1 has no common token -> 0
    assert metrics.squad_scores({"q": ["The"]}, {"q": "a"}) == {"exact_match": 100.0, "f1": 0.0}


@pytest.mark.parametrize("lang,text,expected", [
    ("en", "The cat, a dog", "cat dog"),
    ("es", "El perro y las casas", "perro y casas"),
    ("de", "Der Hund und die Katze", "hund und katze"),
    ("vi", "những con mèo", "con mèo"),
    ("ar", "الكتاب", "كتاب"),                 # every "ال" goes, also inside words
    ("hi", "भारत की राजधानी।", "भारत की राजधानी"),   # danda is Unicode punctuation; no articles
    ("zh", "北京大学是a school", "北 京 大 学 是 a school"),
    ("en", "«quoted» — text", "quoted text"),   # Unicode punctuation stripped (SQuAD would keep «»—)
])
def test_mlqa_normalisation(lang, text, expected):
    assert metrics.mlqa_normalize(text, lang) == expected


def test_mlqa_chinese_mixed_segmentation_scores():
    # "北京大学" vs "北京": characters are tokens -> P 1, R 1/2, F1 2/3
    assert metrics.mlqa_scores({"q": ["北京大学"]}, {"q": "北京"}, "zh") == {"exact_match": 0.0,
                                                                           "f1": pytest.approx(200 / 3)}


def test_mlqa_rejects_unsupported_language():
    with pytest.raises(ValueError, match="valid languages"):
        metrics.mlqa_scores({"q": ["x"]}, {"q": "x"}, "fr")


def test_qa_rejects_bad_gold():
    with pytest.raises(ValueError):
        metrics.squad_scores({"q": []}, {"q": "x"})
    with pytest.raises(ValueError):
        metrics.squad_scores({}, {})


def _random_answer(rng: random.Random) -> str:
    words = ["the", "a", "Paris", "north", "river", "1912", "big", "red", "of", "in", "x"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 5))) + rng.choice(["", ".", "!"])


def test_qa_properties_on_random_inputs():
    rng = random.Random(0)
    gold = {f"q{i}": [_random_answer(rng) for _ in range(rng.randint(1, 3))] for i in range(200)}
    pred = {q: (rng.choice(a) if rng.random() < .3 else _random_answer(rng)) for q, a in gold.items()}
    for lang in ("en", "de", "zh"):
        out = metrics.mlqa_scores(gold, pred, lang)
        assert 0 <= out["exact_match"] <= 100 and 0 <= out["f1"] <= 100
    # perfect predictions (first gold answer) score 100, unless an answer is only articles/punctuation
    clean = {q: a for q, a in gold.items() if all(metrics.squad_normalize(x) for x in a)}
    assert metrics.squad_scores(clean, {q: a[0] for q, a in clean.items()}) == {"exact_match": 100.0, "f1": 100.0}
    # EM <= F1 question by question when no gold normalises to "" (see the empty-answer quirk above)
    for q, a in clean.items():
        s = metrics.squad_scores({q: a}, {q: pred[q]})
        assert s["exact_match"] <= s["f1"] + 1e-9
    # order of questions does not matter
    items = list(clean.items())
    rng.shuffle(items)
    assert metrics.squad_scores(dict(items), pred) == pytest.approx(metrics.squad_scores(clean, pred))


# ---------------------------------------------------------------- regression, BUCC, Tatoeba

def test_correlation_hand_computed():
    # x = 1 2 3 5, y = 1 2 4 3: Sxy 4.5, Sxx 8.75, Syy 5 -> r = 4.5 / sqrt(43.75); ranks 1234 vs 1243 -> rho 0.8
    out = metrics.correlation_scores([1, 2, 3, 5], [1, 2, 4, 3])
    assert out["pearson"] == pytest.approx(100 * 4.5 / math.sqrt(43.75))
    assert out["spearman"] == pytest.approx(80.0)
    assert math.isnan(metrics.correlation_scores([1, 1, 1], [1, 2, 3])["pearson"])


def test_bucc_scores_hand_computed():
    # evaluate.py bucc_f1: sets of "src<TAB>tgt" lines; 2 of 3 predictions right, 2 of 4 gold found
    pred = [("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-9"), ("de-1", "en-1")]   # duplicates collapse
    gold = [("de-1", "en-1"), ("de-2", "en-2"), ("de-4", "en-4"), ("de-5", "en-5")]
    out = metrics.bucc_scores(pred, gold)
    assert out["precision"] == pytest.approx(200 / 3) and out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * 2 * (2 / 3) * .5 / (2 / 3 + .5))
    assert metrics.bucc_scores([("a", "b")], gold) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert metrics.bucc_scores([(1, 2)], [("1", "2")])["f1"] == 100.0        # ids compared as strings


def test_tatoeba_accuracy_hand_computed():
    assert metrics.tatoeba_accuracy([0, 1, 3, 2]) == 50.0
    assert metrics.tatoeba_accuracy([4, 5], [4, 0]) == 50.0


def test_permutation_invariance_and_perfect_scores():
    rng = random.Random(7)
    labels = [rng.choice("abc") for _ in range(100)]
    preds = [x if rng.random() < .6 else rng.choice("abc") for x in labels]
    order = list(range(100))
    rng.shuffle(order)
    assert metrics.accuracy(preds, labels) == pytest.approx(metrics.accuracy([preds[i] for i in order],
                                                                             [labels[i] for i in order]))
    assert metrics.accuracy(labels, labels) == 100.0
    gold = [[rng.choice(tasks.UPOS_LABELS) for _ in range(rng.randint(1, 15))] for _ in range(50)]
    pred = [[t if rng.random() < .8 else rng.choice(tasks.UPOS_LABELS) for t in s] for s in gold]
    perm = list(range(50))
    rng.shuffle(perm)
    for scheme in metrics.TAGGING_SCHEMES:
        assert metrics.tagging_scores(gold, pred, scheme) == pytest.approx(
            metrics.tagging_scores([gold[i] for i in perm], [pred[i] for i in perm], scheme))
    assert metrics.tagging_scores(gold, gold, "pos0012")["f1"] == 100.0
    pairs = [(f"s{i}", f"t{i}") for i in range(30)]
    assert metrics.bucc_scores(list(reversed(pairs)), pairs)["f1"] == 100.0


# ---------------------------------------------------------------- XTREME aggregation

def _full(benchmark: str, value=lambda t, lg: 50.0) -> dict:
    out = {}
    for t in metrics.benchmark_tasks(benchmark):
        if t == "mewslix":
            continue
        ms = {"span_qa": ("exact_match", "f1"), "tagging": ("f1", "precision", "recall")}.get(
            tasks.get(t).type, ("f1", "precision", "recall") if t == "bucc2018" else ("accuracy",))
        out[t] = {lg: {m: value(t, lg) + (10.0 if m == "f1" and t in ("xquad", "mlqa", "tydiqa") else 0.0)
                       for m in ms} for lg in tasks.languages(t, benchmark)}
    return out


def test_aggregate_matches_evaluate_py_rules():
    rng = random.Random(11)
    vals = {}
    scores = _full("xtreme", lambda t, lg: vals.setdefault((t, lg), rng.uniform(20, 90)))
    out = metrics.xtreme_aggregate(scores, "xtreme")
    # per task: mean over languages; QA task score = (avg EM + avg F1) / 2 (F1 = EM + 10 here)
    for t, per_lang in scores.items():
        acc = [v for (tt, _), v in vals.items() if tt == t]
        assert out["tasks"][t]["complete"]
        key = "exact_match" if t in ("xquad", "mlqa", "tydiqa") else next(iter(per_lang[tasks.languages(t)[0]]))
        assert out["tasks"][t]["average"][key] == pytest.approx(sum(acc) / len(acc))
        expected = sum(acc) / len(acc) + (5.0 if t in ("xquad", "mlqa", "tydiqa") else 0.0)
        assert out["tasks"][t]["score"] == pytest.approx(expected)
    task_scores = {t: out["tasks"][t]["score"] for t in scores}
    for g, ts in tasks.GROUPS["xtreme"].items():
        assert out["groups"][g] == pytest.approx(sum(task_scores[t] for t in ts) / len(ts))
    assert out["overall"] == pytest.approx(sum(task_scores.values()) / 9)      # mean over tasks, not groups
    json.dumps(out)


def test_aggregate_incomplete_task_is_scored_but_left_out():
    scores = _full("xtreme")
    scores["udpos"].pop("yo")
    out = metrics.xtreme_aggregate(scores, "xtreme")
    assert out["tasks"]["udpos"]["complete"] is False and "yo" not in out["tasks"]["udpos"]["languages"]
    assert out["tasks"]["udpos"]["score"] == 50.0
    assert "tagging" not in out["groups"] and "qa" in out["groups"] and out["overall"] is None
    del scores["tatoeba"]
    assert "retrieval" not in metrics.xtreme_aggregate(scores, "xtreme")["groups"]


def test_aggregate_hand_computed_qa_task():
    # xquad with two languages: EM (60+80)/2 = 70, F1 (70+90)/2 = 80 -> score 75, incomplete
    out = metrics.xtreme_aggregate({"xquad": {"en": {"exact_match": 60.0, "f1": 70.0},
                                              "de": {"exact_match": 80.0, "f1": 90.0}}})
    assert out["tasks"]["xquad"]["average"] == {"exact_match": 70.0, "f1": 80.0}
    assert out["tasks"]["xquad"]["score"] == 75.0 and out["tasks"]["xquad"]["complete"] is False


def test_aggregate_xtreme_r_groups():
    out = metrics.xtreme_aggregate(_full("xtreme-r"), "xtreme-r")
    assert set(out["groups"]) == {"classification", "tagging", "qa", "multi_choice"}   # retrieval needs mewslix
    assert out["overall"] is None
    assert len(out["tasks"]["xquad"]["languages"]) == 12                            # + ro


def test_aggregate_rejects_unknown_language_and_task():
    with pytest.raises(ValueError, match="valid languages"):
        metrics.xtreme_aggregate({"xquad": {"ro": {"exact_match": 1.0, "f1": 1.0}}}, "xtreme")
    with pytest.raises(ValueError, match="unknown task"):
        metrics.xtreme_aggregate({"nope": {}}, "xtreme")


# ---------------------------------------------------------------- real data

UPOS_NOISE_EXPECTED = {
    # file: (seqeval 0.0.12 f1, precision, recall; seqeval 1.2.2 f1) for 5% random tags, seed 0
    "UD_English-EWT/en_ewt-ud-test.conllu": (94.23597678916829, 94.10653732240203, 94.36577282313951,
                                             94.23731735701047),
    "UD_German-GSD/de_gsd-ud-test.conllu": (94.2243802708919, 94.23040061337935, 94.21836069762985,
                                            94.21471745178933),
    "UD_Chinese-GSD/zh_gsd-ud-test.conllu": (93.32644045492998, 92.95075828496536, 93.70517176292941,
                                             93.3201711089174),
}


def read_upos(path: Path) -> list[list[str]]:
    """UPOS (column 4) per sentence; multiword-token ranges and empty nodes skipped."""
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                sents.append(cur)
                cur = []
        elif not line.startswith("#"):
            cols = line.split("\t")
            if "-" not in cols[0] and "." not in cols[0]:
                cur.append(cols[3])
    if cur:
        sents.append(cur)
    return sents


def noisy_tags(sents: list[list[str]], rate: float, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(tasks.UPOS_LABELS) if rng.random() < rate else t for t in s] for s in sents]


@pytest.mark.parametrize("name", sorted(UPOS_NOISE_EXPECTED))
def test_ud_pos_with_noise_matches_seqeval(name):
    gold = read_upos(need_data("udpos", name))
    pred = noisy_tags(gold, 0.05, 0)
    f1, p, r, f1_122 = UPOS_NOISE_EXPECTED[name]
    out = metrics.tagging_scores(gold, pred, "pos0012")
    assert out == pytest.approx({"f1": f1, "precision": p, "recall": r}, abs=1e-9)
    assert metrics.tagging_scores(gold, pred, "lenient")["f1"] == pytest.approx(f1_122, abs=1e-9)
    assert metrics.tagging_scores(gold, gold, "pos0012")["f1"] == 100.0
    # chunk F1 is below token accuracy here (docs/sources.md, XTREME scorer behaviour: EWT token acc 95.19, F1 94.24)
    acc = metrics.accuracy([t for s in pred for t in s], [t for s in gold for t in s])
    assert f1 < acc


def squad_file_gold(path: Path) -> dict[str, list[str]]:
    return metrics.squad_gold(json.loads(path.read_text(encoding="utf-8")))


def perturb_answers(gold: dict[str, list[str]], seed: int = 0) -> dict[str, str]:
    """Deterministic mix of exact, decorated, truncated, extended, wrong and missing answers."""
    rng = random.Random(seed)
    ids = list(gold)
    out = {}
    for n, qid in enumerate(ids):
        ans, r = gold[qid][0], rng.random()
        if r < .4:
            out[qid] = ans
        elif r < .5:
            out[qid] = "The " + ans + "."
        elif r < .6:
            toks = ans.split()
            out[qid] = " ".join(toks[:-1]) if len(toks) > 1 else ans[: max(1, len(ans) // 2)]
        elif r < .7:
            out[qid] = ans + " " + gold[ids[(n + 1) % len(ids)]][0]
        elif r < .8:
            out[qid] = gold[ids[(n + 7) % len(ids)]][0]
        elif r < .9:
            continue                                                   # unanswered
        else:
            out[qid] = "«" + ans.upper() + "»!"
    return out


XQUAD_EXPECTED = {
    # lang: (SQuAD v1.1 script EM, F1; MLQA script EM, F1 with the same language's normalisation or None)
    "en": (50.0, 63.64044171658724, 60.7563025210084, 71.94596142892846),
    "de": (50.0, 63.44631932466547, 49.831932773109244, 69.2438679069855),
    "zh": (50.168067226890756, 57.72558497083043, 50.33613445378151, 71.8333110487561),
    "ar": (50.0, 64.15587112460396, 50.168067226890756, 70.42020171290231),
    "hi": (50.0, 63.99371715031153, 50.168067226890756, 69.96770706206233),
    "th": (50.0, 59.64925092483172, None, None),                         # MLQA has no Thai
}


@pytest.mark.parametrize("lang", ["en", "de", "zh", "ar", "hi", "th"])
def test_xquad_perturbed_matches_official_scripts(lang):
    gold = squad_file_gold(need_data("xquad", f"xquad.{lang}.json"))
    pred = perturb_answers(gold)
    squad = metrics.squad_scores(gold, pred)
    expected = XQUAD_EXPECTED[lang]
    assert squad == pytest.approx({"exact_match": expected[0], "f1": expected[1]}, abs=1e-9)
    if expected[2] is not None:
        assert metrics.mlqa_scores(gold, pred, lang) == pytest.approx(
            {"exact_match": expected[2], "f1": expected[3]}, abs=1e-9)
    assert metrics.squad_scores(gold, {q: a[0] for q, a in gold.items()})["exact_match"] == 100.0


def test_xcopa_labels_accuracy():
    path = need_data("xcopa", "et", "test.et.jsonl")
    labels = [json.loads(line)["label"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(labels) == 500 and set(labels) == {0, 1}
    assert metrics.accuracy(labels, labels) == 100.0
    flipped = [1 - x if i % 4 == 0 else x for i, x in enumerate(labels)]
    assert metrics.accuracy(flipped, labels) == 75.0
