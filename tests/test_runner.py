"""The papermill runner on toy notebooks (tests/fixtures/runner): skip, resume, failures, collect; dry-run costs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from xfer_utils import cli, results
from xfer_utils.runner import cost, plans, execute as runner

FIX = Path(__file__).resolve().parent / "fixtures" / "runner"
TOY, TOY_FAIL = FIX / "toy.yaml", FIX / "toy_fail.yaml"


@pytest.fixture(autouse=True)
def _no_ckpt_env(monkeypatch):
    monkeypatch.delenv("XFER_CHECKPOINTS", raising=False)


class Lines(list):
    def __call__(self, *a, **k):
        self.append(" ".join(map(str, a)))

    def status_of(self, run_id: str) -> str:
        line = next(s for s in reversed(self) if f"/{run_id}  " in s)   # the last word on it
        return line.split(f"/{run_id}  ")[1].split()[0]


# ---- dry run and cost (fast) ----

def test_cost_table_is_well_formed():
    t = cost.load_table()
    assert {"a100", "h100", "l4", "t4"} <= set(t["gpus"])
    for e in t["throughput"]:
        assert e["status"] in ("derived", "measured") and cost.model_alias(e["model"], t) and e["gpu"] in t["gpus"]
        assert e["tokens_per_s"] > 0 and e["basis"]
    assert cost.model_alias("FacebookAI/xlm-roberta-large", t) == "xlmr-large"     # the ladder's name
    assert cost.model_alias("google-bert/bert-base-multilingual-cased", t) == "mbert"
    assert cost.model_alias("microsoft/infoxlm-large", t) == "infoxlm-large"        # outside the ladder


def test_the_ladder_is_the_one_model_table():
    """No model of the ladder is listed again in the throughput table; its size there comes from the ladder."""
    from xfer_utils import ladder
    t = cost.load_table()
    for name, m in t["models"].items():
        assert ladder.lookup(name) is None and not any(ladder.lookup(g) for g in m["match"] if "*" not in g), name
        assert ("like" in m) != ("non_embedding_params" in m), name
    rate, how = cost.throughput("google/mt5-xl", "a100", t)
    assert how == "derived (6N)"
    assert rate == pytest.approx(60e12 / (6 * ladder.get("mt5-xl").params_non_embedding))
    # a `like` model is priced exactly as its ladder model, explicit entries included
    assert cost.throughput("microsoft/infoxlm-large", "a100", t) == cost.throughput("xlm-roberta-large", "a100", t)
    for task in cost.TRAIN_EXAMPLES:
        assert task in cost.TOKENS_PER_EXAMPLE and task in cost.EVAL_EXAMPLES


def test_measured_beats_derived():
    t = {"gpus": {"a100": {"achieved_tflops": 60}}, "models": {"m": {"match": ["m"], "non_embedding_params": 1e8}},
         "throughput": [{"model": "m", "gpu": "a100", "tokens_per_s": 10.0, "status": "derived"},
                        {"model": "m", "gpu": "a100", "tokens_per_s": 20.0, "status": "measured"}]}
    assert cost.throughput("org/m", "a100", t) == (20.0, "measured")
    assert cost.throughput("org/m", "t4", t)[0] is None
    assert cost.throughput("other", "a100", t)[0] is None


def test_dry_run_costs_and_totals(tmp_path):
    p = tmp_path / "paperish.yaml"
    p.write_text(yaml.safe_dump({"name": "paperish", "defaults": {"model": "FacebookAI/xlm-roberta-large"},
                                 "phases": {
                                     "intermediate": {"notebook": str(FIX / "toy_intermediate.ipynb"),
                                                      "params": {"epochs": 2.0},
                                                      "grid": {"intermediate": ["mnli", "mnli+squad"]}},
                                     "target": {"notebook": str(FIX / "toy_target.ipynb"), "needs": "intermediate",
                                                "grid": {"intermediate": ["none", "mnli"], "target_task": ["xnli"]}},
                                     "results": {"notebook": str(FIX / "toy_results.ipynb"),
                                                 "after": ["intermediate", "target"]}}}))
    out = Lines()
    assert runner.run_plan(p, dry_run=True, outputs=tmp_path / "o", out=out) == 0
    assert not (tmp_path / "o").exists()
    rate = 32000.0   # throughput.yaml: xlm-roberta-large on a100, derived
    mnli = (392_702 * 2 * 45 + 9_815 * 45 / 3) / rate / 3600
    # SQuAD's tokens per example are measured with XLM-R's tokenizer (resources/token_lengths.yaml) where present
    sq_train, sq_eval = cost.tokens_per_example("squad", "train")[0], cost.tokens_per_example("squad", "eval")[0]
    squad = (87_599 * 2 * sq_train + 10_570 * sq_eval / 3) / rate / 3600
    # the toy target notebook declares epochs: 1.0 and languages [en, de] (defaults read from the notebook)
    xnli = (392_702 * 1.0 * 45 + 2 * 5_010 * 45 / 3) / rate / 3600
    want = [mnli, mnli + squad, xnli, xnli, 0.0]
    rows = [s for s in out if s.strip()[:1].isdigit()]
    assert len(rows) == 5
    for row, w in zip(rows, want):
        assert row.split()[3] == runner.fmt_hours(w)
    assert "mnli__xnli  " in rows[3] and rows[3].rstrip().endswith(" mnli")   # its dependency
    assert "after intermediate, target (4 runs)" in rows[4]
    total = next(s for s in out if s.startswith("total:"))
    assert total.startswith(f"total: {sum(want):.2f} GPU-hours on one a100")


def test_cli_errors_exit_2(tmp_path, capsys):
    assert cli.main(["run", str(TOY), "--outputs", str(tmp_path), "--launcher", "slurm"]) == 2
    assert "launcher 'slurm' is not available; valid launchers: local" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert cli.main(["run", str(TOY), "--dry-run", "--outputs", str(tmp_path / "o")]) == 0
    assert "total:" in capsys.readouterr().out


# ---- papermill execution (slow) ----

@pytest.mark.slow
def test_plan_runs_skips_resumes_and_collects(tmp_path):
    outputs = tmp_path / "outputs"
    out = Lines()
    assert runner.run_plan(TOY, outputs=outputs, out=out) == 0
    plan = plans.expand(TOY, outputs)
    for r in plan.runs:
        assert out.status_of(r.run_id) == "done"
        assert (r.run_dir / "_done.json").exists() and (r.run_dir / "notebook.ipynb").exists()
        assert yaml.safe_load((r.run_dir / "params.yaml").read_text())["run_id"] == r.run_id
    assert (tmp_path / "checkpoints" / "toy" / "tiny-model__mnli__s1" / "encoder" / "weights.txt").exists()
    assert not list(outputs.rglob("encoder"))                 # checkpoints never inside outputs/
    assert (outputs / "toy" / "figures" / "summary.txt").read_text().strip() == "11"   # results saw every row

    # second run: everything skipped, nothing executed
    out2 = Lines()
    assert runner.run_plan(TOY, outputs=outputs, out=out2) == 0
    assert all(out2.status_of(r.run_id) == "skipped" for r in plan.runs)

    # an interrupted run (folder without _done.json) executes again, and the results run (stale) with it
    t = plan.run("tiny-model__mnli__xnli__s1")
    (t.run_dir / "_done.json").unlink()
    out3 = Lines()
    assert runner.run_plan(TOY, outputs=outputs, out=out3) == 0
    assert any("resuming an interrupted run" in s for s in out3)
    assert out3.status_of(t.run_id) == "done"
    assert out3.status_of("results") == "done"
    assert out3.status_of("tiny-model__none__xnli__s1") == "skipped"

    df = results.load_csv(outputs / "toy" / "results.csv")
    assert len(df) == 11 and not df.duplicated(["run_id", "target_task", "language", "split", "metric"]).any()
    got = set(zip(df.run_id, df.language))
    want = {(r.run_id, "en") for r in plan.runs if r.phase == "intermediate"} | \
        {(r.run_id, lg) for r in plan.runs if r.phase == "target" for lg in ("en", "de", "fr")}
    assert got == want

    st = Lines()
    assert runner.status(TOY, outputs, out=st) == 0
    assert st[-1] == "plan toy: 6 done"
    (outputs / "toy" / "results.csv").unlink()
    assert cli.main(["collect", str(TOY), "--outputs", str(outputs)]) == 0
    assert len(results.load_csv(outputs / "toy" / "results.csv")) == 11


@pytest.mark.slow
def test_failed_run_is_kept_aside_and_blocks_only_its_dependents(tmp_path):
    outputs = tmp_path / "outputs"
    out = Lines()
    assert runner.run_plan(TOY_FAIL, outputs=outputs, out=out) == 1
    plan = plans.expand(TOY_FAIL, outputs)
    bad = plan.run("tiny-model__squad__s1")
    assert out.status_of(bad.run_id) == "failed"
    assert out.status_of("tiny-model__none__xnli__s1") == "done"       # after the failure, independent: ran
    assert out.status_of("tiny-model__mnli__xnli__s1") == "done"
    assert out.status_of("tiny-model__squad__xnli__s1") == "blocked"
    assert out.status_of("results") == "blocked"
    assert any(s.startswith("summary: 3 done, 0 skipped, 1 failed, 2 blocked") for s in out)

    kept = plan.failed_dir / bad.run_id
    assert not bad.run_dir.exists()                                     # no metrics.jsonl left in outputs
    assert "toy failure requested" in (kept / "error.txt").read_text()
    nb = json.loads((kept / "notebook.ipynb").read_text())
    assert any(o.get("ename") == "RuntimeError" for c in nb["cells"] for o in c.get("outputs", []))
    assert yaml.safe_load((kept / "params.yaml").read_text())["fail"] is True
    df = results.load_csv(outputs / "toy_fail" / "results.csv")
    assert bad.run_id not in set(df.run_id) and len(df) == 1 + 2 * 2

    st = Lines()
    runner.status(TOY_FAIL, outputs, out=st)
    assert st[-1] == "plan toy_fail: 3 done, 1 failed, 2 pending"
    shutil.rmtree(outputs)


# ---- several runs per GPU (runner.Placer, --runs-per-gpu) ----

def _run(run_id, model="xlmr-large", gpu_mem=None, strategy=None):
    params = {"model": model, **({"strategy": strategy} if strategy else {})}
    return plans.Run(run_id=run_id, phase="target", notebook=Path("nb.ipynb"), values={}, params=params,
                     explicit=frozenset(), resources={"gpu_mem": gpu_mem} if gpu_mem else {})


def test_placer_fills_gpus_by_memory_estimate_and_per_gpu_limit():
    """Pins placement: runs go to the least-loaded GPU while the per-GPU limit and the memory planner's estimates
    (ladder.estimate_memory_gb: ~14 GB for XLM-R large, full fine-tuning) fit the GPU; a run without an estimate
    (a model off the ladder) runs alone; nothing fits -> None (it waits); bad limits fail in one sentence."""
    p = runner.Placer(["0", "1"], per_gpu=3, capacity_gb=30)
    gpus = [p.place(_run(f"r{i}"))[0] for i in range(4)]
    assert gpus == ["0", "1", "0", "1"]                     # 2 x 14 GB per GPU; a third would pass 30 GB
    assert p.place(_run("r4")) is None
    g, line = p.place(_run("base", model="xlmr-base", gpu_mem=40))   # its own gpu_mem: 28 + 7.2 <= 40
    assert g == "0" and line.startswith("placed target/base on GPU 0 (7.2 GB estimated; GPU 0 now runs 3/3")
    p.release(_run("r0"))
    p.release(_run("r1"))
    assert p.place(_run("odd", model="Org/Unknown")) is None         # needs an empty GPU
    p.release(_run("r3"))
    g, line = p.place(_run("odd", model="Org/Unknown"))
    assert g == "1" and "no estimate: alone" in line
    assert p.place(_run("r5", model="xlmr-base")) is not None and p.held["1"] == {"odd": None}
    with pytest.raises(ValueError, match="runs per GPU must be >= 1"):
        runner.Placer(["0"], 0)
    with pytest.raises(ValueError, match="needs GPUs .* name them with --gpus"):
        runner.Placer([], 2)


@pytest.mark.slow
def test_two_tiny_runs_sharing_one_gpu_give_the_rows_of_running_them_one_by_one(world, tmp_path):
    """Pins that sharing a device changes no result: two tiny training runs (10_intermediate on tiny-xlmr-s)
    placed together on one "GPU" (--gpus 0 --runs-per-gpu 2; on CPU the id only reaches CUDA_VISIBLE_DEVICES) give
    results.csv rows equal to a sequential run's, and the runner says where it placed each."""
    repo = Path(__file__).resolve().parents[1]
    plan = tmp_path / "share.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "share", "defaults": {"model": "tiny-xlmr-s", "data_dir": "tiny", "seed": 1},
        "phases": {"intermediate": {
            "notebook": str(repo / "notebooks" / "10_intermediate.ipynb"),
            "params": {"lr": 0.003, "batch_size": 8, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2,
                       "eval_examples": 8, "max_train_examples": 16},
            "grid": {"intermediate": ["mnli", "squad"]}}}}, sort_keys=False))
    tables = {}
    for mode in ("sequential", "shared"):
        out = Lines()
        kw = {"runs_per_gpu": 2, "gpus": "0"} if mode == "shared" else {}
        assert runner.run_plan(plan, outputs=tmp_path / mode / "outputs", out=out, **kw) == 0, "\n".join(out)
        if mode == "shared":
            placed = [s for s in out if s.startswith("placed ")]
            assert len(placed) == 2 and all(" on GPU 0 " in s for s in placed)
            assert "GPU 0 now runs 2/2" in placed[1]                 # both at once on the one device
        df = results.load_csv(tmp_path / mode / "outputs" / "share" / "results.csv")
        tables[mode] = df.drop(columns=["created_at"])     # when a row was written: the one column that may differ
    a = tables["sequential"].sort_values(list(tables["sequential"].columns[:6])).reset_index(drop=True)
    b = tables["shared"].sort_values(list(tables["shared"].columns[:6])).reset_index(drop=True)
    assert len(a) >= 2
    import pandas as pd
    pd.testing.assert_frame_equal(a, b)
