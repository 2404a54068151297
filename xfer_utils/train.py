"""Training: one loop for single-task, multi-task and MLM co-training, on Accelerate (the HF Trainer has no
one-task-per-batch multi-task sampler; Accelerate gives the same code DDP/FSDP under `accelerate launch`).

Protocol defaults (docs/sources.md, Hyper-parameters): AdamW lr 1e-5, linear warmup over 10% then linear decay,
weight decay 0.01 (not on biases/LayerNorm), gradient clipping 1.0, effective batch by gradient accumulation, model
selection on a 500-example subset of the English dev split every `eval_every` steps with patience, keep the best.
Speed: dynamic padding + length grouping by default (`pad_to_max_length=True` reproduces jiant's fixed padding),
bf16 where the GPU supports it, fp16 + loss scaling on older GPUs, fp32 on CPU.
Resumable: every `checkpoint_every` steps the full state (model, optimizer, schedule, RNG, early-stopping state)
is written atomically; the batch schedule is a pure function of the seed, so a killed run resumes to the same result.
FSDP (FSDP2 under `accelerate launch`, launch.py): the model is sharded in place, so every state dict is gathered in
full by a collective on all ranks and written by the main process; checkpoints are read by the main process and
broadcast into the shards. best.pt holds the same keys either way.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import evaluation, features, files, models
from . import identity as ident


@dataclass
class TrainConfig:
    lr: float = 1e-5
    epochs: float = 3.0
    batch_size: int = 32              # effective batch (per optimizer step, all processes)
    per_device_batch: int = 0         # micro-batch; 0 = the whole effective batch at once
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_steps: int = -1               # > 0 caps the number of optimizer steps
    eval_every: int = 1000
    eval_examples: int = 500          # English dev subset used for model selection
    patience: int = 30                # evaluations without improvement before stopping
    checkpoint_every: int = 1000
    seed: int = 1
    group_by_length: bool = True
    pad_to_max_length: bool = False
    precision: str = "auto"           # auto | bf16 | fp16 | fp32
    sampling_temperature: float = 1.0  # multi-task: p_task ∝ min(n, cap) ** (1 / T)
    examples_cap: int = 0             # multi-task: cap n per task in the sampling weights (0 = none)
    mlm_probability: float = 0.15
    mlm_share: float = 0.0            # MLM co-training: share of steps drawn for MLM; 0 = examples-proportional (lines)
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"          # adamw | adamw8bit (bitsandbytes, the memory planner's 'adam8bit' strategy)
    packing: str = "auto"             # auto | on | off: padding-free rows (features.pack); auto = off for now
                                      # (slower on an H200: resolve_packing)
    compile: bool = False             # torch.compile the encoder; batch shapes rounded to buckets (compile_buckets)


@dataclass
class TaskData:
    """One task of a training run: its head name/type, training features and (optional) dev set for selection."""
    name: str
    type: str
    train: list[dict]
    max_length: int
    dev: object = None                # normalized datasets.Dataset (English dev subset)
    label_names: list[str] | None = None
    is_mlm: bool = False
    score_as: str | None = None       # the task whose metric scores `dev` (a target head on its training task's dev)
    dev_parts: dict | None = None     # composite task (ANLI+): component -> its own dev subset, scored separately


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_score: float
    dev: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0                   # real (non-pad) tokens seen
    computed_tokens: int = 0          # tokens computed including padding
    identity: str = ""                # checkpoint identity digest of the weights (identity.py)


PACKING = ("auto", "on", "off")


def resolve_packing(mode: str, config, device, pad_to_max_length: bool = False) -> bool:
    """Whether this run packs: 'on' requires it (an error in one sentence where the model cannot pack exactly),
    'off' never, and 'auto', the default, does not pack for now: measured on an H200 (benchmarks/README.md, "GPU"),
    packed rows through SDPA with block masks ran slower than length-grouped padded batches at every shape (0.74x at
    full length 256, 0.95x on pair-length batches, 0.15x on short sentences), so 'auto' stays off until a
    variable-length kernel pays. Fixed padding (the reference implementation's layout) and packing exclude each
    other."""
    if mode not in PACKING:
        raise ValueError(f"packing must be one of {', '.join(PACKING)}, not {mode!r}")
    if mode == "on":
        why = "" if config is None else models.packing_refusal(config)
        if why:
            raise ValueError(f"packing='on' is not possible: {why}")
        if pad_to_max_length:
            raise ValueError("packing='on' and pad_to_max_length=True exclude each other; set one of them off")
        return True
    return False


def compile_buckets(max_length: int, smallest: int = 32) -> list[int]:
    """Sequence widths a compiled encoder sees (powers of two from `smallest`, then `max_length`): a few graphs,
    instead of one per batch length.

    >>> compile_buckets(128), compile_buckets(384)
    ([32, 64, 128], [32, 64, 128, 256, 384])
    """
    out, w = [], smallest
    while w < max_length:
        out.append(w)
        w *= 2
    return out + [max_length]


def bucket(n: int, buckets: list[int]) -> int:
    """The smallest bucket >= n (n itself past the last one)."""
    return next((b for b in buckets if b >= n), n)


def choose_precision(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


# ------------------------------------------------------------------ the batch schedule (pure, from the seed)
def length_grouped(lengths: list[int], micro: int, rng: random.Random, group: bool) -> list[list[int]]:
    """Micro-batches of indices: shuffle, then sort within mega-chunks of 50 batches by length (HF's
    LengthGroupedSampler idea), then shuffle the batches so lengths do not march up monotonically."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if group:
        mega = micro * 50
        idx = [i for c in range(0, len(idx), mega)
               for i in sorted(idx[c:c + mega], key=lambda i: -lengths[i])]
    batches = [idx[b:b + micro] for b in range(0, len(idx), micro)]
    if group:
        rng.shuffle(batches)
    return batches


def task_weights(sizes: dict[str, int], temperature: float = 1.0, cap: int = 0,
                 shares: dict[str, float] | None = None) -> dict[str, float]:
    """Examples-proportional sampling, optionally capped and tempered (T5's mixing). `shares` fixes the
    probability of some tasks (MLM co-training's share); the others split the rest by the same rule.

    >>> task_weights({"a": 300, "b": 100})
    {'a': 0.75, 'b': 0.25}
    >>> task_weights({"a": 300, "b": 100}, cap=100)
    {'a': 0.5, 'b': 0.5}
    >>> task_weights({"a": 300, "b": 100, "mlm": 10**6}, shares={"mlm": 0.5})
    {'a': 0.375, 'b': 0.125, 'mlm': 0.5}
    """
    fixed = {t: float(v) for t, v in (shares or {}).items() if t in sizes and v > 0}
    if fixed and (sum(fixed.values()) >= 1 or len(fixed) == len(sizes)):
        raise ValueError(f"fixed task shares {fixed} must sum to less than 1 and leave a task to sample by size")
    w = {t: (min(n, cap) if cap else n) ** (1.0 / temperature) for t, n in sizes.items() if t not in fixed}
    z = sum(w.values())
    rest = 1.0 - sum(fixed.values())
    return {t: fixed[t] if t in fixed else w[t] / z * rest for t in sizes}


def step_shares(steps) -> dict[str, float]:
    """Share of the optimizer steps (= sampled batches) drawn for each task in a `schedule`."""
    from collections import Counter
    n = Counter(t for t, _ in steps)
    return {t: c / max(1, len(steps)) for t, c in sorted(n.items())}


def schedule(task_lengths: dict[str, list[int]], micro: int, accum: int, epochs: float, seed: int,
             group: bool = True, temperature: float = 1.0, cap: int = 0, max_steps: int = -1,
             shares: dict[str, float] | None = None):
    """The whole run as a list of optimizer steps, each (task, [micro-batch index lists]). One task per step;
    tasks drawn by `task_weights`; each task's stream reshuffles at its epoch boundary."""
    rng = random.Random(seed)
    sizes = {t: len(v) for t, v in task_lengths.items()}
    total = math.ceil(epochs * sum(sizes.values()) / (micro * accum))
    if max_steps > 0:
        total = min(total, max_steps)
    weights = task_weights(sizes, temperature, cap, shares)
    names = list(weights)
    streams: dict[str, list] = {t: [] for t in names}
    steps = []
    for _ in range(total):
        t = names[0] if len(names) == 1 else rng.choices(names, weights=[weights[n] for n in names])[0]
        mbs = []
        for _ in range(accum):
            if not streams[t]:
                streams[t] = length_grouped(task_lengths[t], micro, rng, group)
            mbs.append(streams[t].pop(0))
        steps.append((t, mbs))
    return steps


# ------------------------------------------------------------------ checkpoints
def _atomic_save(obj, path: Path) -> None:
    files.atomic_write(path, lambda f: torch.save(obj, f))   # a unique temp file per writer


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# Gathering a full state dict (or loading one) is a collective under FSDP: every rank calls these, the main process
# alone gets/provides the tensors (on CPU: an XXL encoder never sits twice on one GPU).
def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def model_state(model, fsdp: bool) -> dict:
    """The full model state dict (unwrapped keys); under FSDP only the main process gets the tensors ({} elsewhere)."""
    if not fsdp:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(model, options=_full_options())


def load_model_state(model, state: dict | None, fsdp: bool) -> None:
    """Load a full state dict; under FSDP the main process's copy is broadcast into every rank's shards."""
    if not fsdp:
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    set_model_state_dict(model, state or {}, options=_full_options(broadcast_from_rank0=True))


def _optimizer_state(model, opt, fsdp: bool) -> dict:
    if not fsdp:
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return get_optimizer_state_dict(model, opt, options=_full_options())


def _load_optimizer_state(model, opt, state: dict | None, fsdp: bool) -> None:
    if not fsdp:
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    set_optimizer_state_dict(model, opt, state or {}, options=_full_options(broadcast_from_rank0=True))


def _read_best(path: Path, fsdp: bool, main: bool) -> dict:
    """best.pt's weights where they are read: on every rank without FSDP; under FSDP on the main process alone
    (the others get {} and receive the tensors by broadcast, `load_model_state`)."""
    return torch.load(path, map_location="cpu", weights_only=False)["model"] if main or not fsdp else {}


def _optimizer(model, cfg: TrainConfig, device):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in n.lower() or n.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw8bit":
        import bitsandbytes as bnb   # optional dependency: pip install -e ".[adam8bit]"
        return bnb.optim.AdamW8bit(groups, lr=cfg.lr, eps=1e-8)
    if cfg.optimizer != "adamw":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid optimizers: adamw, adamw8bit")
    # Fused AdamW on GPU and CPU alike (torch >= 2.4): on CPU it was 8x faster per step than the default loop.
    return torch.optim.AdamW(groups, lr=cfg.lr, eps=1e-8, fused=device.type in ("cuda", "cpu"))


def _lr_lambda(total: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total - step) / max(1, total - warmup_steps))
    return f


