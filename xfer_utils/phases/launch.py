"""Beyond one process: the training phases under `accelerate launch` (DDP / FSDP), and the memory strategies of the
model ladder's planner (gradient checkpointing, 8-bit AdamW, FSDP, LoRA) applied to a run.

A notebook calls :func:`run_phase` instead of ``runs.intermediate`` / ``runs.target``. With one process and a
strategy that needs no launcher it calls the phase in the notebook's own process (nothing changes); otherwise
:func:`run_distributed` starts::

    python -m accelerate.commands.launch --num_processes N --config_file params/accelerate/<cfg>.yaml \\
        -m xfer_utils.phases.launch --phase xfer_utils.phases.runs:intermediate --kwargs <ckpt>/launch/kwargs.json \\
        --summary <ckpt>/launch/summary.json

as a subprocess of the kernel, streams its output line by line into the notebook, and returns the summary the
child wrote. Every rank runs the same phase function (``runs.intermediate`` / ``runs.target``); train.py shards
each global micro-batch by rank, so the batch schedule, the effective batch and the seed are those of the
one-process run. In the child (see :func:`_child_main`):

* only the main process writes the run's outputs: other ranks get a scratch ``run_dir`` that is deleted at the end;
* the encoder is saved once, by the main process, between two barriers (the phase function gets a ``save_encoder``
  argument that does it; nothing is patched into ``models``), so the next phase - or XCOPA's SIQA->COPA chain
  inside one run - loads a complete folder as usual; under FSDP the full state dict is gathered first
  (``train.model_state``, a collective) and only the encoder's tensors are written;
* only the main process logs; multi-task models get ``find_unused_parameters=True`` (one head per step;
  train._accelerator).

Which accelerate config: ``ddp_cpu`` without CUDA (gloo; tests), ``fsdp_full_shard`` when the planner says the
model needs sharding (or, without a GPU size, when it has >= ``FSDP_MIN_PARAMS`` parameters), else ``ddp``.

>>> [choose_config(m, n, cuda=c) for m, n, c in [("xlmr-large", 4, True), ("xlmr-xxl", 4, True), ("xlmr-xl", 2, False)]]
['ddp', 'fsdp_full_shard', 'ddp_cpu']
>>> choose_config("xlmr-xl", 4, gpu_gb=80, cuda=True), choose_config("xlmr-xl", 4, gpu_gb=24, cuda=True)
('ddp', 'fsdp_full_shard')
>>> strategy_options("adam8bit")
{'gradient_checkpointing': True, 'optimizer': 'adamw8bit'}
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from .. import files
from ..files import REPO

CONFIG_DIR = REPO / "params" / "accelerate"
FSDP_MIN_PARAMS = 1_000_000_000      # without a GPU size: XLM-R XL / XXL, mT5-XL / XXL are sharded
STRATEGIES = ("auto", "full", "grad_checkpointing", "adam8bit", "fsdp", "lora")
LORA_RANK, LORA_ALPHA = 16, 32
# q, k, v and the attention output projection of every layer (the ladder's LoRA memory model), per family
LORA_TARGETS = {
    "xlm-roberta": r".*\.attention\.(self\.(query|key|value)|output\.dense)$",
    "xlm-roberta-xl": r".*\.attention\.(self\.(query|key|value)|output\.dense)$",
    "bert": r".*\.attention\.(self\.(query|key|value)|output\.dense)$",
    "roberta": r".*\.attention\.(self\.(query|key|value)|output\.dense)$",
    "rembert": r".*\.attention\.(self\.(query|key|value)|output\.dense)$",
    "deberta-v2": r".*\.attention\.(self\.(query_proj|key_proj|value_proj)|output\.dense)$",
    "distilbert": r".*\.attention\.(q_lin|k_lin|v_lin|out_lin)$",
    "t5": r".*\.SelfAttention\.(q|k|v|o)$",
    "mt5": r".*\.SelfAttention\.(q|k|v|o)$",
    "umt5": r".*\.SelfAttention\.(q|k|v|o)$",
}
# FSDP wrap unit where the model class's `_no_split_modules` does not say (tests/test_families.py checks every family)
LAYER_CLASSES = {"distilbert": "TransformerBlock", "deberta-v2": "DebertaV2Layer", "rembert": "RemBertLayer"}
PROGRESS_EVERY = 30.0                # seconds between two progress-bar lines in the notebook


# ---------------------------------------------------------------- strategies
def strategy_options(strategy: str) -> dict:
    """Training options (TrainConfig fields, plus `lora_rank` for the phase) that realise a planner strategy.
    Every strategy after `full` keeps gradient checkpointing, as in the ladder's memory model."""
    if strategy not in STRATEGIES or strategy == "auto":
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES[1:])}")
    return {"full": {}, "grad_checkpointing": {"gradient_checkpointing": True},
            "adam8bit": {"gradient_checkpointing": True, "optimizer": "adamw8bit"},
            "fsdp": {"gradient_checkpointing": True},
            "lora": {"gradient_checkpointing": True, "lora_rank": LORA_RANK}}[strategy]


