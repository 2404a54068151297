"""The model ladder of the size study: hub ids, parameter counts with sources, attention kernels, and what it
takes to fine-tune each model on a given GPU (`xfer models`).

Counts and shapes live in ``resources/models.yaml`` (sources per number). The memory model is a back-of-the-envelope
estimate (docs/architecture.md "Sources"; README "Performance"), good enough to pick a strategy, not to promise a batch size:

* states: mixed-precision AdamW keeps 18 bytes per trained parameter (4 fp32 master + 2 bf16 copy + 4 grad +
  8 Adam moments); 8-bit AdamW 12 (moments in 2 bytes); FSDP shards the states over the GPUs; LoRA keeps the
  frozen model in bf16 (2 bytes) and trains ~0.5 % adapters at 18 bytes;
* activations per layer: s·b·h·34 bytes, plus 5·a·s²·b for the attention scores when the model has only eager
  attention (Korthikanti et al. 2022, 16-bit activations); gradient checkpointing keeps each layer's input
  (2·s·b·h) plus one live layer;
* ×1.1 for allocator fragmentation and +1 GB for the CUDA context.

Strategies are tried cheapest first and each keeps the savings of the ones before it: ``full`` →
``grad_checkpointing`` → ``adam8bit`` (+ checkpointing) → ``fsdp`` over N GPUs (+ checkpointing) → ``lora``
(+ checkpointing).

>>> get("xlm-roberta-large").name, get("FacebookAI/xlm-roberta-large").layers
('xlmr-large', 24)
>>> plan_strategy("xlmr-large", gpu_gb=16).strategy
'full'
>>> plan_strategy("xlmr-xxl", gpu_gb=80, n_gpus=1).strategy, plan_strategy("xlmr-xxl", gpu_gb=80, n_gpus=4).strategy
('lora', 'fsdp')
>>> get("bert-large")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: unknown model 'bert-large'; valid models: distilmbert, mbert, xlmr-base, ..., tiny-xlmr-s, tiny-xlmr-m
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from .files import RESOURCES

RESOURCE = RESOURCES / "models.yaml"
STRATEGIES = ("full", "grad_checkpointing", "adam8bit", "fsdp", "lora")
GPU_SIZES = (16, 24, 40, 80)          # GB columns of `xfer models`
GPU_COUNTS = (1, 4, 8)                # GPUs per run in `xfer models --plan`
SEQ_LEN, BATCH = 256, 8               # default micro-batch: jiant trains 4 (x8 accumulation) at 256 tokens
OVERHEAD_GB, FRAGMENTATION = 1.0, 1.1
# CPU fp32 (checked against `make realshape`, tests/realshape.py): AdamW in fp32 keeps 16 bytes per parameter
# (4 weight + 4 grad + 8 moments), activations take twice the 16-bit bytes, and instead of a CUDA context the
# process itself (Python, torch, transformers, datasets, a notebook kernel) is resident.
FP32_STATE_BYTES, CPU_PROCESS_GB = 16, 0.8
MLM_LOGIT_COPIES = 4        # measured ~3.4 logits-sized tensors at the peak of an MLM step (tests/realshape.py)
LORA_RANK = 16
REQUIRES = {"adam8bit": "bitsandbytes", "lora": "peft", "fsdp": "accelerate + an FSDP config"}


@dataclass(frozen=True)
class Model:
    name: str
    family: str
    hub_id: str | None
    params_total: int
    params_non_embedding: int
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    attention: tuple[str, ...]
    retrieval_layer: int
    aliases: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.hub_id is None

    @property
    def eager_only(self) -> bool:
        return "sdpa" not in self.attention and "flash_attention_2" not in self.attention

    @property
    def best_attention(self) -> str:
        """The kernel to ask transformers for: SDPA where declared (FA2 needs the flash-attn package), else eager."""
        return "sdpa" if "sdpa" in self.attention else "eager"


@lru_cache(maxsize=None)
def ladder() -> tuple[Model, ...]:
    import yaml
    rows = yaml.safe_load(RESOURCE.read_text(encoding="utf-8"))["models"]
    out = []
    for r in rows:
        src = {k: r.pop(k) for k in list(r) if k.endswith("_source")}
        r["attention"] = tuple(r["attention"])
        r["aliases"] = tuple(r.get("aliases") or ())
        out.append(Model(**r, sources=src))
    return tuple(out)


@lru_cache(maxsize=None)
def _strategies() -> dict:
    import yaml
    return yaml.safe_load(RESOURCE.read_text(encoding="utf-8"))["strategies"]


def strategy_lr(strategy: str, task_lr: float) -> float:
    """The default peak learning rate of a memory strategy (resources/models.yaml `strategies`, one source each):
    the task's protocol lr for the full-parameter strategies, LoRA's own for `lora`.

    >>> strategy_lr("full", 1e-5), strategy_lr("fsdp", 2e-5), strategy_lr("lora", 1e-5)
    (1e-05, 2e-05, 0.0003)
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
    lr = _strategies()[strategy]["lr"]
    return float(task_lr if lr is None else lr)