def dev_score(model, tokenizer, tds: list[TaskData], batch_size: int = 64) -> tuple[float, dict]:
    """Mean of the primary dev metrics of the labelled tasks (the selection signal). A composite task (ANLI+) is
    scored on each component's own dev subset: its score is the mean of the component scores, which are kept as
    '<component>:<metric>' entries (so ANLI's three rounds weigh 3/5, not the ~14 % of a pooled subset)."""
    per = {}
    for td in tds:
        if td.is_mlm or (td.dev is None and not td.dev_parts):
            continue
        task = td.score_as or td.name
        if td.dev_parts:
            parts = {}
            for comp, ds in td.dev_parts.items():
                preds = evaluation.predictions(model, td.name, comp, ds, tokenizer, td.max_length, batch_size,
                                               td.label_names)
                parts[comp] = evaluation.score(comp, ds, preds, "en", td.label_names)
            sc = {m: float(np.mean([p[m] for p in parts.values()])) for m in next(iter(parts.values()))}
            sc.update({f"{c}:{m}": v for c, p in parts.items() for m, v in p.items()})
        else:
            preds = evaluation.predictions(model, td.name, task, td.dev, tokenizer, td.max_length, batch_size,
                                           td.label_names)
            sc = evaluation.score(task, td.dev, preds, "en", td.label_names)
        per[td.name] = {**sc, "primary": evaluation.primary(task, sc)}
    if not per:
        return float("nan"), per
    return float(np.mean([v["primary"] for v in per.values()])), per