def gpu_info() -> tuple[float | None, int]:
    """(GB of memory per GPU, number of GPUs) on this machine; (None, 0) without CUDA."""
    import torch
    if not torch.cuda.is_available():
        return None, 0
    return torch.cuda.get_device_properties(0).total_memory / 1e9, torch.cuda.device_count()


def resolve_strategy(strategy: str, model: str, n_processes: int = 1, gpu_gb: float | None = None,
                     n_gpus: int | None = None) -> str:
    """`auto` -> the ladder planner's choice for `model` on this machine's GPUs (or `gpu_gb` x `n_gpus`);
    `full` on CPU and for models outside the ladder. Anything else is checked and returned."""
    from .. import ladder
    if strategy != "auto":
        strategy_options(strategy)
        if strategy == "fsdp" and n_processes < 2:
            raise ValueError("strategy 'fsdp' shards over processes: set n_processes >= 2 (one per GPU)")
        return strategy
    if gpu_gb is None:
        gpu_gb, found = gpu_info()
        n_gpus = n_gpus or found
    m = ladder.lookup(model)
    if gpu_gb is None or m is None:
        return "full"
    plan = ladder.plan_strategy(m, gpu_gb, max(n_processes, 1) if n_gpus is None else min(n_gpus, n_processes))
    if plan.strategy == "none":
        raise ValueError(f"{m.name} does not fit {n_processes} x {gpu_gb:.0f} GB GPUs with any strategy (LoRA needs "
                         f"~{plan.memory_gb} GB); see `xfer models --plan`")
    return plan.strategy


def choose_config(model: str, n_processes: int, strategy: str | None = None, gpu_gb: float | None = None,
                  cuda: bool | None = None) -> str:
    """Name of the accelerate config (params/accelerate/<name>.yaml) for a multi-process run of `model`."""
    from .. import ladder
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
    if not cuda:
        return "ddp_cpu"
    if strategy == "fsdp":
        return "fsdp_full_shard"
    m = ladder.lookup(model)
    if m is None:
        return "ddp"
    if gpu_gb is not None:
        one_gpu = ladder.plan_strategy(m, gpu_gb, 1).strategy
        return "ddp" if one_gpu in ("full", "grad_checkpointing") else "fsdp_full_shard"
    return "fsdp_full_shard" if m.params_total >= FSDP_MIN_PARAMS else "ddp"


def config_path(config: str) -> Path:
    """A config name (params/accelerate/<name>.yaml) or a path to an accelerate config file."""
    p = Path(config)
    if p.suffix in (".yaml", ".yml", ".json") and p.exists():
        return p.resolve()
    p = CONFIG_DIR / f"{config}.yaml"
    if not p.exists():
        have = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"accelerate config {config!r} not found: neither a file nor {p}; configs in "
                                f"{CONFIG_DIR}: {have}")
    return p


def is_fsdp_config(config: str | os.PathLike) -> bool:
    import yaml
    return (yaml.safe_load(Path(config_path(str(config))).read_text()) or {}).get("distributed_type") == "FSDP"


