"""The notebooks and plans: lint (one typed `parameters` cell, no stored outputs, every parameter visible to
papermill), every plan expands and validates, and (slow) papermill runs on the tiny world: a plan runs, a second
run skips everything, a run killed halfway resumes to a results table with no duplicate and no missing rows."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from xfer_utils.runner import plans, execute as runner

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PLANS = sorted((REPO / "params" / "plans").glob("*.yaml"))
MINI = REPO / "tests" / "fixtures" / "plans" / "mini.yaml"
PHASE_PARAMS = {"run_id", "plan", "run_dir", "checkpoint_dir"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_typed_parameters_cell_and_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
    for ln in lines:
        assert ": " in ln.split("=")[0] and "  # " in ln, f"untyped or undocumented parameter: {ln!r}"
    seen = papermill.inspect_notebook(str(path))
    assert len(seen) == len(lines), "papermill cannot see every parameter (a second '=' on the line?)"
    assert PHASE_PARAMS <= set(seen), "the runner sets run_id, plan, run_dir and checkpoint_dir"
    assert not any(c.source.lstrip().startswith("def ") for c in nb.cells if c.cell_type == "code"), \
        "no logic that lives only in a notebook"


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_every_plan_expands_and_validates(path, tmp_path):
    plan = plans.validate(plans.expand(path, tmp_path))
    assert plan.runs and len({r.run_id for r in plan.runs}) == len(plan.runs)
    for r in plan.runs:
        for d in r.needs:
            assert d in {x.run_id for x in plan.runs}


def test_smoke_plan_covers_the_study():
    plan = plans.expand(REPO / "params/plans/smoke.yaml", "outputs")
    targets = {r.params.get("target_task") for r in plan.runs if r.phase.startswith("target")}
    assert {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "xcopa", "stsb_multi_mt"} <= targets
    inter = {r.params["intermediate"] for r in plan.runs if r.phase == "intermediate"}
    assert {"mnli", "squad", "mnli+squad", "mnli+mlm"} <= inter         # single, multi-task, MLM co-training
    assert {r.params.get("task") for r in plan.runs if r.phase == "retrieval"} == {"bucc2018", "tatoeba"}
    assert {r.params.get("model") for r in plan.runs if "model" in r.params} >= {"tiny-xlmr-s", "tiny-xlmr-m"}
    assert {r.phase for r in plan.runs} >= {"results", "rq_size", "rq_data", "rq_difficulty"}


def test_bad_plan_params_fail_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINI.read_text().replace("max_steps: 20, eval_every: 10", "max_stepz: 20, eval_every: 10"))
    with pytest.raises(ValueError, match="max_stepz"):
        runner.run_plan(bad, outputs=tmp_path / "out", out=lambda *a: None)
    assert not (tmp_path / "out" / "mini").exists() or not any((tmp_path / "out" / "mini").rglob("notebook.ipynb"))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(MINI.read_text().replace("max_steps: 20, eval_every: 10", "max_steps: many, eval_every: 10"))
    with pytest.raises(ValueError, match="max_steps"):
        runner.run_plan(wrong, outputs=tmp_path / "out2", out=lambda *a: None)


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [("00_environment", {}),
                                          ("01_colab", {"plan": "params/plans/paper.yaml", "use_drive": False})])
def test_standalone_notebooks_execute(world, tmp_path, name, params):
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                               cwd=str(REPO), kernel_name="python3", progress_bar=False)
    text = out.read_text()
    assert "Traceback" not in text
    if name == "01_colab":
        assert "GPU-hours" in text and "exit code 0" in text


def _xfer(*args, env):
    return subprocess.Popen([sys.executable, "-m", "xfer_utils.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_plan_runs_skips_when_done_and_resumes_after_a_kill(world, tmp_path):
    env = {**os.environ, "XFER_TINY_DIR": str(world["root"]), "XFER_CHECKPOINTS": str(tmp_path / "ckpt")}
    outputs = tmp_path / "out"
    p = _xfer("run", str(MINI), "--outputs", str(outputs), env=env)
    # Kill the whole runner (and its kernel) once the intermediate run is finished and a target run is underway.
    deadline = time.time() + 300
    while not list((outputs / "mini" / "target").glob("*/params.yaml")):
        assert p.poll() is None, p.stdout.read()
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    first = _xfer("run", str(MINI), "--outputs", str(outputs), env=env)
    log, _ = first.communicate(timeout=600)
    assert first.returncode == 0, log
    assert "tiny-xlmr-s__mnli__s1  skipped" in log            # the finished intermediate run is not redone
    assert "resuming an interrupted run" in log               # the killed target run is picked up again
    again = _xfer("run", str(MINI), "--outputs", str(outputs), env=env)
    log2, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and log2.count("  skipped (done") == 6, log2      # the second run executes nothing

    df = pd.read_csv(outputs / "mini" / "results.csv")
    key = ["run_id", "target_task", "language", "split", "metric"]
    assert not df.duplicated(key).any()
    xnli = df[(df.phase == "target") & (df.metric == "accuracy")]
    for split in ("validation", "test"):          # phase 3 scores dev and test (20_target's eval_splits)
        per_run = xnli[xnli.split == split].groupby("run_id").language.apply(sorted).tolist()
        assert sorted(per_run) == [["de", "en", "th", "zh"]] * 2, split
    tat = df[(df.phase == "retrieval") & df.is_primary]
    assert len(tat) == 4 and set(tat.language) == {"de", "th"}
    assert set(df[df.phase == "intermediate"].metric) == {"accuracy"}
    assert (outputs / "mini" / "results" / "results" / "notebook.ipynb").exists()
    done = json.loads((outputs / "mini" / "intermediate" / "tiny-xlmr-s__mnli__s1" / "_done.json").read_text())
    assert done["phase"] == "intermediate"
