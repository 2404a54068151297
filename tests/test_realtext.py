"""The real-text world (issue 9): readers of the shared files, multiword-token fusion, the world's configs in the hub
schemas, the MLM pretraining and the smoke_real plan. Everything that needs ../shared/data skips without it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xfer_utils.world import realtext, tiny
from xfer_utils import tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO, shared_data  # noqa: E402

SHARED = shared_data()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data is absent (set XFER_SHARED_DATA)")
UD_LANGS = ["en", "de", "zh", "ja", "hi", "ar"]

CONLLU = """# sent_id = 1
# text = Wir sind im Haus.
1\tWir\twir\tPRON\t_\t_\t2\tnsubj\t_\t_
2\tsind\tsein\tAUX\t_\t_\t0\troot\t_\t_
3-4\tim\t_\t_\t_\t_\t_\t_\t_\t_
3\tin\tin\tADP\t_\t_\t5\tcase\t_\t_
4\tdem\tder\tDET\t_\t_\t5\tdet\t_\t_
5\tHaus\tHaus\tNOUN\t_\t_\t2\tobl\t_\t_
5.1\tist\tsein\tAUX\t_\t_\t_\t_\t2:cop\t_
6\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_

1\tvámonos\tir\tVERB\t_\t_\t0\troot\t_\t_

1-2\tvámonos\t_\t_\t_\t_\t_\t_\t_\t_
1\tvamos\tir\tVERB\t_\t_\t0\troot\t_\t_
2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_

