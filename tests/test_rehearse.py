"""`xfer rehearse`: a plan's real structure on the tiny world (xfer_utils/runner/rehearse.py). The transformation keeps run
ids, grid values and dependencies and changes only model, data and scale; the cover keeps every grid value; a
failing run is named with its exception line and the command exits non-zero; a small plan runs end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xfer_utils import cli
from xfer_utils.runner import plans, rehearse, execute as runner

REPO = Path(__file__).resolve().parents[1]
PLANS = sorted((REPO / "params" / "plans").glob("*.yaml"))
FIX = Path(__file__).resolve().parent / "fixtures" / "runner"


@pytest.fixture(autouse=True)
def _no_ckpt_env(monkeypatch):
    monkeypatch.delenv("XFER_CHECKPOINTS", raising=False)


def _both(path, tmp_path, use_cover=False):
    real = plans.expand(path, tmp_path / "outputs")
    reh = rehearse.transform(plans.expand(path, tmp_path / "outputs" / "rehearsal"), use_cover)
    return real, reh


# ---- the transformation ----

def test_paper_plan_maps_models_data_and_scale_and_keeps_run_ids(tmp_path):
    real, reh = _both(REPO / "params" / "plans" / "paper.yaml", tmp_path)
    assert [r.run_id for r in reh.runs] == [r.run_id for r in real.runs]          # a failure names the real run
    assert [r.values for r in reh.runs] == [r.values for r in real.runs]          # grid values untouched
    assert [r.needs for r in reh.runs] == [r.needs for r in real.runs]
    root = tmp_path / "outputs" / "rehearsal"
    for r in reh.runs:
        p = r.params
        assert Path(p["run_dir"]).is_relative_to(root / "paper")
        assert Path(p["checkpoint_dir"]) == root / "_checkpoints" / "paper" / r.run_id
        if p.get("init_from"):
            assert p["init_from"] == str(root / "_checkpoints" / "paper" / r.upstream / "encoder")
        assert p["model"] == "tiny-xlmr-s" and p["data_dir"] == "tiny"
        assert p["max_steps"] == rehearse.CAPS["max_steps"] and p["lr"] == rehearse.LR
        assert p["max_train_examples"] == rehearse.CAPS["max_train_examples"]
        assert p["per_device_batch"] == 4 < p["batch_size"]        # gradient accumulation still runs
        assert all(p[k] == v for k, v in r.values.items() if k != "model")
    # retrieval at the real model's relative depth: hidden_states[14] of 24 -> 1 of the tiny model's 2 layers
    # (the paper plan leaves the layer to the ladder: runs.retrieval asks ladder.retrieval_layer of the tiny model)
    from xfer_utils import ladder
    assert all(not r.params.get("layer") for r in reh.runs if r.phase == "retrieval")
    assert ladder.retrieval_layer("tiny-xlmr-s", 2)[0] == 1
    assert rehearse.rehearsal_params({"model": "FacebookAI/xlm-roberta-large", "layer": 14})["layer"] == 1
    results_run = reh.run("results")
    assert results_run.params["results_csv"] == str(root / "paper" / "results.csv")
    plans.validate(reh)                       # the rehearsal params are what the notebooks declare, typed right


def test_strategy_is_the_real_models_on_the_plans_gpus(tmp_path):
    """rq_size: 1 x 80 GB GPUs; XLM-R XXL needs LoRA there, XLM-R base fits as is: the tiny stand-ins get those."""
    real, reh = _both(REPO / "params" / "plans" / "rq_size.yaml", tmp_path)
    strat = {r.run_id: r.params.get("strategy") for r in reh.runs if r.phase == "intermediate"}
    assert strat == {r.run_id: r.params.get("strategy") for r in real.runs if r.phase == "intermediate"}
    assert strat["xlm-roberta-xxl__mnli__s1"] == "lora" and strat["xlm-roberta-base__mnli__s1"] == "full"
    # each real model's stand-in is the tiny model of its architecture family (tiny_families.FAMILY_MODELS)
    stand_in = {r.values.get("model", r.params.get("model")): r.params["model"] for r in reh.runs
                if "model" in r.params}
    real_model = {r.run_id: r.params["model"] for r in real.runs if "model" in r.params}
    tiny_model = {r.run_id: r.params["model"] for r in reh.runs if "model" in r.params}
    expect = {"xlmr-base": "tiny-xlmr-s", "xlmr-large": "tiny-xlmr-s", "xlmr-xl": "tiny-xlmr-xl",
              "xlmr-xxl": "tiny-xlmr-xl", "mbert": "tiny-bert", "distilmbert": "tiny-distilbert",
              "mdeberta-v3-base": "tiny-deberta", "rembert": "tiny-rembert"}
    from xfer_utils import ladder
    for rid, m in real_model.items():
        name = ladder.lookup(m).name
        if name in expect:
            assert tiny_model[rid] == expect[name], (rid, m)
        elif ladder.lookup(m).family == "mt5-encoder":
            assert tiny_model[rid] == "tiny-mt5", (rid, m)
    assert {"tiny-xlmr-s", "tiny-bert", "tiny-mt5"} <= set(stand_in.values())


def test_scale_caps_keep_smaller_values_and_replace_defaults():
    p = rehearse.rehearsal_params({"model": "tiny-xlmr-m", "max_steps": 3, "eval_every": 0, "max_train_examples": -1,
                                   "n_processes": 4, "per_device_batch": 0, "lr": 1e-5})
    assert p["model"] == "tiny-xlmr-m"                      # a tiny-world model stays itself
    assert p["max_steps"] == 3 and p["eval_every"] == rehearse.CAPS["eval_every"]
    assert p["max_train_examples"] == rehearse.CAPS["max_train_examples"]
    assert p["n_processes"] == 2 and p["per_device_batch"] == 0 and p["lr"] == rehearse.LR


# ---- the cover ----

@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_cover_has_every_grid_value_is_closed_and_smaller(path, tmp_path):
    plan = plans.expand(path, tmp_path / "o")
    chosen = rehearse.cover(plan)
    ids = {r.run_id for r in chosen}
    for ph in plan.phases:
        want = {(k, json.dumps(v, sort_keys=True)) for r in plan.runs if r.phase == ph for k, v in r.values.items()}
        got = {(k, json.dumps(v, sort_keys=True)) for r in chosen if r.phase == ph for k, v in r.values.items()}
        assert got == want, ph
        assert any(r.phase == ph for r in chosen), ph              # every phase, analyses included
    assert all(r.upstream in ids for r in chosen if r.upstream)     # needs: closed
    assert len(chosen) < len(plan.runs) or len(plan.runs) <= len(plan.phases) + 2
    reh = rehearse.transform(plans.expand(path, tmp_path / "r"), use_cover=True)
    assert [r.run_id for r in reh.runs] == [r.run_id for r in chosen]
    assert all(set(r.needs) <= ids for r in reh.runs)               # after: only what the cover runs


def test_paper_cover_size_and_every_task_on_the_baseline(tmp_path):
    """16 intermediate setups, 17 x 7 targets, 17 x 2 retrieval runs: one run per intermediate label and phase, plus
    each target and retrieval task once on the raw model (so a failing intermediate setup hides no task):
    16 + (7 + 16) + (2 + 16) + 1 of 170."""
    plan = plans.expand(REPO / "params" / "plans" / "paper.yaml", tmp_path)
    chosen = rehearse.cover(plan)
    assert len(plan.runs) == 170 and len(chosen) == 58
    base = [r for r in chosen if r.values.get("intermediate") == "none"]
    assert {r.values["target_task"] for r in base if r.phase == "target"} == {
        "xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa"}
    assert {r.values["task"] for r in base if r.phase == "retrieval"} == {"bucc2018", "tatoeba"}


# ---- failures and exit code (toy notebooks: no training) ----

def test_failed_run_is_named_with_its_exception_and_exit_is_nonzero(tmp_path, capsys):
    rc = cli.main(["rehearse", str(FIX / "toy_fail.yaml"), "--outputs", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = [x for x in out.splitlines() if x.startswith("FAILED ")]
    assert lines == ["FAILED intermediate/tiny-model__squad__s1: RuntimeError: toy failure requested for "
                     "tiny-model__squad__s1"]
    root = tmp_path / "rehearsal"
    plan = plans.expand(FIX / "toy_fail.yaml", root)
    assert runner.run_state(plan, plan.run("tiny-model__mnli__xnli__s1")) == "done"   # its encoder was found
    params = yaml.safe_load((root / "toy_fail" / "target" / "tiny-model__mnli__xnli__s1" / "params.yaml").read_text())
    assert params["init_from"] == str(root / "_checkpoints" / "toy_fail" / "tiny-model__mnli__s1" / "encoder")
    assert params["model"] == "tiny-xlmr-s"
    assert not (tmp_path / "toy_fail").exists() and not (tmp_path / "checkpoints").exists()   # nothing real touched


def test_rehearsal_starts_clean_unless_resumed(tmp_path):
    lines: list[str] = []
    assert rehearse.rehearse(FIX / "toy.yaml", use_cover=True, outputs=tmp_path, out=lines.append) == 0
    assert any("done" in x for x in lines)
    again: list[str] = []
    assert rehearse.rehearse(FIX / "toy.yaml", use_cover=True, outputs=tmp_path, resume=True, out=again.append) == 0
    assert sum("  skipped (" in x for x in again) == 6 and not any("  done (" in x for x in again)
    fresh: list[str] = []
    assert rehearse.rehearse(FIX / "toy.yaml", use_cover=True, outputs=tmp_path, out=fresh.append) == 0
    assert sum("  done (" in x for x in fresh) == 6 and not any("  skipped (" in x for x in fresh)


@pytest.mark.slow
def test_tiny_world_is_built_before_parallel_kernels_start(tmp_path, monkeypatch):
    """On a fresh clone two parallel kernels would both start building .cache/tiny in the same folder (each
    removing the other's files): the rehearsal builds it first, in one process."""
    monkeypatch.setenv("XFER_TINY_DIR", str(tmp_path / "world"))
    seen = []
    monkeypatch.setattr(runner, "run_plan", lambda *a, **k: seen.append((tmp_path / "world" / "world.json").exists())
                        or 0)
    assert rehearse.rehearse(FIX / "toy.yaml", outputs=tmp_path / "o", out=lambda *a: None) == 0
    assert seen == [True]


# ---- end to end on the tiny world ----

@pytest.mark.slow
def test_small_plan_rehearses_end_to_end_with_lora(world, tmp_path):
    """A GPU plan (XLM-R XXL on one 80 GB GPU: the planner picks LoRA) rehearses on the tiny model: intermediate,
    baseline and transfer target, results notebook; LoRA trains the tiny encoder; exit 0; rows per run."""
    plan = tmp_path / "gpu_plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "gpu_plan", "defaults": {"model": "facebook/xlm-roberta-xxl", "data_dir": "", "seed": 1},
        "resources": {"gpus": 1, "gpu_mem": 80},
        "phases": {
            "intermediate": {"notebook": str(REPO / "notebooks" / "10_intermediate.ipynb"),
                             "grid": {"intermediate": ["mnli"]}},
            "target": {"notebook": str(REPO / "notebooks" / "20_target.ipynb"), "needs": "intermediate",
                       "params": {"languages": ["en", "de"]},
                       "grid": {"intermediate": ["none", "mnli"], "target_task": ["xnli"]}},
            "results": {"notebook": str(REPO / "notebooks" / "40_results.ipynb"), "after": ["intermediate", "target"]},
        }}, sort_keys=False))
    lines: list[str] = []
    rc = rehearse.rehearse(plan, use_cover=True, outputs=tmp_path / "out", out=lines.append)
    assert rc == 0, "\n".join(lines)
    d = tmp_path / "out" / "rehearsal" / "gpu_plan"
    log = (d / "intermediate" / "mnli" / "notebook.log").read_text()
    assert "strategy: lora" in log
    import pandas as pd
    df = pd.read_csv(d / "results.csv")
    assert set(df["run_id"]) == {"mnli", "none__xnli", "mnli__xnli"}
    assert set(df["model"]) == {"tiny-xlmr-xl"}                # XLM-R XXL's family: the XL/XXL class