def layer_class(model: str) -> str | None:
    """The transformer block class FSDP wraps one by one (`fsdp_transformer_layer_cls_to_wrap`): our
    MultiTaskModel has no `_no_split_modules`, so it is read from the encoder's class."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING
    config = AutoConfig.from_pretrained(model)
    if config.model_type in LAYER_CLASSES:
        return LAYER_CLASSES[config.model_type]
    try:
        cls = MODEL_MAPPING[type(config)]
    except KeyError:
        return None
    blocks = [n for n in (getattr(cls, "_no_split_modules", None) or []) if n.endswith(("Layer", "Block"))]
    return blocks[0] if blocks else None


# ---------------------------------------------------------------- LoRA (peft, imported lazily)
def add_lora(net, rank: int = LORA_RANK, alpha: int = LORA_ALPHA, dropout: float = 0.0):
    """Freeze `net.encoder` and give it LoRA adapters (peft) on q, k, v and the attention output of every layer;
    heads stay fully trainable. Returns `net` (its encoder is now a peft model)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("strategy 'lora' needs peft: pip install peft") from e
    enc = net.encoder
    target = LORA_TARGETS.get(enc.config.model_type)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, bias="none")
    if target is None:                                    # peft's own per-architecture defaults
        cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none")
    if hasattr(enc, "enable_input_require_grads"):        # reentrant checkpointing needs grads at the inputs
        enc.enable_input_require_grads()
    net.encoder = get_peft_model(enc, cfg)
    return net


def merge_lora(net):
    """Fold the adapters into the encoder's weights (W + B A * alpha / r) and drop peft: what `save_encoder`
    writes is then a plain encoder, so transfer to the next phase stays encoder-only."""
    if hasattr(net.encoder, "merge_and_unload"):
        net.encoder = net.encoder.merge_and_unload()
    return net


def trainable_parameters(net) -> tuple[int, int]:
    return (sum(p.numel() for p in net.parameters() if p.requires_grad), sum(p.numel() for p in net.parameters()))


# ---------------------------------------------------------------- what the notebooks call
def phase_spec(phase) -> str:
    """The 'package.module:function' a launched process imports: derived from the function the notebook passed
    (runs.intermediate, runs.target), or such a string already (a test's phase module)."""
    if callable(phase):
        return f"{phase.__module__}:{phase.__qualname__}"
    if not isinstance(phase, str) or ":" not in phase:
        raise ValueError(f"phase {phase!r} is neither a phase function (e.g. runs.intermediate, runs.target) nor "
                         f"a 'package.module:function' string")
    return phase


def phase_function(phase):
    """A phase function, or the one a 'package.module:function' string names (in the launched process)."""
    if callable(phase):
        return phase
    mod, _, name = phase_spec(phase).partition(":")
    return getattr(importlib.import_module(mod), name)


def _check_supported(phase, options: dict) -> None:
    """Fail before any compute when the phase / TrainConfig cannot take a strategy's options yet."""
    from .. import train
    fields = train.TrainConfig.__dataclass_fields__
    for k in options:
        if k == "lora_rank":
            params = inspect.signature(phase_function(phase)).parameters
            if "lora_rank" not in params:
                raise NotImplementedError(f"strategy 'lora' needs the phase function {phase_spec(phase)!r} to take "
                                          f"`lora_rank` "
                                          f"(wrap with launch.add_lora after models.build, launch.merge_lora before "
                                          f"models.save_encoder); this version does not: choose another strategy")
        elif k not in fields:
            raise NotImplementedError(f"this strategy needs TrainConfig.{k}, which this version of train.py does "
                                      f"not have: choose another strategy")


