"""GPU training throughput and model-FLOPs utilisation (MFU) of an XLM-R-large-shaped model, project vs reference way.

    python benchmarks/gpu.py [--json benchmarks/results/gpu.json]       # on a CUDA machine
    python benchmarks/gpu.py --force-cpu --tiny                          # code-path check on a CPU (tests)

Without CUDA (and without --force-cpu) it prints "skipped: no CUDA" and exits 0 (with --json it writes
{"skipped": ...}). What it measures on a GPU:

1. The device's bf16 matmul rate: 8192 x 8192 x 8192 bf16 ``torch.mm`` repeated, timed with CUDA events
   (``peak_bf16_tflops``; the MFU denominator).
2. A randomly initialised XLM-R-large-shaped encoder (24 layers, hidden 1024, 16 heads, FFN 4096, vocab 250,002;
   N = non-embedding parameters, ~302 M) with a classification head, trained through ``xfer_utils.train.train``
   at sequence lengths 128 / 256 / 384, batch 32:
   - ``full``: every sequence exactly L tokens (no padding: the hardware efficiency of one training step),
     project options (bf16 autocast, fused AdamW) vs the reference way (fp32, fixed padding);
   - ``realistic``: lengths drawn from the lognormal fits of ../shared/data (benchmarks/_common.SYNTHETIC: L=128
     UD-tagging-like, 256 STS-pair-like, 384 XQuAD-window-like, clipped at L), project (bf16, dynamic padding,
     length grouping) vs baseline (fp32, pad to L, no grouping): real tokens per second and useful-token MFU.
   Per-step time is differential: time(train with S2 steps) - time(train with S1 steps), divided by S2 - S1, so
   the final checkpoint write (~7 GB for XLM-R large with AdamW state) and the first-step warm-up cancel out.
   MFU = 6 * N * tokens per second / peak_bf16 (``mfu``: computed tokens; ``useful_mfu``: real tokens);
   ``mfu_with_attention`` adds the 12 * layers * d * L^2 attention FLOPs per sequence
   (docs/sources.md, Throughput anchors).
   Arms (issue 20), each at every (length, lengths) shape:
   - ``project``: the training loop's defaults with packing off (bf16, dynamic padding, length grouping);
   - ``packed``: the same with ``packing="on"`` (padding-free rows, block-diagonal attention: features.pack);
   - ``compiled``: the same with ``compile=True`` (torch.compile of the encoder, widths in compile_buckets);
   - ``trainer``: transformers' Trainer the careful way (dynamic padding, group_by_length, fused AdamW, bf16;
     benchmarks/_common.trainer_run), timed over its steps with the same differential;
   - ``baseline``: the reference implementation's way (fp32, fixed padding, no grouping).
   ``short`` adds the short-sentence shape (Tatoeba-like lengths, PAN-X / SST-2 territory: ~13-15 tokens) at 128,
   where launch overhead, not FLOPs, bounds a step. ``--arms`` picks a subset; ``--tiny`` runs ``compiled`` at the
   first shape only.
Target (issue 8): >= 40 % MFU at length 256 with the project's options.
"""
from __future__ import annotations

import argparse
import copy
import gc
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402

LARGE = dict(layers=24, hidden=1024, heads=16, intermediate=4096, vocab=250_002)
TINY = dict(layers=2, hidden=64, heads=2, intermediate=128, vocab=1000)
DIST = {128: "tagging", 256: "pair", 384: "qa"}
ARMS = ("project", "packed", "compiled", "trainer", "baseline")
OPTIONS = {"project": dict(packing="off"), "packed": dict(packing="on"), "compiled": dict(packing="off", compile=True),
           "baseline": dict(pad_to_max_length=True, group_by_length=False, precision="fp32", packing="off")}


def matmul_tflops(device, dtype, n: int = 8192, iters: int = 20) -> float:
    import torch
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            torch.mm(a, b)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        t = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b)
        seconds = time.perf_counter() - t
    return 2 * n ** 3 * iters / seconds / 1e12


def make_features(n: int, length: int, realistic: bool, vocab: int, rng: random.Random, dist: str = "") -> list[dict]:
    """Classification features of random token ids: exactly `length` tokens, or lognormal lengths <= length (of
    `dist`, by default the task shape DIST gives the length)."""
    lens = C.synthetic_lengths(dist or DIST.get(length, "pair"), n, rng) if realistic else [length] * n
    return [{"input_ids": [0] + [rng.randrange(5, vocab - 1) for _ in range(max(0, min(L, length) - 2))] + [2],
             "labels": rng.randrange(2), "length": max(2, min(L, length))} for L in lens]


class _Tok:   # train() needs only pad_token_id from the tokenizer (no MLM, no dev set)
    pad_token_id = 1