@dataclass
class _State:
    """What the loop carries from step to step; `last.pt` saves it with the weights, the optimizer and the RNG."""
    step: int = 0
    best: float = -math.inf
    best_step: int = 0
    bad_evals: int = 0
    history: list = field(default_factory=list)
    tokens: int = 0                   # real tokens seen
    computed: int = 0                 # tokens computed, padding included


def _accelerator(precision: str, multi_task: bool):
    """The run's Accelerator. Multi-task under DDP: each step uses one task's head, so the others have no gradient
    that step (find_unused_parameters)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs
    return Accelerator(mixed_precision={"fp32": "no"}.get(precision, precision), cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=multi_task)])


def _enable_checkpointing(encoder) -> None:
    kw = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):   # transformers >= 5.24 renamed it
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def _resume(ckpt: Path, raw_model, raw_opt, sched, digest: str, fsdp: bool, main: bool) -> _State | None:
    """The loop state of `ckpt/last.pt` (weights, moments, scheduler and RNG restored), or None without one. Every
    rank needs the counters and RNG; under FSDP the tensors come from the main process, and mmap keeps the other
    ranks from reading an XXL model's weights and moments into their memory."""
    if not (ckpt / "last.pt").exists():
        return None
    st = torch.load(ckpt / "last.pt", map_location="cpu", weights_only=False, mmap=fsdp and not main)
    if st.get("identity") != digest:
        raise ValueError(f"{ckpt / 'last.pt'} was written by a run with other settings than the folder's "
                         f"{ident.RECORD} says; delete {ckpt} to start over")
    if st.get("fsdp", False) != fsdp:
        raise ValueError(f"{ckpt / 'last.pt'} was written {'with' if st.get('fsdp') else 'without'} FSDP and "
                         f"this run is {'with' if fsdp else 'without'} it; resume with the same strategy or "
                         f"delete the checkpoint folder to start over")
    load_model_state(raw_model, st["model"] if main or not fsdp else {}, fsdp)
    _load_optimizer_state(raw_model, raw_opt, st["optimizer"] if main or not fsdp else {}, fsdp)
    sched.load_state_dict(st["scheduler"])
    _set_rng_state(st["rng"])
    return _State(step=st["step"], best=st["best"], best_step=st["best_step"], bad_evals=st["bad_evals"],
                  history=st["history"], tokens=st.get("tokens", 0), computed=st.get("computed", 0))