def strategy_lr_source(strategy: str) -> str:
    return _strategies()[strategy]["lr_source"]


def retrieval_layer(model: str, n_layers: int) -> tuple[int, str]:
    """(hidden_states index, the rule that gave it) for BUCC/Tatoeba: the ladder's `retrieval_layer` (8 for
    12-layer encoders, as XTREME for mBERT; 14 for XLM-R large); a model outside the ladder takes the layer of the
    ladder models of the same depth (12 -> 8, 24 -> 14, ...), else round(depth x 14/24), XLM-R large's relative depth.

    >>> retrieval_layer("FacebookAI/xlm-roberta-large", 24), retrieval_layer("my-12-layer-bert", 12)[0]
    ((14, 'ladder: xlmr-large'), 8)
    >>> retrieval_layer("my-encoder", 30)
    (18, 'not in the ladder, no ladder model has 30 layers: round(30 x 14/24)')
    """
    m = lookup(model)
    if m is not None:
        return m.retrieval_layer, f"ladder: {m.name}"
    same = sorted({x.retrieval_layer for x in ladder() if x.layers == n_layers and not x.local})
    if len(same) == 1:
        return same[0], f"not in the ladder: the layer of the ladder's {n_layers}-layer models"
    return max(1, round(n_layers * 14 / 24)), (f"not in the ladder, no ladder model has {n_layers} layers: "
                                              f"round({n_layers} x 14/24)")


def names() -> list[str]:
    return [m.name for m in ladder()]


def normalize(model: str) -> str:
    """THE model-name normaliser: a name, alias, hub id or local path -> its last path component, lower-cased
    ('FacebookAI/xlm-roberta-large/' -> 'xlm-roberta-large'). Run ids render names with runner/plans.alias, which
    also makes them filesystem-safe (and is kept as it is: existing run ids must not change)."""
    return re.split(r"[/\\]", str(model).strip().rstrip("/\\"))[-1].lower()


def lookup(model: str) -> Model | None:
    """The ladder entry for a name, alias, hub id or local path (last path component), else None."""
    key = normalize(model)
    for m in ladder():
        if key in {m.name, *(normalize(a) for a in m.aliases), *([normalize(m.hub_id)] if m.hub_id else [])}:
            return m
    return None


def get(model: str) -> Model:
    m = lookup(model)
    if m is None:
        raise ValueError(f"unknown model {model!r}; valid models: {', '.join(names())}")
    return m


def params_table():
    """One row per ladder model (name, hub id, parameter counts, log10 counts): what the RQ-size analysis joins."""
    import numpy as np
    import pandas as pd
    df = pd.DataFrame([{"ladder_name": m.name, "hub_id": m.hub_id or "(local)", "family": m.family,
                        "params_total": m.params_total, "params_non_embedding": m.params_non_embedding,
                        "layers": m.layers, "hidden": m.hidden} for m in ladder()])
    df["log10_params_total"] = np.log10(df["params_total"])
    df["log10_params_non_embedding"] = np.log10(df["params_non_embedding"])
    return df


