"""What one run of a plan needs from a cluster: the `resources:` blocks of plan files and site files.

**Resources** (optional ``resources:`` blocks, top level and per phase; the phase's keys win) describe one run's
job: ``gpus`` (GPUs per run), ``gpu_mem`` (GB per GPU, for the memory planner), ``mem`` (host memory: ``64G``,
``500M`` or a number of GB), ``time`` (Slurm's formats: minutes, ``H:MM:SS``, ``D-HH:MM:SS``), ``partition``,
``cpus`` (per run), ``slurm`` (any further sbatch options, e.g. ``{account: nlp, qos: high}``), and ``models``
(per-model overrides: ``{xlmr-xxl: {gpus: 4}}``; a key matches a run's ``model`` exactly or as the same ladder
model, so ``xlmr-xxl`` matches ``facebook/xlm-roberta-xxl``). A site file (``xfer run --resources FILE``: the same
keys plus ``phases: {<phase>: {...}}``) comes on top of the plan's blocks, so one plan runs on several clusters.
The submitit launcher turns them into job requests; the local launcher ignores them. With ``gpu_mem``, each run
whose ``model`` is on the ladder gets ``strategy`` = the planner's choice for ``gpus`` x ``gpu_mem``
(``ladder.plan_strategy``), and with ``gpus`` > 1 ``n_processes`` = ``gpus``, unless the plan sets them; like
every param they reach only notebooks that declare them, and land in the run's params.yaml. A model that fits no
strategy is an error.

>>> time_minutes("2-00:00:00"), time_minutes("12:00:00"), time_minutes("90"), time_minutes("30:00"), mem_gb("500M")
(2880, 720, 90, 30, 0.5)
"""
from __future__ import annotations

import os
import re
from pathlib import Path


RESOURCE_KEYS = {"gpus": (int,), "gpu_mem": (int, float), "mem": (str, int, float), "time": (str, int),
                 "partition": (str,), "cpus": (int,), "slurm": (dict,), "models": (dict,),
                 "runs_per_gpu": (int,)}    # local launcher: runs sharing one GPU (runner/execute.Placer, `--runs-per-gpu`)


def time_minutes(value) -> int:
    """A Slurm time limit (minutes, MM:SS, H:MM:SS, D-H, D-H:MM, D-H:MM:SS) in whole minutes (rounded up)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"resources time must be minutes or a Slurm time string like '12:00:00', got {value!r}")
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not m:
        raise ValueError(f"resources time {value!r} is not a Slurm time (minutes, MM:SS, H:MM:SS, D-HH:MM:SS)")
    d, a, b, c = (int(x) if x else None for x in m.groups())
    if d is not None:                       # D-H, D-H:MM, D-H:MM:SS
        secs = d * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:                     # H:MM:SS
        secs = a * 3600 + b * 60 + c
    elif b is not None:                     # MM:SS
        secs = a * 60 + b
    else:                                   # minutes
        secs = a * 60
    return -(-secs // 60)


def mem_gb(value) -> float:
    """Host memory as GB: a number (GB) or a Slurm size ('64G', '64GB', '500M', '1T')."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)B?\s*", str(value), re.I)
    if not m:
        raise ValueError(f"resources mem {value!r} is not a size like 64G, 500M or a number of GB")
    return float(m.group(1)) * {"K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3, "": 1.0}[m.group(2).upper()]


def check_resources(res, where: str, extra: tuple = ()) -> dict:
    """A `resources:` block, keys and types checked (`models:` overrides recursively)."""
    if res is None:
        return {}
    if not isinstance(res, dict):
        raise ValueError(f"{where}: resources must be a mapping with keys {', '.join(RESOURCE_KEYS)}")
    for k, v in res.items():
        if k in extra:
            continue
        if k not in RESOURCE_KEYS:
            raise ValueError(f"{where}: unknown resources key {k!r}; valid keys: "
                             f"{', '.join([*RESOURCE_KEYS, *extra])}")
        if isinstance(v, bool) or not isinstance(v, RESOURCE_KEYS[k]):
            raise ValueError(f"{where}: resources {k!r} must be {' or '.join(t.__name__ for t in RESOURCE_KEYS[k])}"
                             f", got {v!r}")
    if "time" in res:
        time_minutes(res["time"])
    if "mem" in res:
        mem_gb(res["mem"])
    if res.get("gpus", 1) < 0 or res.get("gpu_mem", 1) <= 0 or res.get("runs_per_gpu", 1) < 1:
        raise ValueError(f"{where}: resources gpus must be >= 0, gpu_mem > 0 and runs_per_gpu >= 1")
    for model, sub in (res.get("models") or {}).items():
        if isinstance(sub, dict) and "models" in sub:
            raise ValueError(f"{where}: resources models.{model} cannot hold models: again")
        check_resources(sub, f"{where}: resources models.{model}")
    return dict(res)


def load_site(path: str | os.PathLike | None) -> dict:
    """A site resources file (`xfer run --resources FILE`): a resources block plus `phases: {phase: {...}}`."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"resources file {p} does not exist")
    from ..files import read_yaml
    raw = read_yaml(p, "resources file")
    site = check_resources(raw, f"resources file {p}", extra=("phases",))
    phases = site.get("phases") or {}
    if not isinstance(phases, dict):
        raise ValueError(f"resources file {p}: phases must map phase names to resources blocks")
    for ph, block in phases.items():
        check_resources(block, f"resources file {p}, phase {ph!r}")
    return site


def _same_model(key: str, model) -> bool:
    if not isinstance(model, str):
        return False
    if key == model:
        return True
    from .. import ladder
    a, b = ladder.lookup(key), ladder.lookup(model)
    return a is not None and a is b


def run_resources(layers: list[dict], params: dict) -> dict:
    """Resources of one run: the blocks in order (later wins), then their `models:` overrides for the run's model
    in the same order."""
    out: dict = {}
    for block in layers:
        out.update({k: v for k, v in block.items() if k not in ("models", "phases")})
    for block in layers:
        for key, sub in (block.get("models") or {}).items():
            if _same_model(str(key), params.get("model")):
                out.update(sub)
    return out


def plan_params(params: dict, res: dict, where: str) -> dict:
    """`strategy` / `n_processes` from the run's resources (see the module docstring); {} when not applicable."""
    out = {}
    gpus = int(res.get("gpus", 1) or 1)
    if res.get("gpu_mem") and "strategy" not in params and isinstance(params.get("model"), str):
        from .. import ladder
        m = ladder.lookup(params["model"])
        if m is not None:
            p = ladder.plan_strategy(m, float(res["gpu_mem"]), gpus)
            if p.strategy == "none":
                raise ValueError(f"{where}: {m.name} fits no strategy on {gpus} x {res['gpu_mem']} GB GPUs (LoRA needs "
                                 f"~{p.memory_gb} GB per GPU); raise resources gpu_mem/gpus (see `xfer models --plan`)")
            out["strategy"] = p.strategy
    if gpus > 1 and "n_processes" not in params:
        out["n_processes"] = gpus
    return out
