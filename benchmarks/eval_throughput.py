"""Evaluation throughput: zero-shot prediction over many languages, length-sorted batches vs unsorted fixed padding.

    python benchmarks/eval_throughput.py [--json benchmarks/results/eval_throughput.json] [--per-lang 32] [--tiny]

Same randomly initialised XLM-R-shaped model (4 layers, hidden 256), fp32, every language of each task shape in
../shared/data (XQuAD 12 languages as span-QA windows at 384, STS 11 languages as pairs at 256, UD 6 languages as
tagging at 256, Tatoeba 42 sides as sentences at 256; synthetic otherwise). Timed: the first --per-lang (32)
examples of each language in batches of --batch (16): few examples per language, so sorting has fewer batches to
work with than in a full evaluation (a conservative figure). Not timed: the padding efficiency of the whole data,
every example of every language, in batches of 64 (the notebooks' eval_batch_size).

    project:  xfer_utils.evaluation.predict(model, head, type, feats, pad_id, batch_size) - batches over
              length-sorted features, padded to the batch's longest (a multiple of 8 on a GPU), outputs put back in order
    baseline: the reference way - batches in file order, every batch padded to the task's max length with
              features.collate(..., pad_to=max_length), the same model(head, batch) forward and per-feature output

Both arms' predictions are compared (they must agree: padding is masked). Reported: real tokens per second,
padding efficiency and speedup per task and overall (sum of real tokens / sum of seconds).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402


def baseline_predict(model, head, task_type, feats, pad_id, batch_size, max_length):
    """Unsorted batches padded to max_length (what jiant / XTREME's scripts do at evaluation)."""
    import torch
    from xfer_utils import features
    model.eval()
    out = []
    with torch.no_grad():
        for b in range(0, len(feats), batch_size):
            chunk = feats[b:b + batch_size]
            batch = features.collate([{"input_ids": f["input_ids"], "length": f["length"]} for f in chunk], pad_id,
                                     pad_to=max_length)
            logits = model(head, batch)["logits"].float()
            for j, f in enumerate(chunk):
                n = len(f["input_ids"])
                if task_type == "span_qa":
                    out.append((logits[j, 0, :n].numpy(), logits[j, 1, :n].numpy()))
                elif task_type == "tagging":
                    out.append(logits[j, :n].argmax(-1).numpy())
                else:
                    out.append(int(logits[j].argmax(-1)))
    return out


def first_examples(feats: list[dict], n: int) -> list[dict]:
    """The features of the first `n` examples (QA windows and tagging features carry their example_index)."""
    if feats and "example_index" in feats[0]:
        return [f for f in feats if f["example_index"] < n]
    return feats[:n]


def same(a, b, task_type) -> bool:
    if task_type == "span_qa":
        return all(np.allclose(x[0], y[0], atol=1e-3) and np.allclose(x[1], y[1], atol=1e-3)
                   for x, y in zip(a, b, strict=True))
    if task_type == "tagging":
        return sum(int(np.array_equal(x, y)) for x, y in zip(a, b, strict=True)) >= 0.99 * len(a)
    return sum(int(x == y) for x, y in zip(a, b, strict=True)) >= 0.99 * len(a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--per-lang", type=int, default=32, help="examples per language and task (default 32)")
    ap.add_argument("--batch", type=int, default=16, help="timed batch size (default 16; see the docstring)")
    ap.add_argument("--full-batch", type=int, default=64,
                    help="batch size of the whole-data padding-efficiency count (the notebooks' eval_batch_size)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--tasks", default=",".join(C.KINDS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke configuration (tests)")
    a = ap.parse_args(argv)
    import torch
    from xfer_utils import evaluation, features, models
    if a.tiny:
        a.per_lang, a.batch, a.full_batch, a.layers, a.hidden = 4, 4, 8, 1, 32
    kinds = [k for k in a.tasks.split(",") if k]
    t0, load0 = time.time(), C.loadavg()
    w = C.load_world(tiny=a.tiny, synthetic=a.synthetic, per_lang=a.per_lang if a.tiny else None, seed=a.seed,
                     kinds=kinds)
    tok = w["tokenizer"]
    enc = C.xlmr_encoder(tok, a.layers, a.hidden, max(1, a.hidden // 64), 4 * a.hidden, seed=a.seed)
    torch.manual_seed(a.seed)
    model = models.MultiTaskModel(enc, {k: (C.KINDS[k][0], C.KINDS[k][1]) for k in kinds}).eval()
    print(f"data: {w['source']}; {a.layers}-layer hidden-{a.hidden} model, batch {a.batch}, {a.per_lang} per "
          f"language; load average {load0}")
    rows = []
    for k in kinds:
        task_type, _, max_length = C.KINDS[k]
        all_by_lang = {lg: C.features_for(k, cols, tok, train=False) for lg, cols in w["rows"][k].items()}
        # the timed subset: the first --per-lang examples' features of every language
        feats_by_lang = {lg: first_examples(fs, a.per_lang) for lg, fs in all_by_lang.items()}
        # computed tokens counted as evaluation.predict pads on this device (x8 on a GPU only)
        mult = features.pad_multiple(next(model.parameters()).device)
        # whole-data padding efficiency (no compute): every example of every language, batches of --full-batch
        full_real = full_proj = full_base = 0
        for fs in all_by_lang.values():
            srt = sorted(f["length"] for f in fs)
            full_real += sum(srt)
            full_proj += sum(len(srt[i:i + a.full_batch]) * -(-max(srt[i:i + a.full_batch]) // mult) * mult
                             for i in range(0, len(srt), a.full_batch))
            full_base += len(srt) * max_length
        # warm-up on the first language
        first = next(iter(feats_by_lang.values()))
        evaluation.predict(model, k, task_type, first[: a.batch], tok.pad_token_id, a.batch)
        row = {"task": k, "languages": len(feats_by_lang), "features": 0, "real_tokens": 0,
               "project_seconds": 0.0, "baseline_seconds": 0.0, "project_computed": 0, "baseline_computed": 0,
               "max_length": max_length, "agree": True}
        for feats in feats_by_lang.values():
            t = time.perf_counter()
            p = evaluation.predict(model, k, task_type, feats, tok.pad_token_id, a.batch)
            row["project_seconds"] += time.perf_counter() - t
            t = time.perf_counter()
            b = baseline_predict(model, k, task_type, feats, tok.pad_token_id, a.batch, max_length)
            row["baseline_seconds"] += time.perf_counter() - t
            row["agree"] &= same(p, b, task_type)
            lens = [f["length"] for f in feats]
            srt = sorted(lens)
            row["features"] += len(feats)
            row["real_tokens"] += sum(lens)
            row["project_computed"] += sum(len(srt[i:i + a.batch]) * -(-max(srt[i:i + a.batch]) // mult) * mult
                                           for i in range(0, len(srt), a.batch))
            row["baseline_computed"] += len(lens) * max_length
        row["full_data_features"] = sum(len(fs) for fs in all_by_lang.values())
        row["full_data_project_padding_efficiency"] = full_real / full_proj
        row["full_data_baseline_padding_efficiency"] = full_real / full_base
        row["project_tokens_per_s"] = row["real_tokens"] / row["project_seconds"]
        row["baseline_tokens_per_s"] = row["real_tokens"] / row["baseline_seconds"]
        row["speedup"] = row["baseline_seconds"] / row["project_seconds"]
        row["project_padding_efficiency"] = row["real_tokens"] / row["project_computed"]
        row["baseline_padding_efficiency"] = row["real_tokens"] / row["baseline_computed"]
        rows.append(row)
        print(f"  {k:8s} {row['languages']:3d} languages {row['features']:6d} features: project "
              f"{row['project_seconds']:.2f} s, baseline {row['baseline_seconds']:.2f} s", flush=True)
    tp = sum(r["project_seconds"] for r in rows)
    tb = sum(r["baseline_seconds"] for r in rows)
    real = sum(r["real_tokens"] for r in rows)
    load1 = C.loadavg()
    result = {
        "benchmark": "eval_throughput",
        "speedup": tb / tp,
        "project_tokens_per_s": real / tp,
        "baseline_tokens_per_s": real / tb,
        "padding_efficiency": real / sum(r["project_computed"] for r in rows),
        "baseline_padding_efficiency": real / sum(r["baseline_computed"] for r in rows),
        "predictions_agree": all(r["agree"] for r in rows),
        "full_data_padding_efficiency": statistics.fmean(r["full_data_project_padding_efficiency"] for r in rows),
        "full_data_baseline_padding_efficiency": statistics.fmean(r["full_data_baseline_padding_efficiency"]
                                                                  for r in rows),
        "tasks": rows,
        "config": {"per_lang": a.per_lang, "batch": a.batch, "layers": a.layers, "hidden": a.hidden,
                   "precision": "fp32", "tiny": a.tiny},
        "data": w["source"],
        "machine": C.machine(),
        "load_average_start": load0,
        "load_average_end": load1,
        "wall_seconds": time.time() - t0,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": C.command_line("eval_throughput", argv),
    }
    print()
    print(C.table(rows, [("task", "task", "s"), ("languages", "langs", "d"), ("features", "features", "d"),
                         ("baseline_tokens_per_s", "baseline real tok/s", ".0f"),
                         ("project_tokens_per_s", "project real tok/s", ".0f"), ("speedup", "speedup", ".2f"),
                         ("baseline_padding_efficiency", "baseline eff", ".3f"),
                         ("project_padding_efficiency", "project eff", ".3f"),
                         ("full_data_project_padding_efficiency", "all data eff", ".3f")]))
    print(f"\noverall: {result['speedup']:.2f}x ({result['project_tokens_per_s']:.0f} vs "
          f"{result['baseline_tokens_per_s']:.0f} real tok/s); predictions agree: {result['predictions_agree']}; "
          f"load average {load0} -> {load1}")
    C.write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