# ---------------------------------------------------------------- memory
def _lora_params(m: Model) -> int:
    return m.layers * 4 * 2 * m.hidden * LORA_RANK        # rank-r A and B on q, k, v, o of every layer


def estimate_memory_gb(model: str | Model, strategy: str = "full", seq_len: int = SEQ_LEN, batch: int = BATCH,
                       n_gpus: int = 1, precision: str = "mixed", device: str = "gpu",
                       mlm_vocab: tuple[int, int, int] | None = None) -> float:
    """Peak training memory per GPU in GB (1e9 bytes) for `strategy`; see the module docstring for the model.
    `precision="fp32"`, `device="cpu"`: the CPU case (fp32 states and activations, the process instead of a CUDA
    context; full fine-tuning only). `mlm_vocab=(V, s, b)`: MLM co-training's vocabulary logits for b x s tokens
    (fp32 logits over the whole vocabulary at every position, as models.Head computes them: the logits, their
    log-softmax and the backward's gradient buffers, MLM_LOGIT_COPIES x 4 bytes each), which dominate activations for a
    250k vocabulary.

    >>> round(estimate_memory_gb("xlmr-large"), 1), round(estimate_memory_gb("xlmr-large", "lora"), 1)
    (14.0, 2.5)
    >>> estimate_memory_gb("xlmr-xl", "fsdp", n_gpus=4) < estimate_memory_gb("xlmr-xl", "grad_checkpointing")
    True
    """
    m = model if isinstance(model, Model) else get(model)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
    if strategy == "fsdp" and n_gpus < 2:
        raise ValueError("strategy 'fsdp' needs n_gpus >= 2")
    if precision not in ("mixed", "fp32") or device not in ("gpu", "cpu"):
        raise ValueError(f"precision must be 'mixed' or 'fp32' and device 'gpu' or 'cpu', not {precision!r}/{device!r}")
    if (precision == "fp32" or device == "cpu") and strategy != "full":
        raise ValueError("the fp32 / CPU memory model covers strategy 'full' only")
    s, b, h = seq_len, batch, m.hidden
    per_layer = s * b * h * 34 + (5 * m.heads * s * s * b if m.eager_only else 0)
    if precision == "fp32":
        per_layer *= 2
        act = m.layers * per_layer + 4 * s * b * h
        if mlm_vocab:
            act += MLM_LOGIT_COPIES * 4 * mlm_vocab[0] * mlm_vocab[1] * mlm_vocab[2]
        overhead = CPU_PROCESS_GB if device == "cpu" else OVERHEAD_GB
        return (FP32_STATE_BYTES * m.params_total + act) * FRAGMENTATION / 1e9 + overhead
    if strategy == "full":
        act = m.layers * per_layer + 2 * s * b * h
    else:                                               # every later strategy checkpoints layer inputs
        act = m.layers * 2 * s * b * h + per_layer
    if mlm_vocab:
        act += MLM_LOGIT_COPIES * 4 * mlm_vocab[0] * mlm_vocab[1] * mlm_vocab[2]
    p = m.params_total
    states = {"full": 18 * p, "grad_checkpointing": 18 * p, "adam8bit": 12 * p,
              "fsdp": 18 * p / n_gpus + 2 * 2 * (p - m.params_non_embedding + m.params_non_embedding / m.layers),
              "lora": 2 * p + 18 * _lora_params(m)}[strategy]
    return (states + act) * FRAGMENTATION / 1e9 + OVERHEAD_GB


def fits(model: str | Model, gpu_gb: float, n_gpus: int = 1, strategy: str = "full", seq_len: int = SEQ_LEN,
         batch: int = BATCH) -> bool:
    """Whether `strategy` (default: full fine-tuning) fits `n_gpus` GPUs of `gpu_gb` GB each."""
    if strategy == "fsdp" and n_gpus < 2:
        return False
    return estimate_memory_gb(model, strategy, seq_len, batch, n_gpus) <= gpu_gb


