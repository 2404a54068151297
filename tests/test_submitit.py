"""`xfer run PLAN --launcher submitit`: one job per run. Through submitit's local executor the toy plan ends with
the results table of the local launcher, with the same skip and failure rules; on Slurm (sbatch mocked by
submitit's own test helper) every run is one sbatch job with the plan's resources and afterok dependencies."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from xfer_utils.runner import plans, execute as runner
from xfer_utils import results

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_runner import FIX, TOY, TOY_FAIL, Lines, _no_ckpt_env  # noqa: E402,F401  (shared with test_runner)

submitit = pytest.importorskip("submitit")


def _table(outputs: Path):
    df = results.load_csv(outputs / "toy" / "results.csv").drop(columns=["git_sha", "created_at"])
    df["init_from"] = df["init_from"].str.replace(str(outputs.parent), "<root>", regex=False)
    return df.sort_values(["run_id", "target_task", "language", "metric"]).reset_index(drop=True)


@pytest.mark.slow
def test_submitit_local_executor_gives_the_local_launchers_table(tmp_path):
    local, sub = tmp_path / "a" / "outputs", tmp_path / "b" / "outputs"
    assert runner.run_plan(TOY, outputs=local, out=Lines()) == 0
    out = Lines()
    assert runner.run_plan(TOY, outputs=sub, launcher="submitit", cluster="local", parallel=3, out=out) == 0
    plan = plans.expand(TOY, sub)
    for r in plan.runs:
        assert out.status_of(r.run_id) == "done"
        assert (r.run_dir / "_done.json").exists() and (r.run_dir / "params.yaml").exists()
    # dependency order: a target run is submitted only after its intermediate run finished
    idx = {s: i for i, s in enumerate(out)}
    done_mnli = next(i for s, i in idx.items() if "intermediate/tiny-model__mnli__s1  done" in s)
    sub_target = next(i for s, i in idx.items() if "target/tiny-model__mnli__xnli__s1  submitted" in s)
    assert done_mnli < sub_target
    assert len(list((sub / "toy" / "_submitit").glob("*/*_result.pkl"))) == 6     # one job per run
    a, b = _table(local), _table(sub)
    assert len(a) == 11
    assert a.equals(b), (a.compare(b) if a.shape == b.shape else (a.shape, b.shape))
    assert (sub / "toy" / "figures" / "summary.txt").read_text().strip() == "11"   # results job saw every row

    # same skip rules: finished runs are not submitted again (resume and staleness: see the Slurm tests below,
    # which share runner._decide with the local launcher)
    again = Lines()
    assert runner.run_plan(TOY, outputs=sub, launcher="submitit", cluster="local", out=again) == 0
    assert all(again.status_of(r.run_id) == "skipped" for r in plan.runs) and not any("submitted" in s for s in again)


@pytest.mark.slow
def test_a_failed_job_is_a_failed_run_and_blocks_its_dependents(tmp_path):
    out = Lines()      # the failing intermediate run and its target run (one job: the target is never submitted)
    assert runner.run_plan(TOY_FAIL, only="tiny-model__squad__xnli__s1", outputs=tmp_path / "o", launcher="submitit",
                           cluster="local", out=out) == 1
    assert out.status_of("tiny-model__squad__s1") == "failed"
    assert any("failed" in s and "RuntimeError: toy failure requested for tiny-model__squad__s1" in s for s in out)
    assert out.status_of("tiny-model__squad__xnli__s1") == "blocked"
    assert any(s.startswith("summary: 0 done, 0 skipped, 1 failed, 1 blocked") for s in out)
    failed = tmp_path / "o" / "toy_fail" / "_failed" / "tiny-model__squad__s1"
    assert (failed / "error.txt").exists() and (failed / "notebook.ipynb").exists()
    assert not (tmp_path / "o" / "toy_fail" / "intermediate" / "tiny-model__squad__s1").exists()


# ---- Slurm, with sbatch mocked (fast) ----

def _slurm_plan(tmp_path: Path) -> Path:
    raw = yaml.safe_load(TOY.read_text())
    for ph in raw["phases"].values():
        ph["notebook"] = str(FIX / ph["notebook"])
    raw["resources"] = {"gpus": 1, "mem": "64G", "time": "12:00:00", "partition": "gpu", "cpus": 8,
                        "slurm": {"account": "nlp"}}
    raw["phases"]["results"]["resources"] = {"gpus": 0, "time": 30, "mem": 16}
    p = tmp_path / "toy.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _sbatch(outputs: Path) -> dict[str, dict]:
    """job id -> {sbatch option: value} of every submitted job, keyed by the run id in the job name too."""
    jobs = {}
    for f in (outputs / "toy" / "_submitit").rglob("*_submission.sh"):
        opts = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", f.read_text(), re.M))
        jobs[opts["job-name"].removeprefix("xfer-toy-")] = opts
    return jobs


def test_slurm_jobs_carry_resources_and_afterok_dependencies(tmp_path):
    from submitit.slurm.test_slurm import mocked_slurm
    plan_file, outputs = _slurm_plan(tmp_path), tmp_path / "outputs"
    out = Lines()
    with mocked_slurm():
        assert runner.run_plan(plan_file, outputs=outputs, launcher="submitit", cluster="slurm", wait=False,
                               out=out) == 0
    assert out[-1].startswith("submitted 6 jobs (0 already queued); follow them with `xfer status")
    ids = {m.group(1): m.group(2) for s in out for m in [re.search(r"/(\S+)  submitted \(job (\d+)", s)] if m}
    jobs = _sbatch(outputs)
    assert set(jobs) == set(ids) and len(ids) == 6
    inter = jobs["tiny-model__mnli__s1"]
    assert (inter["gpus-per-node"], inter["mem"], inter["time"], inter["partition"], inter["cpus-per-task"],
            inter["account"]) == ("1", "64GB", "720", "gpu", "8", "nlp")
    assert "dependency" not in inter and "dependency" not in jobs["tiny-model__none__xnli__s1"]   # the baseline
    t = jobs["tiny-model__mnli__xnli__s1"]
    assert t["dependency"] == f"afterok:{ids['tiny-model__mnli__s1']}" and t["kill-on-invalid-dep"] == "yes"
    res = jobs["results"]
    assert sorted(res["dependency"].removeprefix("afterok:").split(":")) == sorted(
        v for k, v in ids.items() if k != "results")
    assert (res["time"], res["mem"]) == ("30", "16GB") and "gpus-per-node" not in res
    # `xfer run` again while the jobs are queued: nothing is submitted twice
    again = Lines()
    with mocked_slurm() as mock:
        for job_id in ids.values():
            mock.set_job_state(job_id, "PENDING")
        assert runner.run_plan(plan_file, outputs=outputs, launcher="submitit", cluster="slurm", wait=False,
                               out=again) == 0
    assert all(again.status_of(rid) == "already" for rid in ids) and len(_sbatch(outputs)) == 6


def test_slurm_skips_finished_runs_and_resubmits_their_stale_dependents(tmp_path):
    from submitit.slurm.test_slurm import mocked_slurm
    plan_file, outputs = _slurm_plan(tmp_path), tmp_path / "outputs"
    plan = plans.validate(plans.expand(plan_file, outputs))
    for rid, t in (("tiny-model__mnli__s1", 1.0), ("tiny-model__mnli__xnli__s1", 3.0),
                   ("tiny-model__squad__xnli__s1", 3.0)):
        r = plan.run(rid)
        r.run_dir.mkdir(parents=True)
        (r.run_dir / "_done.json").write_text(json.dumps({"started_ts": t, "finished_ts": t + 1}))
    out = Lines()
    with mocked_slurm():
        assert runner.run_plan(plan_file, outputs=outputs, launcher="submitit", cluster="slurm", wait=False,
                               out=out) == 0
    assert out.status_of("tiny-model__mnli__s1") == "skipped"
    assert out.status_of("tiny-model__mnli__xnli__s1") == "skipped"      # its upstream is done and older
    assert out.status_of("tiny-model__squad__xnli__s1") == "submitted"   # its upstream re-runs: stale
    jobs = _sbatch(outputs)
    assert set(jobs) == {"tiny-model__squad__s1", "tiny-model__none__xnli__s1", "tiny-model__squad__xnli__s1",
                         "results"}
    ids = {m.group(1): m.group(2) for s in out for m in [re.search(r"/(\S+)  submitted \(job (\d+)", s)] if m}
    assert jobs["tiny-model__squad__xnli__s1"]["dependency"] == f"afterok:{ids['tiny-model__squad__s1']}"
    assert sorted(jobs["results"]["dependency"].removeprefix("afterok:").split(":")) == sorted(
        ids[k] for k in ("tiny-model__squad__s1", "tiny-model__none__xnli__s1", "tiny-model__squad__xnli__s1"))


def test_job_parameters_and_cli(tmp_path, capsys):
    plan = plans.expand(_slurm_plan(tmp_path), tmp_path / "o")
    p = runner.job_parameters(plan, plan.run("tiny-model__mnli__s1"), "slurm")
    assert p == {"name": "xfer-toy-tiny-model__mnli__s1", "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 1,
                 "timeout_min": 720, "mem_gb": 64.0, "cpus_per_task": 8, "slurm_partition": "gpu"}
    plain = plans.expand(TOY, tmp_path / "o2")
    p = runner.job_parameters(plain, plain.runs[0], "local")
    assert p["timeout_min"] == runner.LOCAL_TIMEOUT_MIN and "gpus_per_node" in p   # local: no 2-minute kill
    from xfer_utils import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(TOY), "--outputs", str(tmp_path / "x"), "--launcher", "submitit", "--cluster", "pbs"])
    assert e.value.code == 2 and "invalid choice: 'pbs'" in capsys.readouterr().err