def run_phase(phase, *, strategy: str = "auto", n_processes: int = 1, config: str = "", log=print,
              env: dict | None = None, **kwargs) -> dict:
    """Run a training phase (the function itself: runs.intermediate, runs.target) with a memory strategy and
    `n_processes` processes; returns the phase's summary with
    a `strategy` entry (what was applied, and how it was launched)."""
    model = str(kwargs.get("model", ""))
    n_processes = max(1, int(n_processes))
    chosen = resolve_strategy(strategy, model, n_processes)
    options = strategy_options(chosen)
    if options.get("optimizer") == "adamw8bit" and files.env("XFER_REHEARSAL") and not gpu_info()[1]:
        # `xfer rehearse` on a CPU: bitsandbytes' 8-bit AdamW needs a GPU; the rest of the strategy runs as planned
        options = {**options, "optimizer": "adamw"}
        log("rehearsal on CPU: 8-bit AdamW (bitsandbytes) needs a GPU; AdamW substitutes for it in this run")
    _check_supported(phase, options)
    kwargs = {**kwargs, **{k: v for k, v in options.items() if k not in kwargs}}
    if "strategy" in inspect.signature(phase_function(phase)).parameters:   # recorded in every results row
        kwargs.setdefault("strategy", chosen)
    if chosen == "fsdp" and not config:
        config = "fsdp_full_shard"
    if n_processes == 1 and config:
        log(f"one process: accelerate config {config!r} not used")
        config = ""
    if n_processes > 1 and not config:
        config = choose_config(model, n_processes, chosen, gpu_info()[0])
    how = {"strategy": chosen, "requested": strategy, "n_processes": n_processes, "config": config or None,
           "options": options}
    log(f"strategy: {chosen}" + (" (auto)" if strategy == "auto" else "") +
        (f"; {n_processes} processes with accelerate config {config}" if n_processes > 1 or config else
         "; one process"))
    if n_processes == 1 and not config:
        summary = phase_function(phase)(log=log, **kwargs)
    else:
        summary = run_distributed(phase, kwargs, n_processes, config, log=log, env=env)
    summary = dict(summary or {})
    summary["strategy"] = how
    return summary


def launch_command(phase: str, kwargs_file: Path, summary_file: Path, n_processes: int,
                   config: str | None = None, fsdp_layer: str | None = None) -> list[str]:
    child = ["-m", "xfer_utils.phases.launch", "--phase", phase, "--kwargs", str(kwargs_file), "--summary",
             str(summary_file)]
    if n_processes <= 1 and not config:
        return [sys.executable, *child]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n_processes)]
    if config:
        cmd += ["--config_file", str(config_path(config))]
    else:
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["--multi_gpu"] if n_processes > 1 else []
    if fsdp_layer:
        cmd += ["--fsdp_transformer_layer_cls_to_wrap", fsdp_layer]
    return cmd + child