class _Batches:
    """Micro-batches as the model gets them: collated with dynamic padding (or to max length, or to a compile
    bucket), MLM-masked with a per-(step, micro-batch) generator (so a resumed run masks as the first one did),
    packed when `packed`, on the device. Counts real and computed tokens into the loop state."""

    def __init__(self, tds: list[TaskData], cfg: TrainConfig, tokenizer, device, packed: bool, offset: int):
        self.by_name = {td.name: td for td in tds}
        self.cfg, self.tokenizer, self.device, self.packed, self.offset = cfg, tokenizer, device, packed, offset
        self.multiple = features.pad_multiple(device)
        self.buckets = {td.name: compile_buckets(td.max_length) for td in tds}

    def __call__(self, task: str, ids: list[int], step: int, k: int, state: _State) -> dict:
        td, cfg = self.by_name[task], self.cfg
        feats = [td.train[i] for i in ids]
        pad_to = td.max_length if cfg.pad_to_max_length else None
        if cfg.compile and not self.packed and pad_to is None:
            longest = max(len(s) for f in feats for s in (f["input_ids"] if isinstance(f["input_ids"][0], list)
                                                          else [f["input_ids"]]))
            pad_to = bucket(longest, self.buckets[task])
        batch = features.collate(feats, self.tokenizer.pad_token_id, pad_to=pad_to, multiple_of=self.multiple)
        if td.is_mlm:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + k)
            batch["input_ids"], batch["labels"] = features.mask_tokens(batch["input_ids"], self.tokenizer, g,
                                                                       cfg.mlm_probability)
        state.tokens += int(batch["attention_mask"].sum())
        if self.packed:
            batch = features.pack(batch, td.max_length, self.tokenizer.pad_token_id, self.multiple, self.offset,
                                  bucket_rows=cfg.compile, fixed_width=cfg.compile)
            state.computed += batch["packed_input_ids"].numel()
        else:
            state.computed += batch["attention_mask"].numel()
        return {key: v.to(self.device) for key, v in batch.items()}


def _evaluate(raw_model, tokenizer, tds, state: _State, step_loss: float, total: int, fsdp: bool, main: bool,
              digest: str, ckpt: Path, log) -> None:
    """English-dev selection: score, keep best.pt when the score improves, count evaluations without improvement."""
    score, per = dev_score(raw_model, tokenizer, tds)
    state.history.append({"step": state.step, "loss": step_loss, "dev": per, "score": score})
    if not math.isnan(score) and score > state.best:
        state.best, state.best_step, state.bad_evals = score, state.step, 0
        weights = model_state(raw_model, fsdp)       # a collective under FSDP
        if main:
            _atomic_save({"model": weights, "step": state.step, "identity": digest}, ckpt / "best.pt")
        del weights
    else:
        state.bad_evals += 1
    log(f"step {state.step}/{total}: dev {score:.2f} (best {state.best:.2f} at step {state.best_step})")


