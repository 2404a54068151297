"""GPU-hour estimates for `xfer run PLAN --dry-run`: tokens to process / throughput. ESTIMATES, not measurements.

    hours = (training tokens / rate + evaluation tokens / (EVAL_SPEEDUP * rate)) / 3600
    training tokens   = sum over the run's training tasks of min(English train examples, max_train_examples)
                        x epochs x mean tokens per example
    evaluation tokens = languages x min(eval examples per language, max_eval_examples) x mean tokens per example

rate = real (non-pad) training tokens per second for (model, GPU) from ``resources/throughput.yaml`` (derived from
published figures until the benchmarks write measured numbers there; docs/architecture.md "Sources").

Tables (English train sizes: the datasets' hub cards; tokens per example: XLM-R
sentencepiece means from published measurements where it gives one, otherwise rough guesses - all ESTIMATES, every
choice of a multiple-choice example and both sides of a pair counted). Run params read: ``intermediate``
(the whole label grammar of tasks.parse_intermediate: ``mnli+squad`` = multi-task, ``multitask`` = the nine paper
tasks, ``+mlm`` = MLM co-training, ``mnli@de`` counts as mnli, ``none`` = no training), ``target_task`` (retrieval:
``task``), ``epochs`` (0 or missing: the registry default), ``max_train_examples`` / ``max_eval_examples`` (per
language; retrieval: ``max_examples``; <= 0 or missing = all), ``languages`` (a non-empty list restricts the
evaluated languages), ``mlm_max_examples`` (MLM co-training sequences; default MLM_EXAMPLES).

>>> round(gpu_hours(train_tokens=3.6e9, eval_tokens=0, tokens_per_s=1e6), 3)
1.0
>>> train_tokens("mnli", epochs=2, max_train_examples=1000)  # 1000 x 2 x 45
90000.0
>>> run_tokens("target", {"target_task": "xnli", "epochs": 1.0, "max_train_examples": 100, "max_eval_examples": 10})
(4500.0, 6750.0)
>>> run_tokens("intermediate", {"intermediate": "none"})
(0.0, 0.0)
>>> rate, status = throughput("FacebookAI/xlm-roberta-large", "a100", {"gpus": {"a100": {"achieved_tflops": 60}},
...     "models": {"xlm-roberta-large": {"match": ["xlm-roberta-large"], "non_embedding_params": 3e8}},
...     "throughput": []})
>>> round(rate), status
(33333, 'derived (6N)')
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from ..files import RESOURCES

EVAL_SPEEDUP = 3.0          # forward-only evaluation vs forward+backward+step training, per token
MLM_EXAMPLES = 100_000      # default MLM co-training sequences when a plan does not cap them (assumption)
TABLE = RESOURCES / "throughput.yaml"

# English training examples per task (train split).
TRAIN_EXAMPLES = {
    "anli_plus": 1_105_719, "mnli": 392_702, "snli": 550_152, "qqp": 363_846, "sst2": 67_349, "squad": 87_599,
    "squad_v2": 130_319, "hellaswag": 39_905, "cosmosqa": 25_262, "commonsenseqa": 9_741, "ccg": 38_000,
    "siqa": 33_410, "copa": 400, "stsb": 5_749, "anli_r1": 16_946, "anli_r2": 45_460, "anli_r3": 100_459,
    "mlm": MLM_EXAMPLES, "pawsx": 49_401, "udpos": 21_253, "panx": 20_000, "tydiqa": 3_696,
}
# Mean XLM-R tokens per example (estimates). Where real text exists, `tokens_per_example` takes the figure measured
# with XLM-R's real tokenizer from resources/token_lengths.yaml instead (`xfer token-lengths` regenerates it).
TOKENS_PER_EXAMPLE = {
    "anli_plus": 46, "mnli": 45, "snli": 30, "qqp": 30, "sst2": 13, "squad": 185, "squad_v2": 185,
    "hellaswag": 320, "cosmosqa": 440, "commonsenseqa": 125, "ccg": 35, "siqa": 120, "copa": 40, "stsb": 30,
    "anli_r1": 95, "anli_r2": 95, "anli_r3": 95, "mlm": 128, "pawsx": 60, "udpos": 30, "panx": 15, "tydiqa": 150,
    "xnli": 45, "xquad": 185, "mlqa": 185, "bucc2018": 33, "tatoeba": 15, "xcopa": 40, "stsb_multi_mt": 30,
}
# Evaluation: (languages, examples per language) - one split per language (test where labelled, else dev);
# intermediate tasks: their English dev set. bucc2018 counts sentences to embed of the real corpora, tatoeba
# both sides of 1,000 pairs.
EVAL_EXAMPLES = {
    "xnli": (15, 5_010), "pawsx": (7, 2_000), "udpos": (33, 3_095), "panx": (40, 5_000), "xquad": (11, 1_190),
    "mlqa": (7, 6_035), "tydiqa": (9, 564), "bucc2018": (4, 665_000), "tatoeba": (36, 2_000),
    "xcopa": (11, 500), "stsb_multi_mt": (10, 1_379),
    "anli_plus": (1, 22_857), "mnli": (1, 9_815), "snli": (1, 9_842), "qqp": (1, 40_430), "sst2": (1, 872),
    "squad": (1, 10_570), "squad_v2": (1, 11_873), "hellaswag": (1, 10_042), "cosmosqa": (1, 2_985),
    "commonsenseqa": (1, 1_221), "ccg": (1, 1_913), "siqa": (1, 1_954), "copa": (1, 100), "stsb": (1, 1_500),
    "anli_r1": (1, 1_000), "anli_r2": (1, 1_000), "anli_r3": (1, 1_200), "mlm": (1, 0),
}
RETRIEVAL = ("bucc2018", "tatoeba")


def base_task(name: str) -> str | None:
    """`name` if the tables know it, else the longest known task it starts with (mnli_translated -> mnli).

    >>> base_task("mnli_mt"), base_task("squad_v2"), base_task("wat")
    ('mnli', 'squad_v2', None)
    """
    if name in TOKENS_PER_EXAMPLE:
        return name
    pre = [t for t in TOKENS_PER_EXAMPLE if name.startswith(t)]
    return max(pre, key=len) if pre else None


def _train_task(target: str) -> str:
    """The English task a target trains on: the task registry's `train_task` (xnli <- mnli, xquad/mlqa <- squad)."""
    from .. import tasks
    src = tasks.get(target).train_task if target in tasks.REGISTRY else None
    return src[0] if src else target