def run_distributed(phase, kwargs: dict, n_processes: int, config: str | None = None, log=print,
                    env: dict | None = None) -> dict:
    """Launch `phase` (e.g. runs.intermediate) with `accelerate launch --num_processes N [--config_file ...]` as a
    subprocess; its stdout/stderr go to `log` line by line (tqdm's carriage-return updates count as lines, at most
    one per TQDM_MININTERVAL seconds); returns the summary the main process wrote. Raises RuntimeError with the
    last lines of output when the launch fails."""
    kwargs = {k: v for k, v in kwargs.items() if k != "log"}
    fn_name = phase_spec(phase)
    if callable(phase):              # the child calls fn(**kwargs): every parameter without a default must be there
        for name, par in inspect.signature(phase).parameters.items():
            if par.default is par.empty and par.kind in (par.POSITIONAL_OR_KEYWORD, par.KEYWORD_ONLY) \
                    and name != "log" and name not in kwargs:
                raise ValueError(f"run_distributed({fn_name!r}) needs {name!r} among the keyword arguments")
    fsdp_layer = None
    if config and is_fsdp_config(config):
        fsdp_layer = layer_class(str(kwargs.get("init_from") or kwargs["model"]))
        if not gpu_info()[1] and files.env("XFER_REHEARSAL"):
            log("rehearsal on CPU: FSDP2 shards over CPU processes (gloo), as on GPUs (launch._fsdp_on_cpu)")
        elif not gpu_info()[1]:
            log("note: accelerate shards with FSDP only on GPUs; on this machine the processes train full "
                "replicas (gloo), with the same results")
    base = Path(kwargs["checkpoint_dir"]) / "launch" if kwargs.get("checkpoint_dir") else Path(tempfile.mkdtemp())
    base.mkdir(parents=True, exist_ok=True)
    kwargs_file, summary_file = base / "kwargs.json", base / "summary.json"
    summary_file.unlink(missing_ok=True)
    kwargs_file.write_text(json.dumps(kwargs, indent=1, default=str), encoding="utf-8")
    cmd = launch_command(fn_name, kwargs_file, summary_file, n_processes, config, fsdp_layer)
    (base / "command.txt").write_text(" ".join(cmd) + "\n", encoding="utf-8")
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "10"),
                 **(env or {})}
    if "PYTHONPATH" in (env or {}) and os.environ.get("PYTHONPATH"):
        child_env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
    log(f"launching {n_processes} process{'es' * (n_processes > 1)}: {' '.join(cmd[1:])}")
    t0 = time.time()
    tail: deque = deque(maxlen=40)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env, cwd=str(REPO),
                            start_new_session=True)
    pending, last = None, 0.0      # progress-bar updates (\r): at most one line per PROGRESS_EVERY seconds
    try:
        for line, is_progress in _lines(proc.stdout):
            tail.append(line)
            if is_progress:
                pending = line
                if time.time() - last < PROGRESS_EVERY:
                    continue
            pending, last = None, time.time() if is_progress else last
            log(line)
        if pending:
            log(pending)
        rc = proc.wait()
    except BaseException:            # KeyboardInterrupt from the kernel: stop the whole process group
        _kill_group(proc)
        raise
    if rc != 0:
        raise RuntimeError(f"training under accelerate launch failed (exit code {rc}); command in "
                           f"{base / 'command.txt'}; last lines:\n" + "\n".join(tail))
    if not summary_file.exists():
        raise RuntimeError(f"the launched phase ended without writing {summary_file}; last lines:\n" + "\n".join(tail))
    log(f"launched training finished in {time.time() - t0:.1f} s")
    return json.loads(summary_file.read_text(encoding="utf-8"))


def _lines(stream):
    """(line, is_progress) of a byte stream: split at \\n, and at \\r (a progress bar's update: is_progress),
    decoded, empty ones dropped.

    >>> import io
    >>> list(_lines(io.BytesIO(b"a\\r\\nbar 1\\rbar 2\\rdone\\nlast")))
    [('a', False), ('bar 1', True), ('bar 2', True), ('done', False), ('last', False)]
    """
    buf = b""
    read = (lambda: os.read(stream.fileno(), 65536)) if _has_fd(stream) else (lambda: stream.read(65536))
    while True:
        chunk = read()
        if not chunk:
            break
        buf = (buf + chunk).replace(b"\r\n", b"\n")
        while True:
            i = min((j for j in (buf.find(b"\n"), buf.find(b"\r")) if j >= 0), default=-1)
            if i < 0 or (buf[i:i + 1] == b"\r" and i == len(buf) - 1):   # a lone \r at the end may start \r\n
                break
            part, sep, buf = buf[:i], buf[i:i + 1], buf[i + 1:]
            s = part.decode("utf-8", "replace").rstrip()
            if s:
                yield s, sep == b"\r"
    s = buf.replace(b"\r", b"").decode("utf-8", "replace").rstrip()
    if s:
        yield s, False


