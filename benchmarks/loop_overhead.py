"""Where a training step's time goes: the project's loop versus the HF Trainer on identical batches, by profile.

    python benchmarks/loop_overhead.py [--json benchmarks/results/loop_overhead.json] [--steps 100] [--repeats 2]

Wall-clock ratios of two loops that run the same kernels are at the mercy of the machine: on this shared 2-core
machine one arm's rate moved by up to 25 % between repeats, and whichever arm ran second in a pair was faster
(train_throughput.py's whole-epoch runs, benchmarks/README.md). This script asks the question those ratios cannot
settle, by profile (cProfile) instead of by clock: both loops train the same model copy on the same batches
(`_common.project_order`: the Trainer draws the project loop's batches), and each run's profiled time is split into

    kernels:    time inside torch's C++ functions (forward, backward, optimizer, clipping kernels): the same work
                in both loops, so any difference is the machine's
    loop side:  everything else (Python in the loop, collation, Accelerate, the Trainer's machinery, setup)

Order alternates between repeats and the figures are summed over repeats, so the "second run is faster" effect
cancels. Reported per task shape and arm: kernel seconds, loop-side seconds, steps; and the loop-side time per
step of each loop. The model and data are train_throughput.py's (XLM-R-shaped, 4 layers, hidden 256; real lengths
from ../shared/data, synthetic without it).
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402

ARMS = ("project", "trainer")


def _is_kernel(fn: tuple) -> bool:
    """A profile entry that is a torch C++ function (cProfile files builtins under '~')."""
    filename, _, name = fn
    return filename == "~" and "torch." in name


def split(profile: cProfile.Profile) -> tuple[float, float]:
    """(kernel seconds, loop-side seconds) of one profiled run."""
    stats = pstats.Stats(profile).stats
    kernel = sum(tt for fn, (_, _, tt, _, _) in stats.items() if _is_kernel(fn))
    total = sum(tt for _, (_, _, tt, _, _) in stats.items())
    return kernel, total - kernel


def run_arm(encoder0, tokenizer, kind: str, feats: list[dict], mode: str, order: list[int], steps: int, batch: int,
            seed: int, ckpt_root: str) -> dict:
    import torch
    from xfer_utils import models, train
    task_type, n_labels, max_length = C.KINDS[kind]
    torch.manual_seed(seed)
    model = models.MultiTaskModel(copy.deepcopy(encoder0), {kind: (task_type, n_labels)})
    prof = cProfile.Profile()
    if mode == "trainer":
        prof.enable()
        C.trainer_run(model, kind, feats, tokenizer.pad_token_id, batch, steps, seed,
                      tempfile.mkdtemp(dir=ckpt_root), order=order)
        prof.disable()
    else:
        cfg = train.TrainConfig(lr=1e-5, epochs=1.0, batch_size=batch, max_steps=steps, eval_every=0,
                                checkpoint_every=0, seed=seed)
        td = train.TaskData(kind, task_type, train=feats, max_length=max_length, dev=None)
        orig = train._atomic_save          # the final last.pt write is left out, as the Trainer saves nothing
        train._atomic_save = lambda obj, path: (prof.disable(), orig(obj, path), prof.enable())
        try:
            prof.enable()
            train.train(model, tokenizer, [td], cfg, tempfile.mkdtemp(dir=ckpt_root), progress=False,
                        log=lambda *a: None)
            prof.disable()
        finally:
            train._atomic_save = orig
    kernel, loop = split(prof)
    return {"task": kind, "mode": mode, "steps": steps, "kernel_seconds": kernel, "loop_seconds": loop}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per run (default 100)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs per arm and task, order alternating (default 2: one of each order)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--examples", type=int, default=8000)
    ap.add_argument("--tasks", default="tagging,sentence", help="comma-separated subset of " + ",".join(C.KINDS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--synthetic", action="store_true", help="ignore ../shared/data; use the synthetic lengths")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke configuration (tests)")
    a = ap.parse_args(argv)
    kinds = [k for k in a.tasks.split(",") if k]
    unknown = sorted(set(kinds) - set(C.KINDS))
    if unknown or not kinds:
        ap.error(f"unknown task shape(s) {unknown or a.tasks!r}; choose from {', '.join(C.KINDS)}")
    import torch
    torch.set_num_threads(a.threads)
    layers, hidden = (1, 32) if a.tiny else (4, 256)
    if a.tiny:
        a.steps, a.batch, a.examples, a.repeats = 3, 4, 64, 2
    t_start, load0 = time.time(), C.loadavg()
    w = C.load_world(tiny=a.tiny, synthetic=a.synthetic, per_lang=12 if a.tiny else None, seed=a.seed, kinds=kinds)
    tok = w["tokenizer"]
    feats = {k: C.features_for(k, C.merge_langs(w["rows"][k], a.examples, a.seed), tok) for k in kinds}
    encoder0 = C.xlmr_encoder(tok, layers, hidden, max(1, hidden // 64), 4 * hidden, seed=a.seed)
    runs = []
    with tempfile.TemporaryDirectory(prefix="xfer-loop-") as ck:
        for k in kinds:
            order = C.project_order(feats[k], a.batch, a.steps, a.seed)
            for mode in ARMS:          # warm-up, untimed
                run_arm(encoder0, tok, k, feats[k], mode, order, 1, a.batch, a.seed, ck)
            for rep in range(a.repeats):
                for mode in (ARMS if rep % 2 == 0 else ARMS[::-1]):
                    r = run_arm(encoder0, tok, k, feats[k], mode, order, a.steps, a.batch, a.seed, ck)
                    r["repeat"] = rep
                    runs.append(r)
                    print(f"  {k:8s} {mode:8s} kernels {r['kernel_seconds']:7.2f} s  loop side "
                          f"{r['loop_seconds']:6.3f} s", flush=True)
    per_task = []
    for k in kinds:
        row = {"task": k}
        for mode in ARMS:
            rs = [r for r in runs if r["task"] == k and r["mode"] == mode]
            row[f"{mode}_kernel_seconds"] = sum(r["kernel_seconds"] for r in rs)
            row[f"{mode}_loop_seconds"] = sum(r["loop_seconds"] for r in rs)
            row[f"{mode}_loop_ms_per_step"] = 1000 * row[f"{mode}_loop_seconds"] / sum(r["steps"] for r in rs)
        row["kernel_ratio"] = row["project_kernel_seconds"] / row["trainer_kernel_seconds"]
        row["loop_ratio"] = row["project_loop_seconds"] / row["trainer_loop_seconds"]
        per_task.append(row)
    result = {
        "benchmark": "loop_overhead",
        "loop_ratio_max": max(r["loop_ratio"] for r in per_task),
        "kernel_ratio_range": [min(r["kernel_ratio"] for r in per_task), max(r["kernel_ratio"] for r in per_task)],
        "definition": "cProfile of each run, identical batches: kernel = tottime of torch C++ functions, loop side "
                      "= the rest (setup included); summed over repeats with alternating order; ratios project / "
                      "Trainer (below 1: the project's loop spends less)",
        "tasks": per_task, "runs": runs,
        "config": {"steps": a.steps, "repeats": a.repeats, "batch": a.batch, "examples_per_task": a.examples,
                   "layers": layers, "hidden": hidden, "threads": a.threads, "seed": a.seed, "tiny": a.tiny},
        "data": w["source"], "machine": C.machine(), "load_average_start": load0, "load_average_end": C.loadavg(),
        "wall_seconds": time.time() - t_start, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": C.command_line("loop_overhead", argv),
    }
    print()
    print(C.table(per_task, [("task", "task", "s"), ("project_kernel_seconds", "project kernels s", ".2f"),
                             ("trainer_kernel_seconds", "Trainer kernels s", ".2f"),
                             ("kernel_ratio", "ratio", ".3f"),
                             ("project_loop_ms_per_step", "project loop ms/step", ".2f"),
                             ("trainer_loop_ms_per_step", "Trainer loop ms/step", ".2f"),
                             ("loop_ratio", "ratio", ".2f")]))
    C.write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
