"""A result always comes from the settings it records (issue 15): checkpoint identity, one runner per plan, safe
concurrent writers, honest collection, and errors a user can act on. Each test first reproduces the failure the
issue describes, on the tiny world or on toy notebooks."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xfer_utils import cli, files, identity, results, scoring, train
from xfer_utils.runner import plans, execute as runner, validate
from xfer_utils.phases import runs

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "runner"
QUIET = dict(log=lambda m: None)


@pytest.fixture(autouse=True)
def _no_ckpt_env(monkeypatch):
    monkeypatch.delenv("XFER_CHECKPOINTS", raising=False)


class Lines(list):
    def __call__(self, *a, **k):
        self.append(" ".join(map(str, a)))


def _target(world, tmp_path, run_dir, ckpt, init_from="", intermediate="none", lr=3e-3, **kw):
    return runs.target(str(world["tiny-xlmr-s"]), "xnli", run_id="r", plan="manual", run_dir=str(run_dir),
                       checkpoint_dir=str(ckpt), init_from=init_from, intermediate=intermediate, languages=["de"],
                       data_dir=str(world["data"]), max_train_examples=48, max_eval_examples=16, lr=lr,
                       max_steps=4, eval_every=4, checkpoint_every=2, batch_size=8, epochs=1.0, model_label="tiny",
                       **QUIET, **kw)


# ---- 1. checkpoint identity ----

def test_changed_lr_after_deleting_the_run_folder_never_reports_the_old_model(world, tmp_path):
    """The runner's advice after a param change was 'delete <run_dir> to redo': the checkpoint folder still held
    the old lr's finished training, and train() returned it. Now the folder's digest differs: refused, naming
    the folder and the differing setting; the same settings reuse it (and the digest is in rows and summary)."""
    run_dir, ckpt = tmp_path / "out" / "r", tmp_path / "ckpt" / "r"
    first = _target(world, tmp_path, run_dir, ckpt, lr=3e-3)
    digest = first["train"]["identity"]
    assert len(digest) == 16 and json.loads((ckpt / "identity.json").read_text())["digest"] == digest
    assert {r["weights_digest"] for r in results.read_rows(run_dir / "metrics.jsonl")} == {digest}
    assert json.loads((ckpt / "train_done.json").read_text())["identity"] == digest
    shutil.rmtree(run_dir)
    with pytest.raises(ValueError) as e:
        _target(world, tmp_path, run_dir, ckpt, lr=1e-3)
    msg = str(e.value)
    assert str(ckpt) in msg and "lr 0.003 -> 0.001" in msg and "delete" in msg
    assert not (run_dir / "metrics.jsonl").exists()            # no row with the old model's numbers
    again = _target(world, tmp_path, run_dir, ckpt, lr=3e-3)    # same settings: the finished training is reused
    assert again["train"]["identity"] == digest and again["train"]["steps"] == first["train"]["steps"]


def test_a_data_cap_change_is_a_different_checkpoint(world, tokenizer, tmp_path):
    """Task data enters the digest by content: a different cap (other training examples) is refused too."""
    from xfer_utils import models
    cfg = train.TrainConfig(lr=3e-3, epochs=1, max_steps=2, batch_size=8, eval_every=2, patience=0,
                            checkpoint_every=0, seed=1)
    for n in (32, 40):
        td = runs._task_data("mnli", "en", tokenizer, world["data"], n, 16, 1, 64)
        net, _ = models.build(str(world["tiny-xlmr-s"]), runs._heads([td], tokenizer), seed=1)
        if n == 32:
            train.train(net, tokenizer, [td], cfg, tmp_path / "c", progress=False, **QUIET)
        else:
            with pytest.raises(ValueError, match=r"task:mnli \(.*n_train.*train.*differ\)"):
                train.train(net, tokenizer, [td], cfg, tmp_path / "c", progress=False, **QUIET)


def test_checkpoint_without_identity_record_is_not_reused(tmp_path):
    (tmp_path / "train_done.json").write_text("{}")
    with pytest.raises(ValueError, match="without an identity record"):
        identity.check_checkpoint(tmp_path, "abc", {"lr": 1.0})


def test_sibling_outputs_folders_do_not_share_checkpoints(tmp_path):
    """`--outputs outputs2` next to `outputs` shared `<parent>/checkpoints` and reused all of it."""
    a = plans.expand(FIX / "toy.yaml", tmp_path / "outputs")
    b = plans.expand(FIX / "toy.yaml", tmp_path / "outputs2")
    assert a.checkpoint_root == tmp_path / "checkpoints"          # the documented default is unchanged
    assert b.checkpoint_root == tmp_path / "outputs2_checkpoints"
    ca, cb = {r.checkpoint_dir for r in a.runs}, {r.checkpoint_dir for r in b.runs}
    assert not any(x == y or x in y.parents or y in x.parents for x in ca for y in cb)
    assert {r.params["init_from"] for r in b.runs if r.params.get("init_from")} <= {
        str(c / "encoder") for c in cb}


def test_hand_run_baseline_after_a_hand_run_mnli_target(world, tmp_path, monkeypatch):
    """Hand runs (papermill without the runner) with run_paths defaults: a 20_target run with init_from an MNLI
    encoder but the default `intermediate: none` has the baseline's run id, hence its checkpoint folder. It is
    refused (its label would be wrong), and even a run that slipped through before (a checkpoint trained from
    the MNLI encoder in the baseline's folder) is never loaded by the real baseline."""
    monkeypatch.setenv("XFER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    _, _, inter_ckpt = files.run_paths("intermediate", "", "manual", str(tmp_path / "o" / "i"), "", "tiny__mnli__s1")
    runs.intermediate(str(world["tiny-xlmr-s"]), "mnli", run_id="tiny__mnli__s1", plan="manual",
                      run_dir=str(tmp_path / "o" / "i"), checkpoint_dir=inter_ckpt, data_dir=str(world["data"]),
                      max_train_examples=48, max_steps=4, eval_every=4, batch_size=8, lr=3e-3, eval_examples=16,
                      model_label="tiny", **QUIET)
    encoder = str(Path(inter_ckpt) / "encoder")
    assert identity.encoder_record(encoder)["intermediate"] == "mnli"
    rid = "tiny__none__xnli__s1"                 # 20_target's default id for intermediate 'none'
    _, run_dir, ckpt = files.run_paths("target", "", "manual", str(tmp_path / "o" / "t"), "", rid)
    with pytest.raises(ValueError, match="encoder trained on intermediate 'mnli'.*-p intermediate mnli"):
        _target(world, tmp_path, run_dir, ckpt, init_from=encoder)
    # what an unchecked hand run left behind: the MNLI-initialised target in the baseline's checkpoint folder
    _target(world, tmp_path, tmp_path / "o" / "mislabelled", ckpt, init_from=encoder, intermediate="mnli")
    with pytest.raises(ValueError) as e:
        _target(world, tmp_path, run_dir, ckpt)          # the real baseline
    assert str(ckpt) in str(e.value) and "init" in str(e.value)
    with pytest.raises(ValueError, match="init_from is empty"):
        _target(world, tmp_path, run_dir, tmp_path / "other", intermediate="mnli")


# ---- 2. one runner per plan; concurrent writers ----

def _sleepy_plan(tmp_path, seconds=3.0) -> Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('run_id: str = "x"  # set by the runner\nplan: str = "p"  # set by the runner\n'
                                  'run_dir: str = ""  # set by the runner\ncheckpoint_dir: str = ""  # runner')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "sleepy.ipynb")
    plan = tmp_path / "sleepy.yaml"
    plan.write_text(yaml.safe_dump({"name": "sleepy", "phases": {"nap": {"notebook": "sleepy.ipynb"}}}))
    return plan


def test_two_runners_started_seconds_apart(tmp_path):
    """The second `xfer run` re-executed every run the first was executing. Now it exits at once naming the
    holder; `xfer status` says 'running' (not 'interrupted'); after a kill -9 the stale lock is taken over."""
    plan_path, outputs = _sleepy_plan(tmp_path), tmp_path / "outputs"
    code = (f"import sys; from xfer_utils.runner import execute as runner; "
            f"sys.exit(runner.run_plan({str(plan_path)!r}, outputs={str(outputs)!r}))")
    first = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    run_dir = outputs / "sleepy" / "nap" / "nap"
    deadline = time.time() + 60
    while not (run_dir / runner.RUNNING).exists():
        assert first.poll() is None and time.time() < deadline, first.stdout.read() if first.poll() else ""
        time.sleep(0.1)
    out = Lines()
    t0 = time.time()
    assert runner.run_plan(plan_path, outputs=outputs, out=out) == 3
    assert time.time() - t0 < 5
    assert f"process {first.pid} on" in out[-1] and "--wait-lock" in out[-1]
    st = Lines()
    runner.status(plan_path, outputs, out=st)
    assert "running" in st[0] and f"process {first.pid}" in st[0], st
    first.kill()                                          # kill -9 of the first runner
    first.wait()
    st = Lines()
    runner.status(plan_path, outputs, out=st)
    assert "partial" in st[0] and "interrupted" in st[0], st
    out = Lines()
    assert runner.run_plan(plan_path, outputs=outputs, out=out) == 0
    assert any("taking over the lock" in s and f"process {first.pid}" in s for s in out), out
    assert any("running ..." in s for s in out)           # a start line even though `out` is not a terminal
    assert not (outputs / "sleepy" / runner.LOCK).exists()


def _lock_once(lock, q):
    try:
        with files.plan_lock(lock, out=lambda *a: None):
            q.put("got")
            time.sleep(1.0)
    except files.LockHeld:
        q.put("held")


def test_lock_is_exclusive_under_a_race(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    ps = [ctx.Process(target=_lock_once, args=(tmp_path / "l", q)) for _ in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(20)
    got = sorted(q.get(timeout=5) for _ in ps)
    assert got == ["got", "held", "held", "held"]


def test_wait_lock_queues_behind_the_holder(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    holder = ctx.Process(target=_lock_once, args=(tmp_path / "l", q))
    holder.start()
    assert q.get(timeout=10) == "got"
    out = Lines()
    t0 = time.time()
    with files.plan_lock(tmp_path / "l", wait=True, poll_s=0.1, out=out):
        assert time.time() - t0 > 0.3                       # it waited for the holder's second
    holder.join(10)
    assert out and out[0].startswith(f"waiting for process {holder.pid} on")


def _append_many(path, who, n):
    for i in range(n):
        results.append_rows(path, [results.make_row(run_id=f"w{who}", target_task="xnli", language=f"l{i}",
                                                    split="test", metric="accuracy", value=float(i),
                                                    phase="target", model="m")])


def test_concurrent_appends_lose_no_rows(tmp_path):
    """4 writers x 100 rows on one metrics.jsonl: the rewrite-and-rename lost 117 of 300 rows before."""
    path = tmp_path / "metrics.jsonl"
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=_append_many, args=(path, w, 100)) for w in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
        assert p.exitcode == 0
    rows = results.read_rows(path)
    assert len(rows) == 400 and len({results.row_key(r) for r in rows}) == 400
    assert oct(path.stat().st_mode & 0o777) == oct(files.MODE)           # readable by the group


def _save_many(path, n):
    import torch
    for i in range(n):
        train._atomic_save({"i": i, "w": torch.zeros(2000)}, path)


def test_concurrent_atomic_saves_use_unique_temp_files(tmp_path):
    """A fixed `.last.pt.tmp` crashed 8 of 30 concurrent saves (one writer renamed the other's file away)."""
    import torch
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=_save_many, args=(tmp_path / "last.pt", 15)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
        assert p.exitcode == 0
    assert torch.load(tmp_path / "last.pt")["i"] == 14
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]         # no temp file left behind


# ---- 3. honest collection ----

def _done_run(plan, run, rows, extra=""):
    run.run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + extra
    (run.run_dir / "metrics.jsonl").write_text(text)
    (run.run_dir / runner.DONE).write_text(json.dumps({"params_digest": runner.params_digest(run.passed)}))


def _row(run, lang, value=50.0):
    return results.make_row(run_id=run.run_id, plan="toy", phase=run.phase if run.phase != "results" else "target",
                            model="m", target_task="xnli", language=lang, split="test", metric="accuracy",
                            value=value)


def test_collect_takes_only_finished_runs_of_the_plan_and_reports_a_truncated_line(tmp_path):
    outputs = tmp_path / "outputs"
    plan = plans.expand(FIX / "toy.yaml", outputs)
    plans.validate(plan)
    done, interrupted, changed = plan.runs[2], plan.runs[3], plan.runs[4]
    _done_run(plan, changed, [_row(changed, "de")])
    (changed.run_dir / runner.DONE).write_text(json.dumps({"params_digest": "0ld"}))
    _done_run(plan, done, [_row(done, "de"), _row(done, "fr")], extra='{"run_id": "trunc')   # killed writer
    interrupted.run_dir.mkdir(parents=True)
    (interrupted.run_dir / "metrics.jsonl").write_text(json.dumps(_row(interrupted, "de")) + "\n")
    stray = plan.dir / "target" / "old_run"
    stray.mkdir(parents=True)
    (stray / "metrics.jsonl").write_text(json.dumps({**_row(done, "es"), "run_id": "old_run"}) + "\n")
    out = Lines()
    assert runner.collect(FIX / "toy.yaml", outputs, out=out) == 0
    df = results.load_csv(plan.results_csv)
    assert sorted(df.run_id) == [done.run_id] * 2
    text = "\n".join(out)
    assert f"{done.run_dir / 'metrics.jsonl'}:3: not a complete JSON row" in text
    assert f"{interrupted.run_id}: not finished (no _done.json)" in text
    assert "target/old_run: not a run of plan toy" in text
    assert f"{changed.run_id}: params changed since it ran" in text
    # the run keeps working: the next append drops the truncated line and keeps the good rows
    results.append_rows(done.run_dir / "metrics.jsonl", [_row(done, "es")])
    assert [r["language"] for r in results.read_rows(done.run_dir / "metrics.jsonl")] == ["de", "fr", "es"]


def test_results_table_written_before_the_digest_column_still_loads(tmp_path):
    old = [c for c in results.COLUMNS if c != "weights_digest"]
    row = results.make_row(run_id="r", phase="target", model="m", target_task="xnli", language="de", split="test",
                           metric="accuracy", value=1.0)
    p = tmp_path / "old.csv"
    p.write_text(",".join(old) + "\n" + ",".join(str(row[c]) for c in old) + "\n")
    df = results.load_csv(p)
    assert list(df.columns[-1:]) == ["weights_digest"] and df.weights_digest.tolist() == [""]
    legacy = {c: row[c] for c in old}          # a metrics.jsonl row written before
    results.validate_row(legacy)
    assert legacy["weights_digest"] == ""


# ---- 4. errors a user can act on ----

def test_malformed_yaml_names_file_and_line_without_traceback(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nphases:\n  a:\n    notebook: x.ipynb\n   grid: [1\n")
    assert cli.main(["run", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{p}:5: not valid YAML" in err and "Traceback" not in err
    site = tmp_path / "site.yaml"                 # the same for a site resources file (xfer run --resources)
    site.write_text("gpus: 4\ngpu_mem: [80,\n")
    plan = Path(__file__).resolve().parents[1] / "params" / "plans" / "quick.yaml"
    assert cli.main(["run", str(plan), "--dry-run", "--resources", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"resources file {site}:" in err and "not valid YAML" in err and "Traceback" not in err


def test_error_summary_keeps_the_valid_choices():
    valid = ", ".join(f"task_{i}" for i in range(40))
    line = runner._headline(f"ValueError: unknown task 'nope'; valid tasks: {valid}\nmore")
    assert line.endswith("task_39")


def test_unknown_model_offline_fails_in_seconds(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(ValueError) as e:
        validate.check_model_available("no-such-org/no-such-model")
    assert time.time() - t0 < 5
    assert "tiny-xlmr-s" in str(e.value) and "xfer models" in str(e.value)


def test_score_names_file_and_line_of_a_malformed_prediction(tmp_path):
    pred, gold = tmp_path / "p.tsv", tmp_path / "g.tsv"
    pred.write_text("0.5\nhigh\n")
    gold.write_text("0.1\n0.2\n")
    with pytest.raises(ValueError, match=rf"{pred}:2: 'high' is not a number"):
        scoring.score_files("stsb_multi_mt", "de", pred, gold)
    pj, gj = tmp_path / "p.json", tmp_path / "g.json"
    pj.write_text('{"q1": "a",\n "q2": }')
    gj.write_text("{}")
    with pytest.raises(ValueError, match=rf"{pj}:2: not valid JSON"):
        scoring.score_files("xquad", "de", pj, gj)


def test_read_only_or_full_folder_is_one_sentence(tmp_path, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ValueError) as e:
        files.atomic_write_text(tmp_path / "x.json", "{}")
    assert str(e.value).startswith(f"cannot write {tmp_path / 'x.json'}: the disk is full")
    assert [p.name for p in tmp_path.iterdir()] == []
    ro = files.disk_error(tmp_path, OSError(errno.EROFS, "Read-only file system"))
    assert "read-only" in str(ro) and "--outputs" in str(ro)