def _save_last(raw_model, raw_opt, sched, state: _State, cfg: TrainConfig, fsdp: bool, main: bool, digest: str,
               ckpt: Path) -> None:
    weights, moments = model_state(raw_model, fsdp), _optimizer_state(raw_model, raw_opt, fsdp)
    if main:
        _atomic_save({"model": weights, "optimizer": moments, "fsdp": fsdp, "scheduler": sched.state_dict(),
                      "step": state.step, "best": state.best, "best_step": state.best_step,
                      "bad_evals": state.bad_evals, "history": state.history, "rng": _rng_state(),
                      "tokens": state.tokens, "computed": state.computed, "config": asdict(cfg),
                      "identity": digest}, ckpt / "last.pt")


def train(model, tokenizer, tds: list[TaskData], cfg: TrainConfig, checkpoint_dir: str | os.PathLike,
          progress: bool = True, log=print, identity: dict | None = None, on_prepared=None) -> TrainResult:
    """Train `model` (a models.MultiTaskModel) on `tds`; resumes from `checkpoint_dir/last.pt` when present and
    returns immediately when `checkpoint_dir/train_done.json` says the run finished, in both cases only when the
    folder's identity digest is this run's (identity.py; `identity`: what the caller knows determines the weights
    beyond `cfg` and `tds`, e.g. the model and init encoder). Ends with the best weights. `on_prepared(accelerator,
    model)` is called once the model is prepared (launch.py's encoder saver gathers FSDP weights through them)."""
    ckpt = Path(checkpoint_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    for td in tds:
        if not td.train:
            raise ValueError(f"task {td.name!r} has no training examples")
    precision = choose_precision(cfg.precision)
    acc = _accelerator(precision, multi_task=len(tds) > 1)
    device, world, rank = acc.device, acc.num_processes, acc.process_index
    micro = cfg.per_device_batch or max(1, cfg.batch_size // world)
    accum = max(1, cfg.batch_size // (micro * world))
    if cfg.gradient_checkpointing:
        _enable_checkpointing(model.encoder)
    fsdp, main = acc.distributed_type.name == "FSDP", acc.is_main_process
    packed = resolve_packing(cfg.packing, getattr(getattr(model, "encoder", None), "config", None), device,
                             cfg.pad_to_max_length)
    current = ident.settings(cfg, tds, identity, precision, fsdp, packed)
    digest = ident.digest(current)
    ident.check_checkpoint(ckpt, digest, current, write=main)   # refuses another run's checkpoints
    if (ckpt / "train_done.json").exists():
        return _already_finished(model, acc, cfg, ckpt, fsdp, main, on_prepared, log)

    steps = schedule({td.name: [f["length"] for f in td.train] for td in tds}, micro * world, accum, cfg.epochs,
                     cfg.seed, cfg.group_by_length, cfg.sampling_temperature, cfg.examples_cap, cfg.max_steps,
                     {td.name: cfg.mlm_share for td in tds if td.is_mlm})
    total = len(steps)
    if len(tds) > 1:
        log("sampled batches per task: " + ", ".join(f"{t} {100 * v:.1f}%" for t, v in step_shares(steps).items()))
    if not fsdp:               # FSDP places each shard itself: the whole of an XXL model never lands on one GPU
        model.to(device)
    opt = _optimizer(model, cfg, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(cfg.warmup * total)))
    model, opt = acc.prepare(model, opt)
    if on_prepared is not None:
        on_prepared(acc, model)
    raw_model, raw_opt = acc.unwrap_model(model), getattr(opt, "optimizer", opt)
    if fsdp:
        from torch.distributed.fsdp import FSDPModule
        units = sum(isinstance(m, FSDPModule) for m in raw_model.modules())
        log(f"FSDP: parameters, gradients and optimizer states sharded over {world} processes in {units} units")
    state = _resume(ckpt, raw_model, raw_opt, sched, digest, fsdp, main)
    if state is None:
        state = _State()
        torch.manual_seed(cfg.seed)
    else:
        log(f"resuming from {ckpt / 'last.pt'} at step {state.step}/{total}")
    batches = _Batches(tds, cfg, tokenizer, device, packed,
                       models.packing_position_offset(raw_model.encoder.config) if packed else 0)
    if cfg.compile:
        # in place (nn.Module.compile): parameter names, and so checkpoints, stay those of the eager model
        raw_model.encoder.compile()
    if packed or cfg.compile:
        widths = sorted(set(sum(batches.buckets.values(), [])))
        log(f"batches: {'packed rows (features.pack)' if packed else 'padded'}"
            f"{', compiled encoder, widths ' + str(widths) if cfg.compile else ''}")
    t0 = time.time()
    model.train()
    bar = tqdm(range(state.step, total), initial=state.step, total=total, disable=not progress or not main,
               desc="train " + "+".join(batches.by_name))
    stopped = False
    for step in bar:
        task, mbs = steps[step]
        micro_batches = (batches(task, mb[rank::world] if world > 1 else mb, step, k, state)
                         for k, mb in enumerate(mbs))              # built one at a time, as they are used
        step_loss = _step(model, opt, sched, acc, task, micro_batches, len(mbs), cfg, step)
        bar.set_postfix(loss=f"{step_loss:.3f}", task=task)
        state.step = step + 1
        is_last = state.step == total
        if (cfg.eval_every > 0 and state.step % cfg.eval_every == 0) or is_last:
            _evaluate(raw_model, tokenizer, tds, state, step_loss, total, fsdp, main, digest, ckpt, log)
            if cfg.patience > 0 and state.bad_evals >= cfg.patience:
                log(f"early stopping: {state.bad_evals} evaluations without improvement")
                stopped = True
        if (cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0) or is_last or stopped:
            _save_last(raw_model, raw_opt, sched, state, cfg, fsdp, main, digest, ckpt)
        if stopped:
            break
    bar.close()
    return _finish(raw_model, acc, state, total, fsdp, main, ckpt, time.time() - t0, digest)


def _step(model, opt, sched, acc, task: str, micro_batches, n: int, cfg: TrainConfig, step: int) -> float:
    """One optimizer step over `n` micro-batches (gradient accumulation; DDP syncs on the last one only); returns
    the step's loss."""
    world = acc.num_processes
    step_loss = torch.zeros((), device=acc.device)   # summed on the device: one host sync per step, not per batch
    for k, batch in enumerate(micro_batches):
        with acc.no_sync(model) if (world > 1 and k < n - 1) else _null():
            loss = model(task, batch)["loss"] / n
            acc.backward(loss)
        step_loss += loss.detach()
    step_loss = float(step_loss)
    if not math.isfinite(step_loss):    # before the update: the weights stay as they were
        raise FloatingPointError(
            f"loss is {step_loss} at step {step} (task {task}); likely causes: learning rate too high "
            f"(lr={cfg.lr}), fp16 overflow (try precision='bf16' or 'fp32'), or labels outside the head's range")
    if cfg.max_grad_norm > 0:
        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return step_loss


def _already_finished(model, acc, cfg: TrainConfig, ckpt: Path, fsdp: bool, main: bool, on_prepared, log):
    """A finished run (train_done.json): its best weights loaded, its result read back."""
    if fsdp:   # shard first (FSDP2 prepares a model only with its optimizer, in place), then broadcast the weights
        acc.prepare(model, _optimizer(model, cfg, acc.device))
    if on_prepared is not None:
        on_prepared(acc, model)
    load_model_state(model, _read_best(ckpt / "best.pt", fsdp, main), fsdp)
    r = json.loads((ckpt / "train_done.json").read_text())
    log(f"training already finished (step {r['steps']}, best dev {r['best_score']:.2f} at step "
        f"{r['best_step']}); loaded the best weights from {ckpt}")
    return TrainResult(**r)


def _finish(raw_model, acc, state: _State, total: int, fsdp: bool, main: bool, ckpt: Path, seconds: float,
            digest: str) -> TrainResult:
    """The best weights back in the model, train_done.json written (main process), the result."""
    acc.wait_for_everyone()   # every rank reads the best.pt the main process finished writing
    best, best_step = state.best, state.best_step
    if (ckpt / "best.pt").exists():
        load_model_state(raw_model, _read_best(ckpt / "best.pt", fsdp, main), fsdp)
    elif math.isinf(best):  # no labelled dev set (e.g. pure MLM): the last weights are the result
        best, best_step = float("nan"), len(state.history) and state.history[-1]["step"]
    result = TrainResult(steps=state.step if total else 0, best_step=best_step, best_score=best,
                         dev=next((h["dev"] for h in state.history if h["step"] == best_step), {}),
                         history=state.history, seconds=seconds, tokens=state.tokens,
                         computed_tokens=state.computed, identity=digest)
    if main:
        files.atomic_write_text(ckpt / "train_done.json", json.dumps(asdict(result), default=float))
    return result


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
