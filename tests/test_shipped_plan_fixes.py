"""What made shipped plans crash or mislead, pinned (issue 14 item 2, issue 16 item 1): CCG scored by token
accuracy, SQuAD v2.0 scoring of unanswerable questions, every intermediate label priced, BUCC on the original
corpora (proxy only by opt-in, with rows of its own), and the tiny world's user-path fixture corpora."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from xfer_utils.analysis import tables as analysis
from xfer_utils.runner import cost, execute as runner
from xfer_utils import data, evaluation, metrics, models, postprocess, tasks
from xfer_utils.phases import runs
from xfer_utils.world import tiny

REPO = Path(__file__).resolve().parents[1]


class Lines(list):
    def __call__(self, *a, **k):
        self.append(" ".join(map(str, a)))


# ---------------------------------------------------------------- CCG: per-word supertag accuracy

def test_ccg_is_scored_by_token_accuracy_hand_computed():
    """jiant scores CCG supertagging by the accuracy over words, not seqeval chunk F1 (which has no 'accuracy')."""
    from datasets import Dataset
    names = ["N", "NP", "S[dcl]\\NP", "<other>"]
    ds = Dataset.from_dict({"tokens": [["a", "b", "c"], ["d", "e"]], "tags": [[0, 1, 2], [3, 0]]})
    preds = [["N", "N", "S[dcl]\\NP"], ["<other>", "NP"]]           # 3 of 5 words right
    sc = evaluation.score("ccg", ds, preds, "en", names)
    assert sc == {"accuracy": 60.0}
    assert evaluation.primary("ccg", sc) == 60.0 and tasks.get("ccg").primary_metric == "accuracy"
    assert metrics.token_accuracy([["N", "NP", "."], ["N/N", "N"]], [["N", "N", "."], ["N/N", "N"]]) == 80.0


def test_ccg_model_evaluation_on_the_fixture(world, tokenizer):
    """A CCG head on the tiny encoder, evaluated on the fixture's dev file (user-path layout): accuracy equals the
    share of words whose predicted supertag is the gold one, counted here by hand."""
    ds = data.load("ccg", "validation", data_dir=world["data"], max_examples=24)
    names = data.label_names("ccg", world["data"])
    net, _ = models.build(str(world["tiny-xlmr-s"]), {"ccg": ("tagging", len(names))}, seed=0)
    preds = evaluation.predictions(net, "ccg", "ccg", ds, tokenizer, 256, label_names=names)
    gold = [[names[x] for x in tags] for tags in ds["tags"]]
    right = total = 0
    for g, p in zip(gold, preds):
        assert len(g) == len(p)
        for a, b in zip(g, p):
            right += a == b
            total += 1
    assert evaluation.score("ccg", ds, preds, "en", names) == {"accuracy": 100.0 * right / total}


def test_multitask_intermediate_run_evaluates_ccg(world, tmp_path):
    """The paper's nine-task `multitask` run reaches its English-dev evaluation and writes a CCG accuracy row
    (it raised KeyError('accuracy') at the first evaluation before)."""
    rd = tmp_path / "run"
    rd.mkdir()
    out = runs.intermediate(str(world["tiny-xlmr-s"]), "multitask", run_id="mt", plan="t", run_dir=str(rd),
                            checkpoint_dir=str(tmp_path / "ckpt"), data_dir=str(world["data"]), max_train_examples=8,
                            max_steps=2, eval_every=2, checkpoint_every=2, eval_examples=8, batch_size=9,
                            log=lambda *a: None)
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    ccg = [r for r in rows if r["target_task"] == "ccg"]
    assert [(r["metric"], r["is_primary"]) for r in ccg] == [("accuracy", True)] and 0 <= ccg[0]["value"] <= 100
    assert {r["target_task"] for r in rows if r["is_primary"]} == set(tasks.PAPER_INTERMEDIATE)
    assert out["history"]


# ---------------------------------------------------------------- SQuAD v2.0

def test_squad_v2_official_scoring_of_unanswerable_questions():
    """evaluate-v2.0.py: an empty gold list (or golds normalising to nothing) means the only gold is ''; EM = F1 =
    1 exactly for an empty prediction; v2.0 F1 is int(gold tokens == predicted tokens) when one side is empty;
    a question without a prediction is left out of the mean ('Missing prediction')."""
    gold = {"a": ["Denver Broncos", "the Broncos"], "b": [], "c": [], "d": ["1912"], "e": ["The"],
            "f": ["x"], "g": ["Denver Broncos"]}
    pred = {"a": "Broncos", "b": "", "c": "Denver", "d": "", "e": "", "g": "Denver"}
    # a: 1/1; b: 1/1 (unanswerable, empty); c: 0/0; d: 0/0 (empty prediction, answerable); e: 1/1 ('The' -> '');
    # g: EM 0, F1 2PR/(P+R) with P = 1, R = 1/2 -> 2/3; f: no prediction -> not counted (6 questions scored)
    sc = metrics.squad_v2_scores(gold, pred)
    assert sc["exact_match"] == pytest.approx(100 * 3 / 6)
    assert sc["f1"] == pytest.approx(100 * (3 + 2 / 3) / 6)
    assert metrics.squad_scores({"e": ["The"]}, {"e": "a"}) == {"exact_match": 100.0, "f1": 0.0}   # v1.1 differs


def test_squad_v2_evaluation_path_scores_empty_gold(world):
    ds = data.load("squad_v2", "validation", data_dir=world["data"])
    empty = [i for i, a in zip(ds["id"], ds["answers"]) if not a["text"]]
    assert empty                                                        # the fixture has unanswerable questions
    preds = {i: "" for i in ds["id"]}                                   # "no answer" everywhere
    sc = evaluation.score("squad_v2", ds, preds)
    assert sc["exact_match"] == pytest.approx(100 * len(empty) / len(ds)) == sc["f1"]


def test_squad_v2_intermediate_run_reaches_its_dev_scores(world, tmp_path):
    """A squad_v2 intermediate run evaluates its English dev set (empty gold lists raised before)."""
    rd = tmp_path / "run"
    rd.mkdir()
    runs.intermediate(str(world["tiny-xlmr-s"]), "squad_v2", run_id="v2", plan="t", run_dir=str(rd),
                      checkpoint_dir=str(tmp_path / "ckpt"), data_dir=str(world["data"]), max_train_examples=8,
                      max_steps=1, eval_every=1, checkpoint_every=1, eval_examples=16, batch_size=4,
                      log=lambda *a: None)
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in rows} == {"exact_match", "f1"} and all(0 <= r["value"] <= 100 for r in rows)


def test_null_answer_threshold():
    """Reference v2 post-processing: '' when null score - best span score > threshold (default 0.0)."""
    offsets = [None, (0, 1), (2, 3)]
    w = [([9.0, 5.0, 1.0], [9.0, 1.0, 5.0], offsets)]                  # null 18, best span 'a b' 10: diff 8
    assert postprocess.decode_qa_example("a b", w, allow_null=True) == ""
    assert postprocess.decode_qa_example("a b", w, allow_null=True, null_threshold=8.5) == "a b"
    assert postprocess.decode_qa_example("a b", w, allow_null=False) == "a b"


# ---------------------------------------------------------------- cost of every label

def test_every_label_of_the_grammar_is_priced():
    p = {"max_train_examples": 1000, "epochs": 1.0}

    def tokens(label):
        return cost.run_tokens("intermediate", {**p, "intermediate": label})

    nine = [tokens(t) for t in tasks.PAPER_INTERMEDIATE]
    assert tokens("multitask") == (sum(x[0] for x in nine), sum(x[1] for x in nine))
    assert tokens("mnli@de") == tokens("mnli")
    assert tokens("squad+mlm")[0] == tokens("squad")[0] + cost.train_tokens("mlm", 1.0, 1000)
    assert tokens("multitask+mlm")[0] > tokens("multitask")[0]
    assert tokens("none") == (0.0, 0.0)
    h, note = cost.estimate("intermediate", {"model": "FacebookAI/xlm-roberta-large", "intermediate": "mnli+nope"})
    assert h is None and "mnli+nope" in note


def test_paper_dry_run_prices_every_run(monkeypatch):
    for var in ("XFER_BUCC_PATH", "XFER_CCG_PATH"):
        monkeypatch.delenv(var, raising=False)
    out = Lines()
    assert runner.run_plan(REPO / "params" / "plans" / "paper.yaml", dry_run=True, outputs=REPO / "outputs",
                           out=out) == 0
    rows = [s for s in out if s.strip()[:1].isdigit()]
    assert len(rows) > 100 and not [r for r in rows if " ? " in r or r.split()[3] == "?"]
    assert any("__multitask__" in r for r in rows)
    total = next(s for s in out if s.startswith("total:"))
    assert "unknown cost" not in total
    assert any(s.startswith("note: `xfer run` needs data") and "XFER_CCG_PATH" in s for s in out)   # said, not fatal


@pytest.mark.parametrize("plan", ["quick", "rq_size", "rq_data", "rq_difficulty"])
def test_every_gpu_plan_dry_run_prices_every_run(plan, monkeypatch):
    """rq_size's mT5 encoders are not in the throughput table: their price comes from the ladder's size (6N)."""
    out = Lines()
    assert runner.run_plan(REPO / "params" / "plans" / f"{plan}.yaml", dry_run=True, outputs=REPO / "outputs",
                           out=out) == 0
    rows = [s for s in out if s.strip()[:1].isdigit()]
    assert rows and not [r for r in rows if " ? " in r or r.split()[3] == "?"], plan
    assert "unknown cost" not in next(s for s in out if s.startswith("total:"))


# ---------------------------------------------------------------- BUCC on the original corpora

def test_tiny_bucc_corpus_has_the_original_layout_and_distractors(world):
    root = world["data"] / "user" / "bucc2018"
    from xfer_utils import retrieval
    for lg in tasks.languages("bucc2018"):
        for part in retrieval.XTREME_BUCC_SPLITS.values():
            c = retrieval.read_bucc(root, lg, part)
            n = tiny.BUCC_SIZES[part]
            assert len(c.gold) == n and len(c.src_ids) == len(c.tgt_ids) == 2 * n      # half are distractors
            assert {s for s, _ in c.gold} < set(c.src_ids) and {t for _, t in c.gold} < set(c.tgt_ids)
            assert all(i.startswith(f"{lg}-") for i in c.src_ids) and all(i.startswith("en-") for i in c.tgt_ids)


def test_bucc_runs_on_the_corpus_with_a_sample_threshold(world, tmp_path, monkeypatch):
    """data_dir = the tiny mirror: its own corpus is mined (never the proxy, never the user's XFER_BUCC_PATH);
    threshold chosen on 'sample', scored on 'training' (XTREME's dev/test), rows under split 'test'."""
    monkeypatch.setenv("XFER_BUCC_PATH", str(tmp_path / "not-read"))
    logs = Lines()
    out = runs.retrieval(str(world["tiny-xlmr-s"]), "bucc2018", run_id="b", plan="t", run_dir=str(tmp_path / "b"),
                         checkpoint_dir="", languages=["de", "zh"], data_dir=str(world["data"]), log=logs)
    rows = out["rows"]
    assert {r["split"] for r in rows} == {"test"} and {r["n_examples"] for r in rows} == {tiny.BUCC_SIZES["training"]}
    assert any("chosen on the sample part" in s for s in logs)
    f1 = {r["language"]: r["value"] for r in rows if r["metric"] == "f1"}
    assert all(v > 0 for v in f1.values()), f1          # shared content words: pairs are findable among distractors
    assert (tmp_path / "b" / "predictions").is_dir()


def test_bucc_proxy_only_by_opt_in_and_its_rows_stay_out_of_the_tables(world, tmp_path, monkeypatch):
    monkeypatch.delenv("XFER_BUCC_PATH", raising=False)
    mirror = tmp_path / "mirror"                       # the hub configs only: no corpus in user/
    (mirror / "google").mkdir(parents=True)
    os.symlink(world["data"] / "google" / "xtreme", mirror / "google" / "xtreme")
    kw = dict(run_id="p", plan="t", checkpoint_dir="", languages=["de"], data_dir=str(mirror), log=lambda *a: None)
    with pytest.raises(ValueError, match="comparable.limsi.fr"):
        runs.retrieval(str(world["tiny-xlmr-s"]), "bucc2018", run_dir=str(tmp_path / "x"), **kw)
    out = runs.retrieval(str(world["tiny-xlmr-s"]), "bucc2018", run_dir=str(tmp_path / "p"), bucc_proxy=True, **kw)
    assert {r["split"] for r in out["rows"]} == {"proxy-test"}
    assert not (tmp_path / "p" / "predictions").exists()     # no BUCC-format prediction file from a proxy
    base = dict(phase="retrieval", model="m", seed=1, is_primary=True, metric="f1", run_id="r")
    df = pd.DataFrame([{**base, "intermediate": "none", "target_task": "bucc2018", "language": "de",
                        "split": "proxy-test", "value": 99.0},
                       {**base, "intermediate": "none", "target_task": "tatoeba", "language": "de", "split": "test",
                        "metric": "accuracy", "value": 50.0}])
    table = analysis.paper_table(df)
    assert "bucc2018" not in table.columns and "bucc2018" in table.attrs["missing_targets"]
    assert "bucc2018" in table.attrs["note"] and "proxy" in table.attrs["note"]
    assert analysis.paper_table(df[df["target_task"] == "tatoeba"]).attrs["note"] == ""


# ---------------------------------------------------------------- the other user-path fixtures

def test_tiny_world_user_corpora_are_found_without_variables(world, monkeypatch, tmp_path):
    for var in ("XFER_CCG_PATH", "XFER_TATOEBA_PATH"):
        monkeypatch.setenv(var, str(tmp_path / "users-real-copy"))   # a mirror run still reads its own
    root = world["data"] / "user"
    assert {p.name for p in (root / "ccg").iterdir()} >= {"train.tsv", "dev.tsv", "test.tsv"}
    assert len(data.load("ccg", "test", data_dir=world["data"])) == tiny.SIZES["test"]
    for lg in tasks.XTREME_R_EXTRA["tatoeba"].split():     # the XTREME-R extras: LASER files only
        ds = data.load("tatoeba", "test", lg, data_dir=world["data"])
        assert len(ds) == tiny.SIZES["test"] and ds[0]["source"] and ds[0]["target"]
    with pytest.raises(FileNotFoundError, match="users-real-copy"):   # no mirror: the user's variable is read
        data.load("tatoeba", "test", "az", data_dir=tmp_path)


def test_mlm_text_wikipedia_reads_the_mirror(world):
    lines = data.mlm_text("wikipedia", ["de", "sw"], max_lines=20, data_dir=world["data"])
    assert lines and all(len(x.split()) > 3 for x in lines)
    de = set(data.mlm_text("wikipedia", ["de"], max_lines=10, data_dir=world["data"]))
    assert de and not de & set(data.mlm_text("wikipedia", ["sw"], max_lines=10, data_dir=world["data"]))