def timed_train(encoder0, feats, length, mode, steps, batch, ckpt_root, force_cpu: bool = False) -> dict:
    import torch
    from xfer_utils import models, train
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)   # each arm chooses its own precision (fp32 baseline)
    torch.manual_seed(0)
    model = models.MultiTaskModel(copy.deepcopy(encoder0), {"t": ("classification", 2)})
    out_dir = tempfile.mkdtemp(dir=ckpt_root)
    if mode == "trainer":
        cuda = torch.cuda.is_available() and not force_cpu
        r = C.trainer_run(model, "t", feats, _Tok.pad_token_id, batch, steps, 1, out_dir, bf16=cuda, use_cpu=not cuda)
        out = {"seconds": r["seconds"], "tokens": r["tokens"], "computed": r["computed_tokens"],
               "precision": "bf16" if cuda else "fp32"}
    else:
        if mode == "compiled":
            torch._dynamo.reset()
        cfg = train.TrainConfig(lr=1e-5, epochs=1.0, batch_size=batch, max_steps=steps, eval_every=0,
                                checkpoint_every=0, seed=1, **OPTIONS[mode])
        td = train.TaskData("t", "classification", train=feats, max_length=length, dev=None)
        # the final last.pt write (~7 GB for XLM-R large with AdamW state) is timed apart and left out: its time
        # varies by seconds between runs, more than the steps the differential measures; the Trainer saves nothing
        with C.saves_timed_apart() as saving:
            r = train.train(model, _Tok(), [td], cfg, out_dir, progress=False, log=lambda *a: None)
        out = {"seconds": r.seconds - saving[0], "save_seconds": saving[0], "tokens": r.tokens,
               "computed": r.computed_tokens,
               "precision": train.choose_precision(cfg.precision)}
    del model
    shutil.rmtree(out_dir, ignore_errors=True)   # ~7 GB of weights and AdamW state per XLM-R-large run
    _free_memory()
    return out


