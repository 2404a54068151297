"""Multi-process training under `accelerate launch` (xfer_utils/phases/launch.py): the launch command and configs, the
strategies' training options, LoRA wrap/merge, and - slow - a 2-process DDP run (gloo, CPU) that ends with the
same encoder as the one-process run.

Tolerance of the 2-process test: every tensor of the saved encoders within 1e-5 (absolute), for a run whose largest
parameter change is ~7e-3 (lr 1e-3, 12 Adam steps); measured differences are ~1e-6. Not exact because the sums
are done in a different order: each rank averages the loss over its half of the micro-batch and gloo averages
the two gradients (the one-process run averages over all 8 examples at once), and each rank pads its half to its
own longest sequence, so the matmuls have other shapes. These ~1e-7 relative gradient differences pass through
Adam, whose update m/(sqrt(v)+eps) turns near-zero gradients (e.g. attention key biases, whose true gradient is
0) into updates of noise / eps * lr - that is where the largest differences sit. Dropout is off in both runs
(encoder config and heads): with dropout each rank draws masks for its own shard, so the runs would be
equivalent in distribution only.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch

from xfer_utils.phases import launch, runs
from xfer_utils import models, train

TOL = 1e-5
_orig_build = models.build


# ---- fast ----

def test_a_phase_is_named_by_its_function_not_a_table():
    from xfer_utils.phases import runs
    assert launch.phase_spec(runs.intermediate) == "xfer_utils.phases.runs:intermediate"
    assert launch.phase_function(launch.phase_spec(runs.target)) is runs.target
    with pytest.raises(ValueError, match="phase function"):
        launch.phase_spec("intermediate")          # the old string names are gone, and say what to pass instead
    with pytest.raises(ValueError, match="'target_task'"):
        launch.run_distributed(runs.target, {"model": "x"}, 2)   # a required argument is missing: before launching


def test_launch_command_and_configs(tmp_path):
    import yaml
    k, s = tmp_path / "k.json", tmp_path / "s.json"
    one = launch.launch_command("xfer_utils.phases.runs:intermediate", k, s, 1)
    assert one[1:3] == ["-m", "xfer_utils.phases.launch"]
    ddp = launch.launch_command("xfer_utils.phases.runs:intermediate", k, s, 2, "ddp_cpu")
    assert ddp[1:5] == ["-m", "accelerate.commands.launch", "--num_processes", "2"]
    assert ddp[ddp.index("--config_file") + 1] == str(launch.CONFIG_DIR / "ddp_cpu.yaml")
    assert ddp[-6:] == ["--phase", "xfer_utils.phases.runs:intermediate", "--kwargs", str(k), "--summary", str(s)]
    fsdp = launch.launch_command("x:y", k, s, 4, "fsdp_full_shard", fsdp_layer="XLMRobertaXLLayer")
    assert fsdp[fsdp.index("--fsdp_transformer_layer_cls_to_wrap") + 1] == "XLMRobertaXLLayer"
    kinds = {p.stem: yaml.safe_load(p.read_text())["distributed_type"] for p in launch.CONFIG_DIR.glob("*.yaml")}
    assert kinds == {"ddp_cpu": "MULTI_GPU", "ddp": "MULTI_GPU", "fsdp_full_shard": "FSDP"}
    fs = yaml.safe_load((launch.CONFIG_DIR / "fsdp_full_shard.yaml").read_text())["fsdp_config"]
    assert fs["fsdp_reshard_after_forward"] is True and fs["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert launch.is_fsdp_config("fsdp_full_shard") and not launch.is_fsdp_config("ddp")
    from accelerate.commands.config.config_args import load_config_from_file
    for p in launch.CONFIG_DIR.glob("*.yaml"):      # accelerate itself accepts them
        load_config_from_file(str(p))
    with pytest.raises(FileNotFoundError, match="ddp_cpu"):
        launch.config_path("zero3")


@pytest.mark.parametrize("model,n,gpu_gb,cuda,config", [
    ("tiny-xlmr-s", 2, None, False, "ddp_cpu"),
    ("xlmr-xxl", 8, None, False, "ddp_cpu"),           # no GPU: always gloo DDP
    ("xlmr-large", 4, None, True, "ddp"),
    ("xlmr-xl", 4, None, True, "fsdp_full_shard"),      # >= 1B parameters
    ("google/mt5-xxl", 8, None, True, "fsdp_full_shard"),
    ("xlmr-xl", 4, 80, True, "ddp"),                    # fits one 80 GB GPU: replicas
    ("xlmr-xl", 4, 40, True, "fsdp_full_shard"),
    ("rembert", 2, 16, True, "ddp"),                    # gradient checkpointing fits one GPU
    ("some/unknown-model", 2, None, True, "ddp"),
])
def test_choose_config(model, n, gpu_gb, cuda, config):
    assert launch.choose_config(model, n, gpu_gb=gpu_gb, cuda=cuda) == config


def test_strategies_and_their_options():
    assert launch.strategy_options("full") == {}
    assert launch.strategy_options("grad_checkpointing") == {"gradient_checkpointing": True}
    assert launch.strategy_options("lora") == {"gradient_checkpointing": True, "lora_rank": launch.LORA_RANK}
    with pytest.raises(ValueError, match="valid strategies"):
        launch.strategy_options("zero3")
    assert launch.resolve_strategy("auto", "xlmr-xxl", 4, gpu_gb=80, n_gpus=4) == "fsdp"
    assert launch.resolve_strategy("auto", "xlmr-xxl", 1, gpu_gb=80, n_gpus=1) == "lora"
    assert launch.resolve_strategy("auto", "xlmr-large", 1, gpu_gb=16, n_gpus=1) == "full"
    assert launch.resolve_strategy("auto", "unknown/model", 1, gpu_gb=16, n_gpus=1) == "full"
    if not torch.cuda.is_available():
        assert launch.resolve_strategy("auto", "xlmr-xxl") == "full"          # CPU: nothing to plan
    with pytest.raises(ValueError, match="n_processes >= 2"):
        launch.resolve_strategy("fsdp", "xlmr-xxl", 1)
    with pytest.raises(ValueError, match="does not fit"):
        launch.resolve_strategy("auto", "xlmr-xxl", 1, gpu_gb=8, n_gpus=1)


def test_strategies_the_training_code_cannot_take_yet_fail_before_compute():
    from xfer_utils.phases import runs
    fields = train.TrainConfig.__dataclass_fields__
    if "optimizer" not in fields:
        with pytest.raises(NotImplementedError, match="optimizer"):
            launch.run_phase(runs.intermediate, strategy="adam8bit", model="x")
    import inspect

    if "lora_rank" not in inspect.signature(runs.intermediate).parameters:
        with pytest.raises(NotImplementedError, match="lora_rank"):
            launch.run_phase(runs.intermediate, strategy="lora", model="x")


# ---- on the tiny model ----

def _tiny_net(world, heads=None):
    net, report = models.build(str(world["tiny-xlmr-s"]), heads or {"mnli": ("pair_classification", 3)}, seed=3)
    return net, report


def test_lora_wraps_the_encoder_and_merges_back_to_a_plain_encoder(world, tokenizer, tmp_path):
    pytest.importorskip("peft")
    net, _ = _tiny_net(world)
    plain_keys = set(net.encoder.state_dict())
    launch.add_lora(net, rank=4)
    trainable, total = launch.trainable_parameters(net)
    head = sum(p.numel() for p in net.heads.parameters())
    lora = sum(p.numel() for n, p in net.named_parameters() if "lora_" in n)
    assert lora > 0 and trainable == head + lora < total / 4
    assert not any(p.requires_grad for n, p in net.encoder.named_parameters() if "lora_" not in n)
    wrapped = sorted({n.split(".lora_")[0].split(".")[-1] for n, _ in net.named_parameters() if "lora_" in n})
    assert wrapped == ["dense", "key", "query", "value"]          # q, k, v and the attention output
    batch = tokenizer(["a b c", "d e f g h"], ["x y", "z"], return_tensors="pt", padding=True)
    batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
             "labels": torch.tensor([0, 2])}
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.encoder.gradient_checkpointing_enable()          # what train.py does for every strategy after `full`
    net.train()
    for _ in range(3):
        net("mnli", batch)["loss"].backward()
        assert all(p.grad is not None for n, p in net.named_parameters() if "lora_B" in n)   # grads reach adapters
        opt.step()
        opt.zero_grad()
    net.eval()
    with torch.no_grad():
        before = net("mnli", batch)["logits"]
        launch.merge_lora(net)
        after = net("mnli", batch)["logits"]
    assert torch.allclose(before, after, atol=1e-5)
    assert set(net.encoder.state_dict()) == plain_keys                  # a plain encoder again
    out = models.save_encoder(net, tokenizer, tmp_path / "encoder")
    again, report = models.build(str(out), {"xnli": ("pair_classification", 3)})
    assert not [k for k in report.initialized if not k.startswith("heads.")]
    with torch.no_grad():
        moved = max((a - b).abs().max().item() for a, b in zip(again.encoder.state_dict().values(),
                                                               _tiny_net(world)[0].encoder.state_dict().values()))
    assert moved > 1e-4                                                  # the adapters' training is in the weights


def _phase_kwargs(world, root: Path, model: str, n: int, task: str) -> dict:
    return dict(model=model, intermediate=task, run_id=f"p{n}", plan="launch", run_dir=str(root / f"run{n}"),
                checkpoint_dir=str(root / f"ckpt{n}"), seed=1, data_dir=str(world["data"]), max_train_examples=64,
                eval_examples=16, lr=1e-3, batch_size=8, max_steps=12, checkpoint_every=0)


def test_run_phase_in_process_applies_and_records_the_strategy(world, tmp_path):
    kw = _phase_kwargs(world, tmp_path, str(world["tiny-xlmr-s"]), 1, "mnli")
    kw["max_steps"] = 2
    lines = []
    summary = launch.run_phase(runs.intermediate, strategy="grad_checkpointing", n_processes=1, log=lines.append, **kw)
    assert summary["strategy"]["strategy"] == "grad_checkpointing" and summary["strategy"]["n_processes"] == 1
    assert summary["config"]["gradient_checkpointing"] is True
    assert (Path(kw["checkpoint_dir"]) / "encoder" / "config.json").exists()
    assert any(s.startswith("strategy: grad_checkpointing; one process") for s in lines)


NODROP = '''
"""Test phase: runs.intermediate with the heads' dropout off (the encoder's is off in its config)."""
from xfer_utils import models
from xfer_utils.phases import runs

_build = models.build


def _build_nodrop(encoder_from, heads, seed=0, dropout=0.1):
    return _build(encoder_from, heads, seed=seed, dropout=0.0)


models.build = _build_nodrop


def intermediate(model, intermediate, **kw):
    return runs.intermediate(model, intermediate, **kw)
'''


def _nodrop_model(world, tmp_path: Path) -> Path:
    """A copy of the tiny encoder with dropout off in its config (the heads' is turned off by the phase)."""
    model = tmp_path / "tiny-nodrop"
    shutil.copytree(world["tiny-xlmr-s"], model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(cfg))
    return model


def _beside_one_process_run(launched, world, tmp_path: Path, model: Path, task: str, monkeypatch) -> dict:
    """Run `launched` (the multi-process launches) in a thread while the one-process run (what run_phase does
    with n_processes=1; same seed and batch, dropout off) trains in this process; re-raise the thread's error."""
    from transformers import AutoConfig, AutoTokenizer  # noqa: F401 - transformers' lazy imports race in threads

    from xfer_utils.phases import runs
    errors = []

    def guarded():
        try:
            launched()
        except BaseException as e:    # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(e)
    th = threading.Thread(target=guarded)
    th.start()
    monkeypatch.setattr(models, "build", lambda enc, heads, seed=0, dropout=0.1:
                        _orig_build(enc, heads, seed=seed, dropout=0.0))
    one = runs.intermediate(log=lambda *a: None, **_phase_kwargs(world, tmp_path, str(model), 1, task))
    th.join()
    if errors:
        raise errors[0]
    return one


@pytest.mark.slow
def test_two_processes_end_with_the_one_process_encoder(world, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    model = _nodrop_model(world, tmp_path)
    (tmp_path / "nodrop_phase.py").write_text(NODROP)
    task = "mnli+sst2"        # two heads: also exercises DDP with a head unused in every step
    two, lines = {}, []

    def launched():
        two["summary"] = launch.run_distributed(
            "nodrop_phase:intermediate", _phase_kwargs(world, tmp_path, str(model), 2, task), 2, "ddp_cpu",
            log=lines.append, env={"PYTHONPATH": str(tmp_path)})
    one = _beside_one_process_run(launched, world, tmp_path, model, task, monkeypatch)
    text = "\n".join(lines)
    assert "[launch] 2 process(es), MULTI_CPU / gloo" in text and "encoder saved to" in text
    assert two["summary"]["train"]["steps"] == one["train"]["steps"] == 12
    enc1 = load_file(str(tmp_path / "ckpt1" / "encoder" / "model.safetensors"))
    enc2 = load_file(str(tmp_path / "ckpt2" / "encoder" / "model.safetensors"))
    init = {k.removeprefix("roberta."): v for k, v in load_file(str(model / "model.safetensors")).items()}
    assert set(enc1) == set(enc2)
    diff = max((enc1[k] - enc2[k]).abs().max().item() for k in enc1)
    moved = max((enc1[k] - init[k]).abs().max().item() for k in enc1 if k in init)
    assert moved > 100 * TOL, moved            # the runs did move the weights
    assert diff <= TOL, diff
    # only the main process wrote outputs: one metrics file, rows once, no rank scratch left behind
    rows = [json.loads(x) for x in (tmp_path / "run2" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len({(r["target_task"], r["metric"]) for r in rows}) > 0
    assert json.loads((tmp_path / "ckpt2" / "launch" / "summary.json").read_text())["encoder"].endswith("encoder")



FSDP_ON_CPU = NODROP + '''
# accelerate launch with the FSDP config sets ACCELERATE_USE_FSDP and the FSDP_* variables on CPU too, but
# AcceleratorState turns FSDP on only for accelerator devices (MULTI_GPU, ...) and falls back to MULTI_CPU. torch's
# FSDP2 (fully_shard) runs on a CPU mesh over gloo, so this test phase sets the state to FSDP where accelerate
# would: the rest - accelerate's FSDP2 prepare, train.py's state-dict gathering and broadcasts - is the GPU path.
import os

from accelerate.state import AcceleratorState, DistributedType, PartialState
from accelerate.utils import FullyShardedDataParallelPlugin

_init = AcceleratorState.__init__


def _init_fsdp_on_cpu(self, *a, **kw):
    _init(self, *a, **kw)
    if self.distributed_type == DistributedType.MULTI_CPU and os.environ.get("ACCELERATE_USE_FSDP") == "true":
        self.fsdp_plugin = kw.get("fsdp_plugin") or FullyShardedDataParallelPlugin()
        self.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP


AcceleratorState.__init__ = _init_fsdp_on_cpu

# a crash of the main process right after it wrote the checkpoint of step XFER_TEST_CRASH_AT
from xfer_utils import train

_save = train._atomic_save


def _save_then_crash(obj, path):
    _save(obj, path)
    if path.name == "last.pt" and obj["step"] == int(os.environ.get("XFER_TEST_CRASH_AT", "0")):
        os._exit(17)


train._atomic_save = _save_then_crash
'''


@pytest.mark.slow
def test_fsdp_two_processes_crash_resume_and_end_with_the_one_process_encoder(world, tmp_path, monkeypatch):
    """FSDP2 full shard over 2 CPU processes: the run is killed after its step-4 checkpoint, resumed from the
    gathered weights and optimizer moments, and ends with the one-process encoder (same tolerance as DDP)."""
    from safetensors.torch import load_file
    model = _nodrop_model(world, tmp_path)
    (tmp_path / "fsdp_phase.py").write_text(FSDP_ON_CPU)
    task = "mnli+sst2"        # two heads: FSDP with a head unused in every step
    kw2 = {**_phase_kwargs(world, tmp_path, str(model), 2, task), "checkpoint_every": 4}
    lines = []

    def launched():
        env = {"PYTHONPATH": str(tmp_path)}
        with pytest.raises(RuntimeError, match="exit code"):
            launch.run_distributed("fsdp_phase:intermediate", kw2, 2, "fsdp_full_shard", log=lines.append,
                                   env={**env, "XFER_TEST_CRASH_AT": "4"})
        lines.append("---- relaunch")
        launch.run_distributed("fsdp_phase:intermediate", kw2, 2, "fsdp_full_shard", log=lines.append, env=env)
        shutil.copytree(tmp_path / "ckpt2" / "encoder", tmp_path / "encoder2")
        lines.append("---- finished run, launched again")
        launch.run_distributed("fsdp_phase:intermediate", kw2, 2, "fsdp_full_shard", log=lines.append, env=env)
    _beside_one_process_run(launched, world, tmp_path, model, task, monkeypatch)
    text = "\n".join(lines)
    first, second, third = re.split("---- relaunch|---- finished run, launched again", text)
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    # one FSDP unit per transformer block (the class read from the encoder) + the root (embeddings, heads)
    assert f"sharded over 2 processes in {layers + 1} units" in first and "XLMRobertaLayer" in first
    assert "resuming from" in second and "at step 4/12" in second and "encoder saved to" in second
    assert "training already finished" in third and "encoder saved to" in third    # best weights broadcast
    enc1 = load_file(str(tmp_path / "ckpt1" / "encoder" / "model.safetensors"))
    enc2 = load_file(str(tmp_path / "encoder2" / "model.safetensors"))
    again = load_file(str(tmp_path / "ckpt2" / "encoder" / "model.safetensors"))
    assert all(torch.equal(enc2[k], again[k]) for k in enc2)
    assert set(enc1) == set(enc2)
    assert all(not k.startswith(("_fsdp", "module.")) for k in enc2)
    diff = max((enc1[k] - enc2[k]).abs().max().item() for k in enc1)
    assert diff <= TOL, diff
    last = torch.load(tmp_path / "ckpt2" / "last.pt", map_location="cpu", weights_only=False)
    assert last["fsdp"] is True and last["step"] == 12