def _has_fd(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (OSError, AttributeError, ValueError):
        return False


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------- the launched process (every rank)
class _MainProcessSaver:
    """The phase's `save_encoder` in the launched processes (every rank calls it): the encoder is written once, by
    the main process, between barriers. Under FSDP the full weights are first gathered, a collective, through the
    accelerator and prepared model that train.train hands to `on_prepared` (explicit arguments: nothing in
    accelerate or models is replaced)."""

    def __init__(self, state):
        self.state, self.acc, self.model = state, None, None

    def on_prepared(self, acc, model) -> None:
        self.acc, self.model = acc, model

    def __call__(self, model, tokenizer, out) -> Path:
        from .. import models, train
        full = None
        if self.acc is not None and self.acc.distributed_type.name == "FSDP":
            full = train.model_state(self.model, fsdp=True)     # collective: every rank takes part
        self.state.wait_for_everyone()
        if self.state.is_main_process:
            if full is None:
                models.save_encoder(model, tokenizer, out)
            else:
                enc = {k[len("encoder."):]: v for k, v in full.items() if k.startswith("encoder.")}
                Path(out).mkdir(parents=True, exist_ok=True)
                self.acc.unwrap_model(model).encoder.save_pretrained(out, state_dict=enc)
                tokenizer.save_pretrained(out)
        self.state.wait_for_everyone()                           # the folder is complete before anyone reads it
        return Path(out)


def _fsdp_on_cpu() -> None:
    """For `xfer rehearse` on a CPU (XFER_REHEARSAL set): accelerate launch with the FSDP config sets
    ACCELERATE_USE_FSDP on CPU too, but AcceleratorState turns FSDP on only on accelerators and falls back to
    MULTI_CPU; torch's FSDP2 (fully_shard) runs on a CPU mesh over gloo, so the state is set to FSDP where
    accelerate would (as tests/test_launch.py's FSDP test does): the rest is the GPU path."""
    from accelerate.state import AcceleratorState, DistributedType, PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin
    init = AcceleratorState.__init__

    def _init(self, *a, **kw):
        init(self, *a, **kw)
        if self.distributed_type == DistributedType.MULTI_CPU:
            self.fsdp_plugin = kw.get("fsdp_plugin") or FullyShardedDataParallelPlugin()
            self.distributed_type = DistributedType.FSDP
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState.__init__ = _init


def _child_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xfer_utils.phases.launch",
                                 description="one rank of a launched training phase (started by run_distributed)")
    ap.add_argument("--phase", required=True, help="the phase function as package.module:function")
    ap.add_argument("--kwargs", required=True, help="JSON file of the phase function's keyword arguments")
    ap.add_argument("--summary", required=True, help="where the main process writes the phase's summary (JSON)")
    args = ap.parse_args(argv)
    import torch
    from accelerate import PartialState

    from . import env
    kwargs = json.loads(Path(args.kwargs).read_text(encoding="utf-8"))
    if (files.env("XFER_REHEARSAL") and os.environ.get("ACCELERATE_USE_FSDP") == "true"
            and not torch.cuda.is_available()):
        _fsdp_on_cpu()
    state = PartialState(cpu=not torch.cuda.is_available())     # first: it pins this rank's GPU
    env.seed_everything(int(kwargs.get("seed", 1)))             # what env.setup does, without touching CUDA
    import datasets
    from transformers.utils import logging as hf_logging
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    save_encoder = _MainProcessSaver(state)
    fn = phase_function(args.phase)
    sig = inspect.signature(fn).parameters
    if "save_encoder" in sig or any(p.kind is p.VAR_KEYWORD for p in sig.values()):
        kwargs["save_encoder"] = save_encoder     # handed to the phase, not patched into models
    main = state.is_main_process
    scratch = None
    if not main:                       # other ranks compute what the main one does, but write elsewhere
        scratch = tempfile.mkdtemp(prefix=f"xfer-rank{state.process_index}-")
        kwargs["run_dir"] = scratch
    else:
        print(f"[launch] {state.num_processes} process(es), {state.distributed_type.value}"
              f"{' / ' + str(state.backend) if getattr(state, 'backend', None) else ''}, device {state.device}",
              flush=True)

    def log(*a, **k):
        if main:
            print(*a, **k, flush=True)
    try:
        summary = fn(log=log, **kwargs)
        if main:
            files.atomic_write_text(Path(args.summary), json.dumps(summary, indent=1, default=str))
        state.wait_for_everyone()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if state.num_processes > 1:
        state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
