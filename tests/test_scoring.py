"""scoring.py / `xfer score`: the official folder layout and file formats, write -> score round trips, hand-made
fixture folders (tests/fixtures/scoring) with hand-computed scores, and real-data checks when ../shared/data is
present (pinned numbers come from the official scorers, see tests/test_metrics.py)."""
from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from xfer_utils import cli, metrics, scoring, tasks

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "scoring"


sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import need_data, shared_data  # noqa: E402  (one definition of where the real data lives)


def _test_metrics():
    spec = importlib.util.spec_from_file_location("_xfer_test_metrics", Path(__file__).with_name("test_metrics.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- hand-made fixture folders

def test_fixture_folder_hand_computed():
    out = scoring.score_folder(FIXTURES / "predictions", FIXTURES / "labels")
    t = out["tasks"]
    assert set(t) == {"pawsx", "udpos", "bucc2018", "tatoeba", "xquad", "mlqa", "xcopa"}   # notatask ignored
    assert t["pawsx"]["languages"] == {"de": {"accuracy": 60.0}}          # 1 0 1 1 0 vs 1 1 1 0 0
    # gold chunks PRON AUX PRON PUNCT | NOUN[5-6] VERB[7]; pred ... | NOUN[5] VERB[6-7]: 4 of 6 both ways.
    # The prediction file has no blank line after its last sentence (as XTREME's mock files): still 2 sentences.
    assert t["udpos"]["languages"]["en"] == pytest.approx({"f1": 200 / 3, "precision": 200 / 3, "recall": 200 / 3})
    assert t["bucc2018"]["languages"]["de"] == pytest.approx({"f1": 40.0, "precision": 50.0, "recall": 100 / 3})
    assert t["tatoeba"]["languages"]["de"] == {"accuracy": 50.0}
    # q1 "the Denver Broncos!" exact; q2 "1912 in Paris" F1 max(.5, .8) = .8; q3 unanswered
    assert t["xquad"]["languages"]["en"] == pytest.approx({"exact_match": 100 / 3, "f1": 60.0})
    assert t["xquad"]["score"] == pytest.approx((100 / 3 + 60) / 2)
    # MLQA zh: "北京" vs "北京大学" char F1 2/3; "北京。" == "北京" once Unicode punctuation goes
    assert t["mlqa"]["languages"]["zh"] == pytest.approx({"exact_match": 50.0, "f1": 100 * (2 / 3 + 1) / 2})
    # XCOPA aligned by idx: 0 right, 1 wrong, 2 missing, 3 right
    assert t["xcopa"]["languages"]["et"] == {"accuracy": 50.0}
    assert all(not v["complete"] for v in t.values())
    assert out["groups"] == {} and out["overall"] is None and out["benchmark"] == "xtreme"


def test_cli_prints_the_json(capsys, tmp_path):
    rc = cli.main(["score", "--predictions", str(FIXTURES / "predictions"), "--labels", str(FIXTURES / "labels"),
                   "--benchmark", "xtreme-r", "--output", str(tmp_path / "s.json")])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "s.json").read_text())
    assert set(printed) == {"benchmark", "tasks", "groups", "overall"} and printed["benchmark"] == "xtreme-r"
    assert set(printed["tasks"]["pawsx"]) == {"languages", "average", "score", "complete"}