def _free_memory() -> None:
    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--lengths", default="128,256,384")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", default="5,25", help="S1,S2 optimizer steps of the two timed runs (differential)")
    ap.add_argument("--force-cpu", action="store_true", help="run on the CPU anyway (with --tiny: a code check)")
    ap.add_argument("--tiny", action="store_true", help="tiny model and sizes (tests)")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ",".join(ARMS))
    a = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available() and not a.force_cpu:
        msg = ("skipped: no CUDA device (torch.cuda.is_available() is False). On a GPU this measures bf16 matmul "
               "TFLOP/s and, for an XLM-R-large-shaped model at lengths 128/256/384, training tokens/s and MFU "
               "with the project's options (bf16, dynamic padding, length grouping, fused AdamW; packing; "
               "torch.compile), transformers' Trainer (dynamic padding, group_by_length) and the reference way "
               "(fp32, fixed padding).")
        print(msg)
        C.write_json(a.json, {"benchmark": "gpu", "skipped": msg, "machine": C.machine(),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S %z")})
        return 0
    arms = [x for x in a.arms.split(",") if x]
    if not arms or set(arms) - set(ARMS):
        raise SystemExit(f"--arms: unknown arm in {a.arms!r}; valid arms: {', '.join(ARMS)}")
    shape = TINY if a.tiny else LARGE
    lengths = [int(x) for x in a.lengths.split(",")]
    s1, s2 = (int(x) for x in a.steps.split(","))
    if a.tiny:
        lengths, s1, s2, a.batch = [16], 1, 2, 4
    device = torch.device("cuda" if torch.cuda.is_available() and not a.force_cpu else "cpu")
    t0 = time.time()
    peak = matmul_tflops(device, torch.bfloat16 if device.type == "cuda" else torch.float32,
                         n=256 if a.tiny else 8192, iters=3 if a.tiny else 20)
    peak_fp32 = matmul_tflops(device, torch.float32, n=256 if a.tiny else 8192, iters=3 if a.tiny else 10)
    print(f"device {C.machine().get('cuda') or 'cpu'}: matmul {peak:.1f} TFLOP/s "
          f"({'bf16' if device.type == 'cuda' else 'fp32'}), fp32 {peak_fp32:.1f} TFLOP/s")

    class T:   # a stand-in tokenizer for xlmr_encoder (ids as XLM-R: <s>=0, <pad>=1, </s>=2)
        pad_token_id, bos_token_id, eos_token_id = 1, 0, 2

        def __len__(self):
            return shape["vocab"]

    encoder0 = C.xlmr_encoder(T(), shape["layers"], shape["hidden"], shape["heads"], shape["intermediate"], seed=0)
    from xfer_utils import models
    n_params = models.n_parameters(encoder0, non_embedding=True)
    rng = random.Random(0)
    rows = []
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="xfer-gpu-", dir=shm) as ck:
        shapes = [(L, kind) for L in lengths for kind in ("full", "realistic")]
        shapes += [(min(lengths), "short")]           # PAN-X / SST-2-length sentences: the launch-bound case
        for L, kind in shapes:
            feats = make_features(a.batch * (s2 + 2), L, kind != "full", shape["vocab"], rng,
                                  "sentence" if kind == "short" else "")
            for mode in arms:
                if a.tiny and mode == "compiled" and (L, kind) != shapes[0]:
                    continue      # a code check: one shape (each compile takes ~15 s on a CPU)
                try:
                    r1 = timed_train(encoder0, feats, L, mode, s1, a.batch, ck, a.force_cpu)
                    r2 = timed_train(encoder0, feats, L, mode, s2, a.batch, ck, a.force_cpu)
                except Exception as e:    # noqa: BLE001, PERF203 - one failed arm (OOM, a kernel missing) is one row
                    what = "OOM" if isinstance(e, torch.OutOfMemoryError) else type(e).__name__
                    rows.append({"length": L, "kind": kind, "mode": mode, "error": f"{what}: {e}"[:300]})
                    print(f"  L={L:4d} {kind:9s} {mode:8s} failed: {what}: {str(e)[:200]}", flush=True)
                    _free_memory()
                    continue
                dt = (r2["seconds"] - r1["seconds"]) / (s2 - s1)
                tok = (r2["tokens"] - r1["tokens"]) / (s2 - s1)
                comp = (r2["computed"] - r1["computed"]) / (s2 - s1)
                seqs = a.batch
                width = comp / seqs
                # packed rows attend over their whole width: the per-sequence formula does not hold there
                attn = 12 * shape["layers"] * shape["hidden"] * width ** 2 * seqs if mode != "packed" else None
                row = {"length": L, "kind": kind, "mode": mode, "precision": r2["precision"],
                       "step_seconds": dt, "tokens_per_s": tok / dt, "computed_tokens_per_s": comp / dt,
                       "padding_efficiency": tok / comp,
                       "mfu": 6 * n_params * comp / dt / (peak * 1e12),
                       "useful_mfu": 6 * n_params * tok / dt / (peak * 1e12),
                       "mfu_with_attention": (6 * n_params * comp + attn) / dt / (peak * 1e12)
                       if attn is not None else None}
                rows.append(row)
                print(f"  L={L:4d} {kind:9s} {mode:8s} {row['tokens_per_s']:10.0f} real tok/s  "
                      f"MFU {row['mfu']:.3f}  useful {row['useful_mfu']:.3f}", flush=True)
                # the figures so far, in case the machine's time runs out before the last arm
                C.write_json(a.json, {"benchmark": "gpu", "partial": True, "peak_bf16_tflops": peak,
                                      "non_embedding_params": n_params, "rows": rows, "machine": C.machine(),
                                      "command": C.command_line("gpu", argv)})
    ok = [r for r in rows if "error" not in r]
    for r in ok:
        def arm(name):
            return next((q for q in ok if q["length"] == r["length"] and q["kind"] == r["kind"]
                         and q["mode"] == name), None)
        base, hf = arm("baseline"), arm("trainer")
        r["speedup"] = r["tokens_per_s"] / base["tokens_per_s"] if base else None
        r["vs_trainer"] = r["tokens_per_s"] / hf["tokens_per_s"] if hf else None
    m256 = next((r["mfu"] for r in ok if r["length"] == 256 and r["kind"] == "full" and r["mode"] == "project"),
                None)
    result = {"benchmark": "gpu", "device": C.machine().get("cuda") or "cpu", "peak_bf16_tflops": peak,
              "peak_fp32_tflops": peak_fp32, "non_embedding_params": n_params, "shape": shape,
              "mfu_at_256": m256, "target": {"mfu_at_256": 0.40}, "rows": rows,
              "config": {"batch": a.batch, "steps": [s1, s2], "lengths": lengths, "tiny": a.tiny,
                         "force_cpu": a.force_cpu},
              "machine": C.machine(), "wall_seconds": time.time() - t0,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "command": C.command_line("gpu", argv)}
    print()
    print(C.table(ok, [("length", "L", "d"), ("kind", "lengths", "s"), ("mode", "arm", "s"),
                       ("precision", "precision", "s"), ("tokens_per_s", "real tok/s", ".0f"),
                       ("padding_efficiency", "pad eff", ".3f"), ("mfu", "MFU", ".3f"),
                       ("useful_mfu", "useful MFU", ".3f"), ("speedup", "speedup", ".2f"),
                       ("vs_trainer", "vs Trainer", ".2f")]))
    if m256 is not None:
        print(f"\nMFU at L=256 (project, full-length sequences): {m256:.1%} (target >= 40%)")
    C.write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