def _cap(n: float, cap) -> float:
    return float(min(n, cap)) if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0 else float(n)


def default_epochs(task: str) -> float:
    try:
        from .. import tasks
        return float(tasks.hyperparameters(task)["epochs"])
    except (ValueError, ImportError):
        return 3.0


def train_tokens(task: str, epochs: float, max_train_examples=None) -> float:
    t = base_task(task)
    if t is None or t not in TRAIN_EXAMPLES:
        raise KeyError(task)
    return _cap(TRAIN_EXAMPLES[t], max_train_examples) * float(epochs) * tokens_per_example(t, "train")[0]


def eval_tokens(task: str, max_eval_examples=None, n_languages: int | None = None) -> float:
    t = base_task(task)
    if t is None or t not in EVAL_EXAMPLES:
        raise KeyError(task)
    langs, per = EVAL_EXAMPLES[t]
    return (n_languages or langs) * _cap(per, max_eval_examples) * tokens_per_example(t, "eval")[0]


LENGTHS = RESOURCES / "token_lengths.yaml"
_MEASURED: dict | None = None
_USED: list | None = None          # (task, use) lookups while `lengths_used` records them


def measured_lengths() -> dict:
    """{task: entry} of resources/token_lengths.yaml (empty when the file is absent), read once."""
    global _MEASURED
    if _MEASURED is None:
        import yaml
        _MEASURED = (yaml.safe_load(LENGTHS.read_text(encoding="utf-8")) or {}).get("tasks", {}) \
            if LENGTHS.exists() else {}
    return _MEASURED


def tokens_per_example(task: str, use: str = "train") -> tuple[float, str, str]:
    """(mean tokens per example, status, text) for `task` ('train': its English training text, 'eval': the mean
    over evaluation languages). status: 'measured' / 'measured-proxy' (XLM-R's real tokenizer on real text,
    resources/token_lengths.yaml) or 'estimated' (TOKENS_PER_EXAMPLE: no real text for this task).

    >>> tokens_per_example("mnli")
    (45.0, 'estimated', 'cost.TOKENS_PER_EXAMPLE')
    >>> tokens_per_example("tatoeba", "eval")[1]
    'measured'
    """
    t = base_task(task) or task
    e = measured_lengths().get(t) or {}
    fig = e.get(use) or e.get("eval" if use == "train" else "train")
    out = (float(fig["mean"]), e["status"], e.get("text", "")) if fig else \
        (float(TOKENS_PER_EXAMPLE[t]), "estimated", "cost.TOKENS_PER_EXAMPLE")
    if _USED is not None:
        _USED.append((t, use, *out))
    return out


def lengths_used(runs) -> list[tuple[str, str, float, str, str]]:
    """The distinct (task, use, tokens, status, text) figures that costing `runs` [(phase, params)] looks up."""
    global _USED
    _USED = []
    try:
        for phase, params in runs:
            try:
                run_tokens(phase, params)
            except KeyError:
                pass
        return sorted(set(_USED))
    finally:
        _USED = None


def _names(v) -> list[str]:
    if isinstance(v, str):
        return [s for s in v.replace(",", "+").split("+") if s and s != "none"]
    return [str(s) for s in v or [] if s and s != "none"]