@dataclass(frozen=True)
class Plan:
    model: str
    strategy: str                 # one of STRATEGIES, or "none" when nothing fits
    memory_gb: float              # estimate per GPU for that strategy (for "none": the LoRA estimate)
    gpu_gb: float
    n_gpus: int                   # GPUs the strategy uses (1 unless fsdp)
    attention: str
    requires: str = ""
    launch: str = ""


def plan_strategy(model: str | Model, gpu_gb: float, n_gpus: int = 1, seq_len: int = SEQ_LEN,
                  batch: int = BATCH) -> Plan:
    """The cheapest strategy that fits: full, gradient checkpointing, 8-bit AdamW, FSDP over `n_gpus`, LoRA."""
    m = model if isinstance(model, Model) else get(model)
    for strat in STRATEGIES:
        if strat == "fsdp" and n_gpus < 2:
            continue
        n = n_gpus if strat == "fsdp" else 1
        mem = estimate_memory_gb(m, strat, seq_len, batch, n)
        if mem <= gpu_gb:
            launch = (f"accelerate launch --config_file params/accelerate/fsdp_full_shard.yaml --num_processes {n}"
                      if strat == "fsdp"
                      else "papermill / xfer run (one process)")
            return Plan(m.name, strat, round(mem, 1), gpu_gb, n, m.best_attention, REQUIRES.get(strat, ""), launch)
    return Plan(m.name, "none", round(estimate_memory_gb(m, "lora", seq_len, batch), 1), gpu_gb, n_gpus,
                m.best_attention, "a larger GPU, QLoRA or CPU offload", "")


def table(gpu_sizes=GPU_SIZES, n_gpus: int = 1, seq_len: int = SEQ_LEN, batch: int = BATCH) -> list[dict]:
    """One row per model: counts, kernels, full fine-tuning memory, and the planned strategy per GPU size."""
    rows = []
    for m in ladder():
        row = {"model": m.name, "hub_id": m.hub_id or "(local: xfer tiny)", "params_total": m.params_total,
               "params_non_embedding": m.params_non_embedding, "layers": m.layers, "hidden": m.hidden,
               "attention": list(m.attention), "retrieval_layer": m.retrieval_layer,
               "full_ft_gb": round(estimate_memory_gb(m, "full", seq_len, batch), 1)}
        for g in gpu_sizes:
            row[f"plan_{g}gb"] = plan_strategy(m, g, n_gpus, seq_len, batch).strategy
        rows.append(row)
    return rows


def plan_matrix(gpu_sizes=GPU_SIZES, gpu_counts=GPU_COUNTS, seq_len: int = SEQ_LEN, batch: int = BATCH) -> list[dict]:
    """One row per model: the planned strategy and its GB per GPU for every (GPU size, GPU count)."""
    rows = []
    for m in ladder():
        row = {"model": m.name, "params_total": m.params_total}
        for n in gpu_counts:
            for g in gpu_sizes:
                p = plan_strategy(m, g, n, seq_len, batch)
                row[f"{n}x{g}gb"] = {"strategy": p.strategy, "memory_gb": p.memory_gb, "n_gpus": p.n_gpus}
        rows.append(row)
    return rows


