"""Training throughput: the project's training path versus the reference implementation's way, in one process.

    python benchmarks/train_throughput.py [--json benchmarks/results/train_throughput.json] [--steps 6] [--tiny]
        [--arms project,trainer] [--tasks tagging,sentence] [--repeats 4] [--differential]

Both arms call ``xfer_utils.train.train`` on the same randomly initialised XLM-R-shaped encoder (4 layers, hidden
256, 4 heads, FFN 1024 by default; deep copies of one init, identical head init), the same features, seed, batch
size and number of optimizer steps. Only the three speed options differ:

    baseline ("jiant way"): pad_to_max_length=True (every batch padded to the task's max length: 384 QA, 256
                            otherwise), group_by_length=False, precision="fp32"
    project (defaults):     pad_to_max_length=False (pad to the batch's longest; rounded up to a multiple of 8
                            on a GPU only: features.pad_multiple),
                            group_by_length=True, precision="auto" (bf16/fp16 on a GPU; fp32 on a CPU, so on
                            this machine both arms run fp32 and the difference is padding + grouping only)
    trainer:                transformers' Trainer run the careful way (_common.trainer_run): the same model copy,
                            features, batch, steps and optimizer settings, dynamic padding (the same collate),
                            train_sampling_strategy="group_by_length", fused AdamW; timed over its steps only.
                            Its sampler puts the longest batches first, so a few timed steps see longer
                            sequences than the project's shuffled batches do;
    trainer_same_batches:   the same Trainer drawing the project loop's batches (_common.project_order): both loops
                            compute identical batches, so the ratio is the loops' own speed

Data: four task shapes with real length distributions from ../shared/data (XQuAD question+context as span-QA
windows, STS pairs, UD sentences as tagging, Tatoeba lines as single-sentence classification), tokenized by
``xfer_utils.features`` with a tokenizer trained on that text (``_common.load_world``); synthetic fallback.

All arms are timed over their optimizer steps: the project's TrainResult.seconds less its final ``last.pt`` write
(timed apart, ``save_seconds``), the Trainer's from its first step's start to its last step's end; CPU time likewise
(the project's from its prepared model on). Comparing against the Trainer's own sampler, time whole epochs
(``--steps`` = examples / batch) without ``--differential``: its sampler's first batch holds the longest sequences,
so a few steps, or the differential's dropped first step, flatter its padding (one epoch of tagging: 0.912 real /
computed tokens for its sampler and 0.915 for the project's, 0.927 for its sampler less that first batch).

Reported per task and overall: real (non-pad) tokens per second (TrainResult.tokens / seconds), computed tokens,
padding efficiency (real / computed) of the timed steps and of one whole epoch's batch schedule
(``train.schedule`` + ``features.collate``, no compute), and the speedup (project real tok/s / baseline real tok/s).
Headline JSON keys: ``speedup`` (geometric mean over the four task shapes of project real tok/s over baseline)
and ``padding_efficiency`` (mean over the task shapes, project, one whole epoch); ``vs_trainer`` / ``vs_trainer_min``
(project real tok/s over the Trainer's: geometric mean and lowest task). The ``last.pt`` write goes to a tmpfs
folder and is left out of the time (above); evaluation is off (dev=None).
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402


ARMS = ("baseline", "project", "trainer", "trainer_same_batches")
# per-task ratios of real tok/s (and of real tokens per CPU second, suffix _cpu_time): name -> numerator / denominator
RATIOS = (("speedup", "project", "baseline"), ("vs_trainer", "project", "trainer"),
          ("vs_trainer_same_batches", "project", "trainer_same_batches"))


def epoch_efficiency(feats: list[dict], pad_id: int, batch: int, max_length: int, seed: int) -> dict:
    """Padding efficiency over one whole epoch of the project's batch schedule, and of the alternatives."""
    import torch

    from xfer_utils import features, train
    lengths = [f["length"] for f in feats]
    here = features.pad_multiple(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    out = {}
    # "project" pads as the training loop does on this machine; "project_round8" as it does on a GPU
    for name, group, pad_to, mult in (("project", True, None, here), ("project_round8", True, None, 8),
                                      ("dynamic_ungrouped", False, None, here), ("baseline", False, max_length, 8)):
        steps = train.schedule({"t": lengths}, batch, 1, 1.0, seed, group)
        real = comp = 0
        for _, mbs in steps:
            b = features.collate([{"input_ids": feats[i]["input_ids"]} for i in mbs[0]], pad_id, pad_to=pad_to,
                                 multiple_of=mult)
            real += int(b["attention_mask"].sum())
            comp += b["attention_mask"].numel()
        out[name] = real / comp
    # padding-free rows (TrainConfig.packing, on by default on GPUs): the project's batches packed into rows of the
    # task's max length, rounded to 8 as on a GPU
    steps = train.schedule({"t": lengths}, batch, 1, 1.0, seed, True)
    real = comp = 0
    for _, mbs in steps:
        b = features.collate([{"input_ids": feats[i]["input_ids"]} for i in mbs[0]], pad_id, multiple_of=1)
        real += int(b["attention_mask"].sum())
        comp += features.pack(b, max_length, pad_id, 8)["packed_input_ids"].numel()
    out["packed_round8"] = real / comp
    # jiant's --smart_truncate: cached tensors cut to the longest example of the split (still static shapes)
    out["baseline_smart_truncate"] = sum(lengths) / (len(lengths) * max(lengths))
    out["mean_length"] = sum(lengths) / len(lengths)
    out["max_length_seen"] = max(lengths)
    return out


def run_arm(encoder0, tokenizer, kind: str, feats: list[dict], mode: str, steps: int, batch: int, seed: int,
            ckpt_root: str, differential: bool = False) -> dict:
    """One arm's figures over `steps` optimizer steps; `differential`: the marginal cost of `steps` steps, measured
    as a run of 1 + `steps` steps less a run of 1 step (wall clock and CPU time alike), so every fixed cost (setup,
    the first step's lazy initialisation, the final checkpoint write) cancels in every arm the same way."""
    if differential:
        a = _run_arm(encoder0, tokenizer, kind, feats, mode, 1, batch, seed, ckpt_root)
        b = _run_arm(encoder0, tokenizer, kind, feats, mode, 1 + steps, batch, seed, ckpt_root)
        out = dict(b)
        for key in ("seconds", "cpu_seconds", "tokens", "computed_tokens"):
            out[key] = b[key] - a[key]
        out["steps"] = b["steps"] - a["steps"]
        out.update(tokens_per_cpu_s=out["tokens"] / out["cpu_seconds"], tokens_per_s=out["tokens"] / out["seconds"],
                   computed_per_s=out["computed_tokens"] / out["seconds"],
                   padding_efficiency=out["tokens"] / out["computed_tokens"], differential=True)
        return out
    return _run_arm(encoder0, tokenizer, kind, feats, mode, steps, batch, seed, ckpt_root)


def _run_arm(encoder0, tokenizer, kind: str, feats: list[dict], mode: str, steps: int, batch: int, seed: int,
             ckpt_root: str) -> dict:
    import torch
    from xfer_utils import models, train
    task_type, n_labels, max_length = C.KINDS[kind]
    torch.manual_seed(seed)
    model = models.MultiTaskModel(copy.deepcopy(encoder0), {kind: (task_type, n_labels)})
    if mode in ("trainer", "trainer_same_batches"):
        order = C.project_order(feats, batch, steps, seed) if mode == "trainer_same_batches" else None
        r = C.trainer_run(model, kind, feats, tokenizer.pad_token_id, batch, steps, seed,
                          tempfile.mkdtemp(prefix=f"{kind}-trainer-", dir=ckpt_root), order=order)
        cpu = r["cpu_seconds"]        # over its steps, as the wall clock (Trainer's setup left out)
        return {"task": kind, "mode": mode, "precision": "fp32" if not torch.cuda.is_available() else "bf16",
                "steps": r["steps"], "batches": r["batches"], "seconds": r["seconds"], "cpu_seconds": cpu,
                "tokens": r["tokens"],
                "computed_tokens": r["computed_tokens"], "tokens_per_cpu_s": r["tokens"] / cpu,
                "tokens_per_s": r["tokens"] / r["seconds"], "computed_per_s": r["computed_tokens"] / r["seconds"],
                "padding_efficiency": r["tokens"] / r["computed_tokens"]}
    opts = dict(pad_to_max_length=True, group_by_length=False, precision="fp32") if mode == "baseline" else {}
    cfg = train.TrainConfig(lr=1e-5, epochs=1.0, batch_size=batch, max_steps=steps, eval_every=0,
                            checkpoint_every=0, seed=seed, **opts)
    td = train.TaskData(kind, task_type, train=feats, max_length=max_length, dev=None)
    ckpt = tempfile.mkdtemp(prefix=f"{kind}-{mode}-", dir=ckpt_root)   # fresh: train() skips a finished dir
    # the final last.pt write is timed apart and left out, as the Trainer arm saves nothing (save_strategy="no")
    c0 = []   # CPU time from the prepared model on (train's setup left out, as from the Trainer's first step)
    with C.saves_timed_apart() as saving:
        r = train.train(model, tokenizer, [td], cfg, ckpt, progress=False, log=lambda *a: None,
                        on_prepared=lambda acc, m: c0.append(time.process_time()))
        cpu = time.process_time() - c0[0] - saving[1]
    seconds = r.seconds - saving[0]
    return {"task": kind, "mode": mode, "precision": train.choose_precision(cfg.precision), "steps": r.steps,
            "seconds": seconds, "save_seconds": saving[0], "cpu_seconds": cpu, "tokens": r.tokens,
            "computed_tokens": r.computed_tokens, "tokens_per_cpu_s": r.tokens / cpu,
            "tokens_per_s": r.tokens / seconds, "computed_per_s": r.computed_tokens / seconds,
            "padding_efficiency": r.tokens / r.computed_tokens}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per task and arm (default 6)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (sequences per step; default 32)")
    ap.add_argument("--examples", type=int, default=8000, help="training examples per task (default 8000)")
    ap.add_argument("--repeats", type=int, default=1, help="repeat each (task, arm) pair, alternating order")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--tasks", default=",".join(C.KINDS), help="comma-separated subset of " + ",".join(C.KINDS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default: all cores)")
    ap.add_argument("--synthetic", action="store_true", help="ignore ../shared/data; use the synthetic lengths")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke configuration (tests)")
    ap.add_argument("--differential", action="store_true",
                    help="time each arm as (1 + steps) steps less 1 step: fixed costs cancel (run_arm)")
    ap.add_argument("--arms", default=",".join(ARMS),
                    help="comma-separated subset of " + ",".join(ARMS) + " (ratios need both of their arms; "
                         "leaving out the fixed-padding baseline makes a whole-epoch comparison affordable)")
    a = ap.parse_args(argv)
    arms = tuple(m for m in a.arms.split(",") if m)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not arms:
        ap.error(f"unknown arm(s) {unknown or a.arms!r}; choose from {', '.join(ARMS)}")
    import torch
    kinds = [k for k in a.tasks.split(",") if k]
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.tiny:
        a.steps, a.batch, a.examples, a.layers, a.hidden = 2, 4, 64, 1, 32
    t_start = time.time()
    load0 = C.loadavg()
    w = C.load_world(tiny=a.tiny, synthetic=a.synthetic, per_lang=12 if a.tiny else None, seed=a.seed, kinds=kinds)
    tok = w["tokenizer"]
    feats = {k: C.features_for(k, C.merge_langs(w["rows"][k], a.examples, a.seed), tok) for k in kinds}
    heads = max(1, a.hidden // 64)
    encoder0 = C.xlmr_encoder(tok, a.layers, a.hidden, heads, 4 * a.hidden, seed=a.seed)
    from xfer_utils import models
    n_non_emb = models.n_parameters(encoder0, non_embedding=True)
    print(f"data: {w['source']}; model: XLM-R-shaped, {a.layers} layers, hidden {a.hidden}, {heads} heads, "
          f"vocab {len(tok)}, {n_non_emb / 1e6:.2f} M non-embedding params; batch {a.batch}, {a.steps} steps per "
          f"arm; torch threads {torch.get_num_threads()}; load average {load0}")
    eff = {k: epoch_efficiency(feats[k], tok.pad_token_id, a.batch, C.KINDS[k][2], a.seed) for k in kinds}
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    runs = []
    with tempfile.TemporaryDirectory(prefix="xfer-bench-", dir=shm) as ck:
        # warm-up (thread pools, allocator): one short untimed run per arm on the shortest task
        wk = kinds[-1]
        for mode in arms:
            run_arm(encoder0, tok, wk, feats[wk][: a.batch * 2], mode, 1, a.batch, a.seed, ck)
        for rep in range(a.repeats):
            for k in kinds:
                order = arms if rep % 2 == 0 else arms[::-1]
                for mode in order:
                    r = run_arm(encoder0, tok, k, feats[k], mode, a.steps, a.batch, a.seed, ck, a.differential)
                    r["repeat"] = rep
                    runs.append(r)
                    print(f"  {k:8s} {mode:8s} {r['seconds']:7.2f} s  {r['tokens_per_s']:9.0f} real tok/s  "
                          f"eff {r['padding_efficiency']:.3f}", flush=True)
    per_task = []
    for k in kinds:
        row = {"task": k, "type": C.KINDS[k][0], "max_length": C.KINDS[k][2], "examples": len(feats[k]),
               "mean_length": eff[k]["mean_length"]}
        for mode in arms:
            rs = [r for r in runs if r["task"] == k and r["mode"] == mode]
            row[f"{mode}_tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in rs)
            row[f"{mode}_tokens_per_cpu_s"] = statistics.median(r["tokens_per_cpu_s"] for r in rs)
            row[f"{mode}_cpu_seconds"] = sum(r["cpu_seconds"] for r in rs)
            row[f"{mode}_seconds"] = sum(r["seconds"] for r in rs)
            row[f"{mode}_tokens"] = sum(r["tokens"] for r in rs)
            row[f"{mode}_computed_tokens"] = sum(r["computed_tokens"] for r in rs)
            row[f"{mode}_padding_efficiency_timed"] = row[f"{mode}_tokens"] / row[f"{mode}_computed_tokens"]
            row[f"{mode}_computed_per_s"] = row[f"{mode}_computed_tokens"] / row[f"{mode}_seconds"]
        # a ratio needs both of its arms (--arms may leave some out): None otherwise
        for name, num, den in RATIOS:
            for unit, suffix in (("tokens_per_s", ""), ("tokens_per_cpu_s", "_cpu_time")):
                both = f"{num}_{unit}" in row and f"{den}_{unit}" in row
                row[name + suffix] = row[f"{num}_{unit}"] / row[f"{den}_{unit}"] if both else None
            # paired: the two arms of one repeat ran back to back, so a slow spell of the machine (seen here: one
            # arm at 1,856 and 2,387 real tok/s in two repeats) hits both; the spread of these is the noise
            pairs = [(r_num, r_den) for rep in range(a.repeats)
                     for r_num in runs if r_num["task"] == k and r_num["mode"] == num and r_num["repeat"] == rep
                     for r_den in runs if r_den["task"] == k and r_den["mode"] == den and r_den["repeat"] == rep]
            row[name + "_by_repeat"] = [x["tokens_per_s"] / y["tokens_per_s"] for x, y in pairs] or None
        row["padding_efficiency_epoch"] = eff[k]["project"]
        row["padding_efficiency_epoch_round8"] = eff[k]["project_round8"]
        row["padding_efficiency_epoch_packed_round8"] = eff[k]["packed_round8"]
        row["padding_efficiency_epoch_ungrouped"] = eff[k]["dynamic_ungrouped"]
        row["baseline_padding_efficiency_epoch"] = eff[k]["baseline"]
        row["baseline_smart_truncate_efficiency"] = eff[k]["baseline_smart_truncate"]
        per_task.append(row)

    def tot(mode, key):
        return sum(r[key] for r in runs if r["mode"] == mode)

    def rate(mode, key):
        return tot(mode, key) / tot(mode, "seconds") if mode in arms else None

    def over(x, y):
        return None if x is None or y is None else x / y

    def geomean(key):
        xs = [r[key] for r in per_task]
        return None if None in xs else math.exp(statistics.fmean(math.log(x) for x in xs))

    def lowest(key):
        xs = [r[key] for r in per_task]
        return None if None in xs else min(xs)

    # headline: every task shape weighs the same (geometric mean of per-task speedups, mean of efficiencies)
    speedup = geomean("speedup")
    pad_eff = statistics.fmean(eff[k]["project"] for k in kinds)
    base_eff = statistics.fmean(eff[k]["baseline"] for k in kinds)
    # pooled alternatives: sum of real tokens / sum of seconds (tasks weighted by their time), whole-epoch
    # efficiency weighted by each task's real tokens (the long QA windows dominate)
    real = {k: eff[k]["mean_length"] * len(feats[k]) for k in kinds}
    pooled = over(rate("project", "tokens"), rate("baseline", "tokens"))
    # compute-normalised: how fast each arm pushes computed (padded) tokens; ~1 means the whole gain is padding
    compute_rate_ratio = over(rate("project", "computed_tokens"), rate("baseline", "computed_tokens"))
    load1 = C.loadavg()
    result = {
        "benchmark": "train_throughput",
        "speedup": speedup,
        "padding_efficiency": pad_eff,
        "baseline_padding_efficiency": base_eff,
        "speedup_definition": "geometric mean over the task shapes of (project real tok/s) / (baseline real tok/s), "
                              "wall clock (TrainResult.seconds), median over repeats",
        "padding_efficiency_definition": "mean over the task shapes of real / computed tokens over one whole epoch "
                                         "of the project's batch schedule",
        "speedup_cpu_time": geomean("speedup_cpu_time"),
        "vs_trainer": geomean("vs_trainer"),
        "vs_trainer_min": lowest("vs_trainer"),
        "vs_trainer_same_batches": geomean("vs_trainer_same_batches"),
        "vs_trainer_same_batches_min": lowest("vs_trainer_same_batches"),
        "vs_trainer_cpu_time_min": lowest("vs_trainer_cpu_time"),
        "vs_trainer_same_batches_cpu_time_min": lowest("vs_trainer_same_batches_cpu_time"),
        "vs_trainer_definition": "project real tok/s / HF Trainer (dynamic padding, group_by_length) real tok/s "
                                 "per task shape, median over repeats; vs_trainer: geometric mean, _min: the lowest; "
                                 "per task, vs_trainer_by_repeat: the ratio within each repeat (arms back to back)",
        "speedup_pooled": pooled,
        "padding_efficiency_min": min(eff[k]["project"] for k in kinds),
        "padding_efficiency_token_weighted": sum(real.values()) / sum(real[k] / eff[k]["project"] for k in kinds),
        "padding_efficiency_round8": statistics.fmean(eff[k]["project_round8"] for k in kinds),
        "padding_efficiency_timed": over(tot("project", "tokens"), tot("project", "computed_tokens") or None),
        "computed_tokens_per_s_ratio": compute_rate_ratio,
        "project_tokens_per_s": rate("project", "tokens"),
        "baseline_tokens_per_s": rate("baseline", "tokens"),
        "arms": list(arms),
        "targets": {"speedup": 2.0, "padding_efficiency": 0.9, "vs_trainer_min": 1.0},
        "tasks": per_task,
        "runs": runs,
        "config": {"steps": a.steps, "batch": a.batch, "examples_per_task": a.examples, "repeats": a.repeats,
                   "layers": a.layers, "hidden": a.hidden, "heads": heads, "intermediate": 4 * a.hidden,
                   "vocab": len(tok), "non_embedding_params": n_non_emb, "seed": a.seed, "tiny": a.tiny,
                   "differential": a.differential,
                   "baseline": "pad_to_max_length=True, group_by_length=False, precision=fp32",
                   "project": "TrainConfig defaults: dynamic padding (multiple of 8), group_by_length, "
                              "precision auto (= fp32 on CPU)",
                   "trainer": "transformers Trainer: features.collate (pad to longest), train_sampling_strategy="
                              "group_by_length, adamw_torch_fused, same lr/decay/clipping; timed over its steps",
                   "attention": "sdpa (all arms)"},
        "data": w["source"],
        "machine": C.machine(),
        "load_average_start": load0,
        "load_average_end": load1,
        "wall_seconds": time.time() - t_start,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": C.command_line("train_throughput", argv),
    }
    print()
    print(C.table(per_task, [("task", "task", "s"), ("max_length", "pad to", "d"), ("mean_length", "mean len", ".1f"),
                             ("baseline_tokens_per_s", "baseline real tok/s", ".0f"),
                             ("project_tokens_per_s", "project real tok/s", ".0f"), ("speedup", "speedup", ".2f"),
                             ("trainer_tokens_per_s", "Trainer real tok/s", ".0f"),
                             ("vs_trainer", "vs Trainer", ".2f"),
                             ("trainer_same_batches_tokens_per_s", "Trainer same-batches tok/s", ".0f"),
                             ("vs_trainer_same_batches", "vs same", ".2f"),
                             ("vs_trainer_cpu_time", "vs T. CPU", ".2f"),
                             ("vs_trainer_same_batches_cpu_time", "vs same CPU", ".2f"),
                             ("speedup_cpu_time", "by CPU time", ".2f"),
                             ("baseline_padding_efficiency_epoch", "baseline eff", ".3f"),
                             ("padding_efficiency_epoch", "project eff", ".3f"),
                             ("padding_efficiency_epoch_round8", "eff x8 (GPU)", ".3f"),
                             ("padding_efficiency_epoch_packed_round8", "packed x8 (GPU)", ".3f")]))

    def x(v):      # a ratio, or "-" where --arms left one of its arms out
        return "-" if v is None else f"{v:.2f}x"
    print(f"\nspeedup {x(speedup)} (geometric mean over tasks, wall clock; target >= 2; by CPU time "
          f"{x(result['speedup_cpu_time'])}; pooled {x(pooled)}); padding efficiency {pad_eff:.3f} (mean over "
          f"tasks, target >= 0.9; min {result['padding_efficiency_min']:.3f}; baseline {base_eff:.3f}); "
          f"computed-token rate ratio {x(compute_rate_ratio)}; project vs HF Trainer {x(result['vs_trainer'])} "
          f"(lowest task {x(result['vs_trainer_min'])}; on the same batches {x(result['vs_trainer_same_batches'])}); "
          f"load average {load0} -> {load1}")
    C.write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