def _intermediate_tasks(label) -> list[str]:
    """The training tasks of an intermediate label, read by the label grammar's one parser
    (tasks.parse_intermediate): 'multitask' = the nine paper tasks, 'mnli@de' = mnli_mt (priced as mnli),
    'a+mlm' adds MLM, 'none' = nothing. A label the grammar rejects is a KeyError naming it (cost unknown)."""
    from .. import tasks
    label = str(label or "")
    if label in ("", tasks.NO_INTERMEDIATE):
        return []
    try:
        return [name for name, _ in tasks.parse_intermediate(label)]
    except ValueError:
        raise KeyError(label) from None


def run_tokens(phase: str, params: dict) -> tuple[float, float]:
    """(training tokens, evaluation tokens) of one run of `phase` ('intermediate', 'target', 'retrieval'; any
    other phase costs nothing). Raises KeyError naming a task the tables do not know."""
    p = params
    langs = p.get("languages")
    n_lang = len(langs) if isinstance(langs, (list, tuple)) and langs else None
    tr = ev = 0.0
    if phase == "intermediate":
        for t in _intermediate_tasks(p.get("intermediate", "")):
            cap = p.get("max_train_examples")
            if base_task(t) == "mlm":
                cap = p.get("mlm_max_examples") or cap
            ep = p.get("epochs") or default_epochs(base_task(t) or t)
            tr += train_tokens(t, ep, cap)
            ev += eval_tokens(t, p.get("max_eval_examples"), 1)
    elif phase == "target":
        for t in _names(p.get("target_task", "")):
            if t not in RETRIEVAL:
                src = _train_task(t)
                tr += train_tokens(src, p.get("epochs") or default_epochs(t), p.get("max_train_examples"))
            ev += eval_tokens(t, p.get("max_eval_examples"), n_lang)
    elif phase == "retrieval":
        names = next((_names(p[k]) for k in ("target_task", "task", "tasks", "retrieval_tasks") if p.get(k)),
                     list(RETRIEVAL))
        for t in names:
            ev += eval_tokens(t, p.get("max_eval_examples") or p.get("max_examples"), n_lang)
    return tr, ev


def gpu_hours(train_tokens: float, eval_tokens: float, tokens_per_s: float) -> float:
    return (train_tokens / tokens_per_s + eval_tokens / (EVAL_SPEEDUP * tokens_per_s)) / 3600.0


def load_table(path: str | Path | None = None) -> dict:
    import yaml
    return yaml.safe_load(Path(path or TABLE).read_text(encoding="utf-8"))


def model_alias(model: str, table: dict) -> str | None:
    """The name a model path, hub id or alias is priced under: a `models:` key of the throughput table whose
    `match` globs it fits (names outside the ladder), else its model-ladder name (ladder.lookup), else None."""
    from .. import ladder
    short = ladder.normalize(model)
    for name, m in (table.get("models") or {}).items():
        if short == name or any(fnmatch.fnmatchcase(short, g) for g in m.get("match", [])):
            return name
    m = ladder.lookup(model)
    return m.name if m is not None else None


def _non_embedding_params(name: str, table: dict) -> float | None:
    """N for the 6·N formula: the table's own count for a name outside the ladder, else the ladder's (via `like`)."""
    from .. import ladder
    entry = (table.get("models") or {}).get(name) or {}
    if entry.get("non_embedding_params"):
        return float(entry["non_embedding_params"])
    m = ladder.lookup(entry.get("like") or name)
    return float(m.params_non_embedding) if m is not None and m.params_non_embedding else None


def throughput(model: str, gpu: str, table: dict) -> tuple[float | None, str]:
    """(real training tokens/s, status) for (model, gpu); measured entries first, then derived, then 6·N."""
    name = model_alias(model, table)
    if name is None:
        return None, f"no throughput for model {model!r}"
    like = ((table.get("models") or {}).get(name) or {}).get("like")
    keys = {name} | ({model_alias(like, table)} if like else set())
    entries = [e for e in table.get("throughput") or []
               if e.get("gpu") == gpu and model_alias(str(e.get("model")), table) in keys]
    for want in ("measured", "derived"):
        for e in entries:
            if e.get("status") == want:
                return float(e["tokens_per_s"]), want
    g = (table.get("gpus") or {}).get(gpu)
    n = _non_embedding_params(name, table)
    if g is None:
        return None, f"no GPU kind {gpu!r} in the throughput table ({', '.join(table.get('gpus') or {})})"
    if not n:
        return None, f"no parameter count for model {name!r}"
    return float(g["achieved_tflops"]) * 1e12 / (6.0 * n), "derived (6N)"


def estimate(phase: str, params: dict, gpu: str = "a100", table: dict | None = None) -> tuple[float | None, str]:
    """(GPU-hours or None, a short note) for one run with resolved `params` (must hold `model` to cost anything)."""
    table = load_table() if table is None else table
    try:
        tr, ev = run_tokens(phase, params)
    except KeyError as e:
        return None, f"no size table for task {e.args[0]!r}"
    if tr == 0 and ev == 0:
        return 0.0, ""
    rate, status = throughput(str(params.get("model", "")), gpu, table)
    if rate is None:
        return None, status
    return gpu_hours(tr, ev, rate), status