def test_cli_bad_input_is_one_sentence(capsys, tmp_path):
    assert cli.main(["score", "--predictions", str(tmp_path / "nope"), "--labels", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    (tmp_path / "l").mkdir()
    assert cli.main(["score", "--predictions", str(tmp_path / "p"), "--labels", str(tmp_path / "l")]) == 2
    assert "no task folder" in capsys.readouterr().err


# ---------------------------------------------------------------- writers and round trips

def test_paths_and_extensions(tmp_path):
    assert scoring.file_path("xnli", "de", tmp_path) == tmp_path / "xnli" / "test-de.tsv"
    assert scoring.file_path("xquad", "de", tmp_path).suffix == ".json"
    assert scoring.file_path("xcopa", "et", tmp_path).suffix == ".jsonl"
    with pytest.raises(ValueError, match="target task"):
        scoring.write_predictions("mnli", "en", [0], tmp_path)
    with pytest.raises(ValueError, match="no language"):
        scoring.write_predictions("xnli", "xx", [0], tmp_path)


def test_tagging_file_format_round_trip(tmp_path):
    sents = [["NOUN", "VERB"], [], ["PUNCT"]]                          # an empty sentence survives the round trip
    path = scoring.write_predictions("udpos", "en", sents, tmp_path)
    assert path.read_text() == "NOUN\nVERB\n\n\nPUNCT\n\n"
    assert scoring._read_tag(path) == sents
    assert scoring._read_tag(path) == scoring._read_tag(path)
    scoring.write_labels("panx", "de", [[0, 1, 2]], tmp_path)            # ids -> tasks.NER_LABELS
    assert (tmp_path / "panx" / "test-de.tsv").read_text() == "O\nB-PER\nI-PER\n\n"
    with pytest.raises(ValueError, match="list of sentences"):
        scoring.write_predictions("udpos", "en", ["NOUN", "VERB"], tmp_path)


def test_label_ids_and_strings_compare_alike(tmp_path):
    scoring.write_labels("xnli", "fr", ["entailment", "contradiction", "neutral"], tmp_path / "l")
    scoring.write_predictions("xnli", "fr", [0, 2, 2], tmp_path / "p")            # tasks.NLI_LABELS order
    assert scoring.score_files("xnli", "fr", tmp_path / "p/xnli/test-fr.tsv",
                               tmp_path / "l/xnli/test-fr.tsv") == {"accuracy": pytest.approx(200 / 3)}
    with pytest.raises(ValueError, match="tab or newline"):
        scoring.write_predictions("pawsx", "de", ["a\tb"], tmp_path)


def test_length_mismatch_is_an_error(tmp_path):
    scoring.write_labels("pawsx", "de", ["0", "1"], tmp_path / "l")
    scoring.write_predictions("pawsx", "de", ["0"], tmp_path / "p")
    with pytest.raises(ValueError, match="1 predictions .* 2 labels"):
        scoring.score_folder(tmp_path / "p", tmp_path / "l")


@pytest.mark.parametrize("form", ["mapping", "rows", "squad"])
def test_qa_label_forms(tmp_path, form):
    answers = {"a": ["Denver Broncos"], "b": ["1912", "in 1912"]}
    labels = {"mapping": answers,
              "rows": [{"id": k, "context": "c", "question": "q", "answers": {"text": v, "answer_start": [0] * len(v)}}
                       for k, v in answers.items()],
              "squad": {"data": [{"paragraphs": [{"qas": [{"id": k, "answers": [{"text": t} for t in v]}]}
                                                 for k, v in answers.items()]}]}}[form]
    lf = scoring.write_labels("tydiqa", "fi", labels, tmp_path / "l")
    assert metrics.squad_gold(json.loads(lf.read_text())) == answers
    pf = scoring.write_predictions("tydiqa", "fi", {"a": "Broncos", "b": "in 1912"}, tmp_path / "p")
    assert scoring.score_files("tydiqa", "fi", pf, lf) == metrics.squad_scores(answers, {"a": "Broncos",
                                                                                          "b": "in 1912"})


def full_folder(root: Path, benchmark: str, rng: random.Random) -> dict:
    """Write labels and predictions for every task/language of a benchmark; returns the expected per-lang scores."""
    expected = {}
    for task in metrics.benchmark_tasks(benchmark):
        if task == "mewslix":
            continue
        t = tasks.get(task)
        expected[task] = {}
        for lg in tasks.languages(task, benchmark):
            n = rng.randint(4, 9)
            if t.type == "span_qa":
                gold = {f"{lg}{i}": [f"answer {i}"] for i in range(n)}
                pred = {q: a[0] if rng.random() < .6 else "answer" for q, a in gold.items()}
                scoring.write_labels(task, lg, gold, root / "l")
                scoring.write_predictions(task, lg, pred, root / "p")
                expected[task][lg] = (metrics.mlqa_scores(gold, pred, lg) if task == "mlqa"
                                      else metrics.squad_scores(gold, pred))
            elif t.type == "tagging":
                gold = [[rng.choice(t.label_names) for _ in range(rng.randint(1, 6))] for _ in range(n)]
                pred = [[x if rng.random() < .7 else rng.choice(t.label_names) for x in s] for s in gold]
                scoring.write_labels(task, lg, gold, root / "l")
                scoring.write_predictions(task, lg, pred, root / "p")
                expected[task][lg] = metrics.tagging_scores(gold, pred, metrics.TAGGING_SCHEME[task])
            elif task == "bucc2018":
                gold = [(f"{lg}-{i}", f"en-{i}") for i in range(n)]
                pred = [(a, b if rng.random() < .7 else "en-x") for a, b in gold]
                scoring.write_labels(task, lg, gold, root / "l")
                scoring.write_predictions(task, lg, pred, root / "p")
                expected[task][lg] = metrics.bucc_scores(pred, gold)
            else:
                gold = [rng.randint(0, 1) for _ in range(n)]
                pred = [g if rng.random() < .7 else 1 - g for g in gold]
                scoring.write_labels(task, lg, gold, root / "l")
                scoring.write_predictions(task, lg, pred, root / "p")
                expected[task][lg] = {"accuracy": metrics.accuracy(pred, gold)}
    return expected


@pytest.mark.parametrize("benchmark", ["xtreme", "xtreme-r"])
def test_full_benchmark_round_trip(tmp_path, benchmark):
    expected = full_folder(tmp_path, benchmark, random.Random(5))
    out = scoring.score_folder(tmp_path / "p", tmp_path / "l", benchmark)
    for task, per_lang in expected.items():
        assert out["tasks"][task]["complete"]
        for lg, sc in per_lang.items():
            assert out["tasks"][task]["languages"][lg] == pytest.approx(sc)
    assert out == metrics.xtreme_aggregate(expected, benchmark)
    if benchmark == "xtreme":
        assert set(out["groups"]) == set(tasks.GROUPS["xtreme"])
        assert out["overall"] == pytest.approx(sum(v["score"] for v in out["tasks"].values()) / 9)
    else:
        assert "retrieval" not in out["groups"] and out["overall"] is None       # no Mewsli-X
    # one language file removed: its task becomes incomplete, its group and the overall score disappear
    scoring.file_path("panx", "yo", tmp_path / "p").unlink()
    out = scoring.score_folder(tmp_path / "p", tmp_path / "l", benchmark)
    assert out["tasks"]["panx"]["complete"] is False and "yo" not in out["tasks"]["panx"]["languages"]
    assert "tagging" not in out["groups"] and out["overall"] is None


def test_extra_language_files_are_ignored(tmp_path):
    # XQuAD ro is an XTREME-R language: under --benchmark xtreme it is ignored, as evaluate.py ignores it
    scoring.write_labels("xquad", "ro", {"q": ["a b"]}, tmp_path / "l")
    scoring.write_predictions("xquad", "ro", {"q": "a b"}, tmp_path / "p")
    assert scoring.score_folder(tmp_path / "p", tmp_path / "l")["tasks"]["xquad"]["languages"] == {}
    assert scoring.score_folder(tmp_path / "p", tmp_path / "l", "xtreme-r")["tasks"]["xquad"]["languages"] == {
        "ro": {"exact_match": 100.0, "f1": 100.0}}


# ---------------------------------------------------------------- real data

def test_real_ud_pos_through_files_matches_official(tmp_path):
    tm = _test_metrics()
    name = "UD_English-EWT/en_ewt-ud-test.conllu"
    gold = tm.read_upos(need_data("udpos", name))
    scoring.write_labels("udpos", "en", gold, tmp_path / "l")
    scoring.write_predictions("udpos", "en", tm.noisy_tags(gold, 0.05, 0), tmp_path / "p")
    out = scoring.score_folder(tmp_path / "p", tmp_path / "l")["tasks"]["udpos"]["languages"]["en"]
    f1, p, r, _ = tm.UPOS_NOISE_EXPECTED[name]                 # seqeval 0.0.12 on the same tags
    assert out == pytest.approx({"f1": f1, "precision": p, "recall": r}, abs=1e-6)


@pytest.mark.parametrize("lang", ["en", "zh", "ar"])
def test_real_xquad_through_files_matches_official(tmp_path, lang):
    tm = _test_metrics()
    path = need_data("xquad", f"xquad.{lang}.json")
    squad = json.loads(path.read_text(encoding="utf-8"))
    pred = tm.perturb_answers(metrics.squad_gold(squad))
    scoring.write_labels("xquad", lang, squad, tmp_path / "l")
    scoring.write_predictions("xquad", lang, pred, tmp_path / "p")
    # the same files scored as MLQA use MLQA's normalisation (XQuAD files standing in for MLQA test files)
    scoring.write_labels("mlqa", lang, squad, tmp_path / "l")
    scoring.write_predictions("mlqa", lang, pred, tmp_path / "p")
    out = scoring.score_folder(tmp_path / "p", tmp_path / "l")["tasks"]
    em, f1, mlqa_em, mlqa_f1 = tm.XQUAD_EXPECTED[lang]          # evaluate-v1.1.py / mlqa_evaluation_v1.py
    assert out["xquad"]["languages"][lang] == pytest.approx({"exact_match": em, "f1": f1}, abs=1e-6)
    assert out["mlqa"]["languages"][lang] == pytest.approx({"exact_match": mlqa_em, "f1": mlqa_f1}, abs=1e-6)


def test_real_xcopa_labels(tmp_path):
    path = need_data("xcopa", "zh", "test.zh.jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    lf = scoring.write_labels("xcopa", "zh", records, tmp_path / "l")
    assert all(set(json.loads(line)) == {"idx", "label"} for line in lf.read_text().splitlines())   # no text copied
    pred = [r["label"] if r["idx"] % 5 else 1 - r["label"] for r in records]
    pf = scoring.write_predictions("xcopa", "zh", pred, tmp_path / "p")
    expected = metrics.accuracy(pred, [r["label"] for r in records])
    assert expected == 80.0 and scoring.score_files("xcopa", "zh", pf, lf) == {"accuracy": expected}