# ---------------------------------------------------------------- CLI
_SHORT = {"full": "full", "grad_checkpointing": "ckpt", "adam8bit": "8bit", "fsdp": "fsdp", "lora": "lora",
          "none": "-"}


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _print_matrix(seq_len: int, batch: int) -> None:
    rows = plan_matrix(seq_len=seq_len, batch=batch)
    print(f"strategy (GB per GPU) per GPU size and GPUs per run; micro-batch {batch} x {seq_len} tokens per GPU; "
          "full = full fine-tuning, ckpt = + gradient checkpointing, 8bit = + 8-bit AdamW, fsdp = FSDP full shard "
          "over the GPUs, lora = LoRA (r 16), - = nothing fits")
    cols = [(n, g) for n in GPU_COUNTS for g in GPU_SIZES]
    print(f"{'model':17} {'params':>7} " + " ".join(f"{f'{n}x{g}G':>11}" for n, g in cols))
    for r in rows:
        cells = []
        for n, g in cols:
            c = r[f"{n}x{g}gb"]
            cells.append(f"{_SHORT[c['strategy']]:>4} {c['memory_gb']:5.1f}G" if c["strategy"] != "none"
                         else f"{'-':>11}")
        print(f"{r['model']:17} {_count(r['params_total']):>7} " + " ".join(f"{c:>11}" for c in cells))
    print("memory model: xfer_utils/ladder.py docstring (an estimate to choose a strategy, not a promise); one "
          "config in detail: xfer models --plan --gpu-mem 80 --gpus 4")


def cmd_models(args) -> int:
    if args.plan:
        if args.gpu_mem is None and args.gpus is None:     # the whole matrix: 16/24/40/80 GB x 1/4/8 GPUs
            if args.json:
                print(json.dumps(plan_matrix(seq_len=args.seq_len, batch=args.batch), indent=2))
            else:
                _print_matrix(args.seq_len, args.batch)
            return 0
        gpu_mem = 80.0 if args.gpu_mem is None else args.gpu_mem
        gpus = 1 if args.gpus is None else args.gpus
        plans = [plan_strategy(m, gpu_mem, gpus, args.seq_len, args.batch) for m in ladder()]
        if args.json:
            print(json.dumps([asdict(p) for p in plans], indent=2))
            return 0
        print(f"plan for {gpus} x {gpu_mem:g} GB, micro-batch {args.batch} x {args.seq_len} tokens")
        print(f"{'model':17} {'strategy':19} {'GB/GPU':>7} {'GPUs':>4} {'attention':9} requires / launch")
        for p in plans:
            extra = "; ".join(x for x in (p.requires, p.launch) if x)
            print(f"{p.model:17} {p.strategy:19} {p.memory_gb:7.1f} {p.n_gpus:4d} {p.attention:9} {extra}")
        print()
        _print_matrix(args.seq_len, args.batch)
        return 0
    rows = table(n_gpus=args.gpus or 1, seq_len=args.seq_len, batch=args.batch)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"model ladder (micro-batch {args.batch} x {args.seq_len} tokens; strategy per single GPU: full = full "
          "fine-tuning fits, ckpt = gradient checkpointing, 8bit = 8-bit AdamW, lora = LoRA, - = none)")
    head = " ".join(f"{g:>4}G" for g in GPU_SIZES)
    print(f"{'model':17} {'hub id':44} {'params':>7} {'non-emb':>7} {'L':>3} {'d':>5} {'full GB':>7} {head}  attention")
    for r in rows:
        fit = " ".join(f"{_SHORT[r[f'plan_{g}gb']]:>5}" for g in GPU_SIZES)
        print(f"{r['model']:17} {r['hub_id']:44} {_count(r['params_total']):>7} "
              f"{_count(r['params_non_embedding']):>7} {r['layers']:3d} {r['hidden']:5d} {r['full_ft_gb']:7.1f} "
              f"{fit}  {'/'.join(r['attention'])}")
    print("sources: xfer_utils/resources/models.yaml (one per count); memory model: xfer_utils/ladder.py docstring")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="the model ladder: parameters, attention kernels, memory, what fits a GPU")
    p.add_argument("--plan", action="store_true", help="the training strategy per model: for 16/24/40/80 GB x 1/4/8 "
                   "GPUs, and in detail for --gpu-mem/--gpus when given")
    p.add_argument("--gpu-mem", type=float, default=None, help="memory per GPU in GB (default 80)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs per run (FSDP needs >= 2; default 1)")
    p.add_argument("--seq-len", type=int, default=SEQ_LEN, help=f"tokens per sequence (default {SEQ_LEN})")
    p.add_argument("--batch", type=int, default=BATCH, help=f"micro-batch per GPU (default {BATCH})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)