@pytest.mark.slow
def test_fsdp_strategy_rehearses_over_cpu_processes(world, tmp_path):
    """XLM-R XXL on 4 x 80 GB GPUs: the planner picks FSDP; the rehearsal shards the tiny model with FSDP2 over 2 CPU
    processes (launch._fsdp_on_cpu) and the run finishes with its encoder saved."""
    plan = tmp_path / "fsdp_plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "fsdp_plan", "defaults": {"model": "facebook/xlm-roberta-xxl", "data_dir": "", "seed": 1},
        "resources": {"gpus": 4, "gpu_mem": 80},
        "phases": {"intermediate": {"notebook": str(REPO / "notebooks" / "10_intermediate.ipynb"),
                                    "grid": {"intermediate": ["mnli"]}}}}, sort_keys=False))
    lines: list[str] = []
    rc = rehearse.rehearse(plan, outputs=tmp_path / "out", out=lines.append)
    assert rc == 0, "\n".join(lines)
    d = tmp_path / "out" / "rehearsal" / "fsdp_plan" / "intermediate" / "mnli"
    assert yaml.safe_load((d / "params.yaml").read_text())["n_processes"] == 2
    log = (d / "notebook.log").read_text()
    assert "strategy: fsdp; 2 processes with accelerate config fsdp_full_shard" in log
    assert "sharded over 2 processes" in log
    assert (tmp_path / "out" / "rehearsal" / "_checkpoints" / "fsdp_plan" / "mnli" / "encoder").is_dir()
