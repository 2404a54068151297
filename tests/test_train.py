"""Training on the tiny world: each head type learns its learnable fixture task, zero-shot transfer works, a killed
run resumes to the same result, and multi-task sampling follows the examples-proportional weights."""
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xfer_utils import evaluation, models, train
from xfer_utils.phases import runs

# (task, chance level on its English dev set, steps). The fixture signal is a marker word (label), a cue word
# (QA answer), a tag prefix (tagging) or a count of 'same' words (STS): learnable by a 2-layer model.
LEARN = [("sst2", 50.0, 60), ("mnli", 33.3, 100), ("stsb", 0.0, 60), ("hellaswag", 25.0, 40), ("squad", 5.0, 40),
         ("udpos", 100 / 17, 40), ("panx", 10.0, 40)]


def _fit(world, tok, task, steps, tmp_path, lr=3e-3):
    td = runs._task_data(task, "en", tok, world["data"], -1, 48, 1, 128)
    net, _ = models.build(str(world["tiny-xlmr-s"]), runs._heads([td], tok), seed=1)
    cfg = train.TrainConfig(lr=lr, epochs=100, max_steps=steps, batch_size=16, eval_every=steps, patience=0,
                            checkpoint_every=0, seed=1)
    return net, td, train.train(net, tok, [td], cfg, tmp_path / task, progress=False, log=lambda m: None)


@pytest.mark.parametrize("task, chance, steps", LEARN)
def test_each_head_type_learns_its_fixture_task(world, tokenizer, tmp_path, task, chance, steps):
    _, td, res = _fit(world, tokenizer, task, steps, tmp_path)
    score = res.best_score
    # 'Clearly above chance': at least 40 points above the chance level (STS: Spearman > 60, chance 0).
    assert score > chance + 40, f"{task}: dev {score:.1f} vs chance {chance:.1f}"


def test_zero_shot_transfer_to_other_languages(world, tokenizer, tmp_path):
    """Trained on English NLI only; evaluated on German and Thai test sets (never seen): far above chance."""
    net, td, res = _fit(world, tokenizer, "mnli", 100, tmp_path)
    net.heads["xnli"] = net.heads.pop("mnli")
    run = dict(run_id="zs", plan="test", phase="target", model="tiny", intermediate="none", seed=1)
    rows = evaluation.zero_shot(net, "xnli", "xnli", tokenizer, ["de", "th"], run=run, data_dir=world["data"],
                                predictions_dir=tmp_path / "pred", metrics_path=tmp_path / "m.jsonl")
    acc = {r["language"]: r["value"] for r in rows if r["metric"] == "accuracy"}
    assert acc["de"] > 70 and acc["th"] > 70, acc      # chance is 33.3
    assert (tmp_path / "pred" / "xnli" / "test-th.tsv").exists() or any((tmp_path / "pred").rglob("test-th*"))
    assert len(open(tmp_path / "m.jsonl").read().splitlines()) == 2


def test_schedule_is_examples_proportional_one_task_per_step():
    lengths = {"big": [10] * 3000, "small": [10] * 1000}
    steps = train.schedule(lengths, micro=8, accum=2, epochs=2, seed=0)
    counts = collections.Counter(t for t, _ in steps)
    share = counts["big"] / len(steps)
    assert abs(share - 0.75) < 0.03, share                 # p(task) ∝ n_task
    for t, mbs in steps:                                   # one task per optimizer step, accum micro-batches
        assert len(mbs) == 2 and all(max(mb) < len(lengths[t]) for mb in mbs)
    capped = collections.Counter(t for t, _ in train.schedule(lengths, 8, 2, 2, 0, cap=1000))
    assert abs(capped["big"] / sum(capped.values()) - 0.5) < 0.04
    tempered = train.task_weights({"big": 3000, "small": 1000}, temperature=2.0)
    assert abs(tempered["big"] - np.sqrt(3) / (np.sqrt(3) + 1)) < 1e-9


def test_length_grouping_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = list(rng.lognormal(3.3, 0.6, 4000).astype(int) + 4)

    def efficiency(batches):
        real = sum(sum(lengths[i] for i in b) for b in batches)
        return real / sum(max(lengths[i] for i in b) * len(b) for b in batches)
    import random
    grouped = train.length_grouped(lengths, 32, random.Random(0), group=True)
    plain = train.length_grouped(lengths, 32, random.Random(0), group=False)
    assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))   # every example once per epoch
    assert efficiency(grouped) > 0.9 > efficiency(plain)


def test_nan_loss_stops_with_the_step_and_cause(world, tokenizer, tmp_path):
    td = runs._task_data("sst2", "en", tokenizer, world["data"], 64, 16, 1, 64)
    net, _ = models.build(str(world["tiny-xlmr-s"]), runs._heads([td], tokenizer))
    for f in td.train:
        f["labels"] = 7                                      # outside the 2-label head: the loss cannot be computed
    cfg = train.TrainConfig(lr=1e-3, max_steps=2, eval_every=0, checkpoint_every=0)
    with pytest.raises((FloatingPointError, IndexError, RuntimeError)):
        train.train(net, tokenizer, [td], cfg, tmp_path / "c", progress=False, log=lambda m: None)
    import torch
    with torch.no_grad():
        net.heads["sst2"].out.weight.fill_(float("nan"))
    for f in td.train:
        f["labels"] = 1
    with pytest.raises(FloatingPointError, match="at step 0 .*learning rate"):
        train.train(net, tokenizer, [td], cfg, tmp_path / "d", progress=False, log=lambda m: None)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(world, tmp_path):
    worker = Path(__file__).with_name("train_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run(ckpt, out):
        return subprocess.Popen([sys.executable, str(worker), str(world["root"]), str(ckpt), str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert run(tmp_path / "a", tmp_path / "a.json").wait(timeout=300) == 0
    p = run(tmp_path / "b", tmp_path / "b.json")
    deadline = time.time() + 240
    while not (tmp_path / "b" / "last.pt").exists():        # kill -9 once the first checkpoint is on disk
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "b" / "train_done.json").exists(), "the run finished before it could be killed"
    assert run(tmp_path / "b", tmp_path / "b.json").wait(timeout=300) == 0
    a, b = json.load(open(tmp_path / "a.json")), json.load(open(tmp_path / "b.json"))
    assert (a["best_step"], a["best_score"]) == (b["best_step"], b["best_score"])
    # Same weights within 1e-6 (CPU kernels are deterministic; the tolerance covers float summation order).
    for k in a["weights"]:
        assert np.allclose(a["weights"][k], b["weights"][k], atol=1e-6), k