1\t_\t_\tX\t_\t_\t0\troot\t_\t_
"""


# ---------------------------------------------------------------- fast: no shared data needed
def test_conllu_fuses_multiword_tokens_the_xtreme_way(tmp_path):
    p = tmp_path / "x.conllu"
    p.write_text(CONLLU, encoding="utf-8")
    fused = realtext.read_conllu(p, lang="de")
    # im = in (ADP) + dem (DET), both attached to Haus: a tie, broken by the precedence list (ADP before DET);
    # vámonos = vamos (root) + nos: the single highest subword heads it; the empty node 5.1 and the all-'_'
    # sentence are dropped
    assert fused == [(["Wir", "sind", "im", "Haus", "."], ["PRON", "AUX", "ADP", "NOUN", "PUNCT"]),
                     (["vámonos"], ["VERB"]), (["vámonos"], ["VERB"])]
    split = realtext.read_conllu(p, fuse_multiword=False)
    assert split[0][0] == ["Wir", "sind", "in", "dem", "Haus", "."]


def test_pos_head_rules():
    assert realtext.pos_head([("DET", 3), ("ADP", 3)]) == 1          # tie: precedence list
    assert realtext.pos_head([("DET", 2), ("ADP", 3)]) == 0          # unique highest wins over precedence
    assert realtext.pos_head([("SYM", 1), ("PUNCT", 1)]) == 1        # unlisted tags rank last


def test_build_refuses_a_folder_without_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="laid out like"):
        realtext.build(tmp_path / "w", tmp_path)


# ---------------------------------------------------------------- readers on the real files
@needs_shared
def test_xquad_files_read_with_valid_offsets():
    for lg in tasks.all_languages("xquad"):
        rows = realtext.read_squad_json(SHARED / "xquad" / f"xquad.{lg}.json")
        assert len(rows) == 1190 and len({r["article"] for r in rows}) == 48
        for r in rows:
            s, t = r["answers"]["answer_start"][0], r["answers"]["text"][0]
            assert r["context"][s:s + len(t)] == t


@needs_shared
def test_ud_reading_matches_the_documented_sizes():
    files = realtext.ud_files(SHARED)
    assert set(UD_LANGS) <= set(files) and "dev" in files["en"]
    de = [w for f in files["de"]["test"] for toks, _ in realtext.read_conllu(f, lang="de") for w in toks]
    de_split = [w for f in files["de"]["test"] for toks, _ in realtext.read_conllu(f, False) for w in toks]
    assert (len(de), len(de_split)) == (16224, 16498)        # 16498 words -> 16224 tokens
    for lg, n in {"en": 25096, "zh": 12012, "ja": 12391, "hi": 23829, "ar": 20751}.items():
        sents = [s for f in files[lg]["test"] for s in realtext.read_conllu(f, lang=lg)]
        assert sum(len(t) for t, _ in sents) == n, lg
        assert all(p in tasks.UPOS_LABELS for _, tags in sents for p in tags)


@needs_shared
def test_inventory_covers_every_real_language():
    inv = realtext.inventory(SHARED)
    assert inv["xquad"] == tasks.all_languages("xquad")              # 12 incl. ro
    assert sorted(inv["udpos"]) == sorted(UD_LANGS)
    assert len(inv["tatoeba"]) == 41 and len(inv["xcopa"]) == 11 and len(inv["stsb"]) == 10
    assert inv["mlqa"] == tasks.all_languages("mlqa")


# ---------------------------------------------------------------- the world (built once per session)
# A reduced build: small tokenizer corpus, a few MLM steps, one model, Tatoeba scored on 100 pairs per language.
REDUCED = dict(pretrain_steps=30, max_lines_per_language=200, vocab_size=6000, model_sizes=["tiny-xlmr-s"],
               tatoeba_examples=100)


def reduced_world(tmp_path_factory) -> dict:
    """The real-text world the tests share (test_datacheck.py too): $XFER_REAL_WORLD when it points at a world built
    by `xfer tiny DIR --text-from PATH` (nothing is rebuilt), else a reduced build in the session's temp folder,
    built once (realtext.ensure reuses it)."""
    if SHARED is None:
        pytest.skip("../shared/data is absent")
    if os.environ.get("XFER_REAL_WORLD"):
        return realtext.ensure(os.environ["XFER_REAL_WORLD"], SHARED)
    return realtext.ensure(tmp_path_factory.getbasetemp() / "real_world", SHARED, log=lambda *a: None, **REDUCED)


@pytest.fixture(scope="session")
def real_world(tmp_path_factory):
    return reduced_world(tmp_path_factory)


def _features(path: Path):
    import pyarrow.parquet as pq
    from datasets import Features
    return Features.from_arrow_schema(pq.read_schema(path))


@pytest.mark.slow
def test_real_configs_have_the_hub_schemas_and_sizes(real_world):
    from xfer_utils import data
    d = real_world["data"]
    rec = real_world["world"]
    for rel in rec["real_configs"]:
        if rel.endswith(".parquet"):
            hub = rel.split("/")[1]
            kind = {"squad": "squad", "xcopa": "xcopa", "stsb_multi_mt": "stsb", "xquad": "XQuAD"}.get(hub) or \
                rel.split("/")[2].split(".")[0]
            assert _features(d / rel) == tiny._features(kind), rel
    sizes = {("xquad", "test", lg): 1190 for lg in tasks.all_languages("xquad")}
    sizes.update({("udpos", "test", "de"): 977, ("udpos", "test", "en"): 2077, ("udpos", "test", "ja"): 550,
                  ("xcopa", "test", "th"): 500, ("xcopa", "validation", "qu"): 100,
                  ("stsb_multi_mt", "test", "zh"): 1379, ("stsb_multi_mt", "validation", "pl"): 1500,
                  ("stsb", "train", "en"): 5749, ("tatoeba", "test", "th"): 548, ("tatoeba", "test", "az"): 1000})
    for (task, split, lg), n in sizes.items():
        assert len(data.load(task, split, lg, data_dir=d)) == n, (task, split, lg)
    ewt = data.load("udpos", "train", "en", data_dir=d), data.load("udpos", "validation", "en", data_dir=d)
    assert len(ewt[0]) + len(ewt[1]) == 2002 and len(ewt[0]) == int(2002 * realtext.UD_TRAIN_SHARE)
    mlqa = [data.load("mlqa", s, "zh", data_dir=d) for s in ("validation", "test")]
    assert len(mlqa[0]) + len(mlqa[1]) == 1190
    squad = data.load("squad", "train", "en", data_dir=d)
    assert 0 < len(squad) < 1190
    de = data.load("udpos", "test", "de", data_dir=d)
    assert sum(len(t) for t in de["tokens"]) == 16224
    assert len(data.load("xquad", "test", "ro", data_dir=d)) == 1190          # ro via google/xquad
    assert sorted(rec["real_languages"]["udpos"]) == sorted(UD_LANGS)
    assert rec["real_languages"]["xquad"] == tasks.all_languages("xquad")


@pytest.mark.slow
def test_tokenizer_models_and_pretraining(real_world):
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    rec = real_world["world"]
    path = real_world["tiny-xlmr-s"]
    tok = AutoTokenizer.from_pretrained(path)
    assert type(tok).__name__ == "XLMRobertaTokenizer" and tok.mask_token_id == len(tok) - 1
    assert rec["tokenizer"]["vocab_size"] == len(tok) and len(rec["tokenizer"]["languages"]) >= 40
    ids = tok("ภาษาไทย 北京 Wir sind im Haus")["input_ids"]
    assert tok.unk_token_id not in ids          # real scripts are in the vocabulary
    enc = AutoModel.from_pretrained(path, add_pooling_layer=False)
    assert enc(**tok(["a b"], return_tensors="pt")).last_hidden_state.shape[-1] == enc.config.hidden_size
    before = AutoModelForMaskedLM.from_pretrained(real_world["tiny-xlmr-s" + realtext.UNTRAINED_SUFFIX])
    after = AutoModelForMaskedLM.from_pretrained(path)
    emb = "roberta.embeddings.word_embeddings.weight"
    assert not torch.equal(before.state_dict()[emb], after.state_dict()[emb])
    p = rec["pretrain"]["tiny-xlmr-s"]
    assert p["steps"] > 0 and p["loss_last"] < p["loss_first"]
    t = rec["tatoeba"]["tiny-xlmr-s"]
    assert set(t["untrained"]) == set(t["pretrained"]) and len(t["pretrained"]) == 41
    assert all(0 <= v <= 100 for v in t["pretrained"].values())
    mlm = (real_world["data"] / "user" / "mlm" / "th.txt").read_text(encoding="utf-8")
    assert any("\u0e00" <= ch <= "\u0e7f" for ch in mlm)                # real Thai, not synthetic fillers


def test_the_default_world_folder_is_git_ignored():
    """Nothing from ../shared/data may enter the repository: the plan's world (.cache/real) is ignored by git."""
    import shutil
    import subprocess
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("no git checkout")
    r = subprocess.run(["git", "check-ignore", "-q", ".cache/real/data/google/xtreme/README.md"], cwd=REPO)
    assert r.returncode == 0


# ---------------------------------------------------------------- the smoke_real plan
PLAN = REPO / "params" / "plans" / "smoke_real.yaml"


def test_smoke_real_plan_validates(tmp_path):
    from xfer_utils.runner import plans
    plan = plans.validate(plans.expand(PLAN, tmp_path / "outputs"))
    targets = {r.params["target_task"] for r in plan.runs if r.phase == "target"}
    assert targets == {"xquad", "mlqa", "udpos", "xcopa", "stsb_multi_mt"}
    assert {r.params["task"] for r in plan.runs if r.phase == "retrieval"} == {"tatoeba"}
    assert all(r.params["data_dir"] == ".cache/real/data" for r in plan.runs if "data_dir" in r.params)
    for r in plan.runs:
        if r.phase == "target" and r.params["target_task"] == "udpos":
            assert sorted(r.params["languages"]) == sorted(UD_LANGS)


@pytest.mark.slow
@needs_shared
def test_smoke_real_plan_runs_end_to_end(tmp_path):
    """Builds .cache/real when missing, runs the plan into a temporary outputs folder, checks the rows."""
    from xfer_utils import results
    from xfer_utils.runner import execute as runner
    realtext.ensure(REPO / ".cache" / "real", SHARED)
    out = tmp_path / "outputs"
    assert runner.run_plan(PLAN, outputs=out, out=lambda *a: None, parallel=2) == 0
    df = results.load_csv(out / "smoke_real" / "results.csv")
    want = {"xquad": 12, "mlqa": 7, "udpos": 6, "xcopa": 11, "stsb_multi_mt": 10, "tatoeba": 41}
    for task, n in want.items():
        assert df[df.target_task == task].language.nunique() == n, task
    tat = df[(df.target_task == "tatoeba") & df.is_primary]
    assert tat.model.nunique() == 2                  # pretrained and untrained, side by side
