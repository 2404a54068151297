"""Retrieval: BUCC-style bitext mining of N x N sentences and sentence embedding, project vs plain baselines.

    python benchmarks/retrieval.py [--json benchmarks/results/retrieval.json] [--sizes 10000,50000] [--tiny]

Mining (the headline): N source and N target unit vectors of dimension 768 (XLM-R base width; random, with N/2
planted translation pairs = source + noise, shuffled), k = 4, ratio margin, mode "max" (XTREME's BUCC settings).

    project:  xfer_utils.retrieval.mine_bitext(x, y)  - one blocked torch pass gives both k-NN directions
    numpy:    the plain way: for each direction, similarity blocks x[rows] @ y.T (the whole N x N matrix when it fits
              the --numpy-block-gib budget, 2 GiB by default; row blocks otherwise), np.argpartition for the top k,
              then the same vectorised margin scoring and greedy 1-to-1 matching
    faiss:    mine_bitext(..., use_faiss=True) - two IndexFlatIP searches, as XTREME's / jiant's code does (--no-faiss
              to skip)

Each method's time and peak extra resident memory (RSS sampled every 5 ms, minus the RSS before the call; covers
numpy, torch and faiss alike). All three must return the same pairs (checked; `agreement` in the JSON).

Embedding (secondary): sentences from Tatoeba (../shared/data; synthetic otherwise) through a 12-layer XLM-R-shaped
random encoder (hidden 256), layer 7 (= XLM-R large's layer 14 of 24, scaled):

    project:  xfer_utils.embeddings.embed(model, tok, texts, layer=7)  (length-sorted batches of 32, stops at layer 7)
    xtreme:   XTREME's evaluate_retrieval way: unsorted batches of 100 padded to the batch's longest, the whole
              encoder run with output_hidden_states, mean-pool layer 7
    jiant:    jiant's way: every sentence padded to 512, batches of 8, the whole encoder (measured on a subset)

JSON: ``speedup`` = numpy seconds / project seconds for mining at the largest N (50k by default).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402


# ------------------------------------------------------------------ data
def planted(n: int, dim: int, seed: int = 0, noise: float = 0.6):
    """(x, y, gold): unit rows; half of the sources have a translation in y (x + noise, renormalised)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    y = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.permutation(n)[: n // 2]
    tgt = rng.permutation(n)[: n // 2]
    y[tgt] = x[src] + noise * rng.standard_normal((len(src), dim), dtype=np.float32) / np.sqrt(dim)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x, y, set(zip(src.tolist(), tgt.tolist(), strict=True))


# ------------------------------------------------------------------ the plain numpy baseline
def numpy_knn(x: np.ndarray, y: np.ndarray, k: int, block_bytes: float) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of each x row over y: full similarity blocks + np.argpartition."""
    rows = int(max(1, min(len(x), block_bytes // (4 * len(y)))))
    sims = np.empty((len(x), k), dtype=np.float32)
    idx = np.empty((len(x), k), dtype=np.int64)
    for s in range(0, len(x), rows):
        S = x[s:s + rows] @ y.T
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        v = np.take_along_axis(S, part, axis=1)
        o = np.argsort(-v, axis=1, kind="stable")
        sims[s:s + rows] = np.take_along_axis(v, o, axis=1)
        idx[s:s + rows] = np.take_along_axis(part, o, axis=1)
        del S, part
    return sims, idx


def numpy_mine(x: np.ndarray, y: np.ndarray, k: int = 4, block_bytes: float = 2 * 2**30) -> list[tuple]:
    """Ratio-margin mining, mode 'max' (forward and backward bests, greedy 1-to-1), all in numpy."""
    fv, fi = numpy_knn(x, y, k, block_bytes)
    bv, bi = numpy_knn(y, x, k, block_bytes)
    fm, bm = fv.mean(1), bv.mean(1)
    fs = fv / ((fm[:, None] + bm[fi]) / 2)
    bs = bv / ((bm[:, None] + fm[bi]) / 2)
    rx, ry = np.arange(len(x)), np.arange(len(y))
    src = np.concatenate([rx, bi[ry, bs.argmax(1)]])
    tgt = np.concatenate([fi[rx, fs.argmax(1)], ry])
    scores = np.concatenate([fs.max(1), bs.max(1)])
    seen_s, seen_t, pairs = set(), set(), []
    for n in np.argsort(-scores, kind="stable"):
        i, j = int(src[n]), int(tgt[n])
        if i not in seen_s and j not in seen_t:
            seen_s.add(i)
            seen_t.add(j)
            pairs.append((i, j, float(scores[n])))
    return sorted(pairs, key=lambda p: -p[2])


def timed(fn, *args, **kw):
    with C.PeakRSS() as mem:
        t = time.perf_counter()
        out = fn(*args, **kw)
        dt = time.perf_counter() - t
    return out, dt, mem.peak_extra


def agreement(a: list[tuple], b: list[tuple], top: int) -> float:
    """Share of the `top` best pairs of `a` that `b` also returns (same source and target)."""
    sa = {(i, j) for i, j, _ in a[:top]}
    sb = {(i, j) for i, j, _ in b}
    return len(sa & sb) / max(1, len(sa))


def bench_mining(sizes, dim, k, block_gib, use_faiss, seed) -> list[dict]:
    from xfer_utils import retrieval
    rows = []
    for n in sizes:
        x, y, gold = planted(n, dim, seed)
        res = {}
        methods = [("project", partial(retrieval.mine_bitext, x, y, k=k)),
                   ("numpy", partial(numpy_mine, x, y, k, block_gib * 2**30))]
        if use_faiss and retrieval._faiss() is not None:
            methods.append(("faiss", partial(retrieval.mine_bitext, x, y, k=k, use_faiss=True)))
        for name, fn in methods:
            pairs, dt, mem = timed(fn)
            res[name] = pairs
            top = pairs[: len(gold)]
            rows.append({"n": n, "dim": dim, "method": name, "seconds": dt, "peak_extra_mib": mem / 2**20,
                         "pairs": len(pairs),
                         "planted_recall_top": len({(i, j) for i, j, _ in top} & gold) / max(1, len(gold))})
            print(f"  N={n:6d} {name:8s} {dt:8.2f} s  peak +{mem / 2**20:8.0f} MiB", flush=True)
        for r in rows:
            if r["n"] == n:
                r["agreement_with_project"] = agreement(res["project"], res[r["method"]], len(gold))
                r["speedup_of_project"] = next(q["seconds"] for q in rows if q["n"] == n and
                                               q["method"] == r["method"]) / \
                    next(q["seconds"] for q in rows if q["n"] == n and q["method"] == "project")
        del x, y, res, methods
    return rows


# ------------------------------------------------------------------ embedding
def reference_embed(model, tok, texts, layer, batch_size, padding, max_length=512):
    """The reference implementations' encoding: unsorted batches, the whole encoder, mean-pool one layer.
    XTREME's evaluate_retrieval pads each batch to its longest (padding=True, batches of 100); jiant pads every
    sentence to max_length (padding="max_length", static shapes, batches of 8)."""
    import torch
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            b = tok(texts[s:s + batch_size], truncation=True, max_length=max_length, padding=padding,
                    return_tensors="pt")
            h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                      output_hidden_states=True).hidden_states[layer]
            m = b["attention_mask"].unsqueeze(-1).float()
            out[s:s + batch_size] = ((h * m).sum(1) / m.sum(1)).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def bench_embedding(n: int, n_jiant: int, layers: int, hidden: int, layer: int, tiny: bool, synthetic: bool,
                    seed: int) -> dict:
    from xfer_utils import embeddings
    w = C.load_world(tiny=tiny, synthetic=synthetic, per_lang=None if not tiny else 12, seed=seed,
                     kinds=("sentence",))
    tok = w["tokenizer"]
    texts = [t for cols in w["rows"]["sentence"].values() for t in cols["text_a"]]
    rng = np.random.default_rng(seed)
    texts = [texts[i] for i in rng.permutation(len(texts))[:n]]
    enc = C.xlmr_encoder(tok, layers, hidden, max(1, hidden // 64), 4 * hidden, seed=seed)
    enc.eval()
    embeddings.embed(enc, tok, texts[:64], layer, progress=False)     # warm-up
    out = {"n": len(texts), "layers": layers, "hidden": hidden, "layer": layer, "data": w["source"],
           "mean_tokens": float(np.mean([len(x) for x in tok(texts)["input_ids"]]))}
    e_p, out["project_seconds"], _ = timed(embeddings.embed, enc, tok, texts, layer, batch_size=32, max_length=512,
                                           progress=False)
    e_x, out["xtreme_seconds"], _ = timed(reference_embed, enc, tok, texts, layer, 100, True)
    sub = texts[:n_jiant]
    e_j, out["jiant_seconds"], _ = timed(reference_embed, enc, tok, sub, layer, 8, "max_length")
    out["jiant_n"] = len(sub)
    out["project_sent_per_s"] = len(texts) / out["project_seconds"]
    out["xtreme_sent_per_s"] = len(texts) / out["xtreme_seconds"]
    out["jiant_sent_per_s"] = len(sub) / out["jiant_seconds"]
    out["speedup_vs_xtreme"] = out["project_sent_per_s"] / out["xtreme_sent_per_s"]
    out["speedup_vs_jiant"] = out["project_sent_per_s"] / out["jiant_sent_per_s"]
    out["max_abs_diff_vs_xtreme"] = float(np.abs(e_p - e_x).max())
    out["max_abs_diff_vs_jiant"] = float(np.abs(e_p[: len(sub)] - e_j).max())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--sizes", default="10000,50000", help="N values for mining (comma-separated)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--numpy-block-gib", type=float, default=2.0,
                    help="largest similarity block the numpy baseline holds (GiB; the whole matrix when it fits)")
    ap.add_argument("--no-faiss", action="store_true", help="skip the faiss (XTREME) arm")
    ap.add_argument("--embed-n", type=int, default=4000, help="sentences to embed (0 = skip the embedding part)")
    ap.add_argument("--embed-jiant-n", type=int, default=200, help="sentences for the slow jiant-style arm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke configuration (tests)")
    a = ap.parse_args(argv)
    layers, hidden, layer = 12, 256, 7
    if a.tiny:
        a.sizes, a.dim, a.embed_n, a.embed_jiant_n = "300,600", 32, 60, 8
        layers, hidden, layer = 3, 32, 2
    sizes = [int(s) for s in a.sizes.split(",") if s]
    t0, load0 = time.time(), C.loadavg()
    print(f"mining N x N, dim {a.dim}, k {a.k}, ratio margin, mode max; load average {load0}")
    rows = bench_mining(sizes, a.dim, a.k, a.numpy_block_gib, not a.no_faiss, a.seed)
    emb = None
    if a.embed_n > 0:
        print(f"embedding {a.embed_n} sentences, {layers}-layer hidden-{hidden} encoder, layer {layer}")
        emb = bench_embedding(a.embed_n, a.embed_jiant_n, layers, hidden, layer, a.tiny, a.synthetic, a.seed)
    nmax = max(sizes)
    proj = next(r for r in rows if r["n"] == nmax and r["method"] == "project")
    base = next(r for r in rows if r["n"] == nmax and r["method"] == "numpy")
    fais = next((r for r in rows if r["n"] == nmax and r["method"] == "faiss"), None)
    load1 = C.loadavg()
    result = {
        "benchmark": "retrieval",
        "speedup": base["seconds"] / proj["seconds"],
        "speedup_at_n": nmax,
        "speedup_vs_faiss": fais["seconds"] / proj["seconds"] if fais else None,
        "target": {"speedup": 2.0},
        "mining": rows,
        "embedding": emb,
        "config": {"sizes": sizes, "dim": a.dim, "k": a.k, "margin": "ratio", "mode": "max",
                   "numpy_block_gib": a.numpy_block_gib, "tiny": a.tiny},
        "machine": C.machine(),
        "load_average_start": load0,
        "load_average_end": load1,
        "wall_seconds": time.time() - t0,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": C.command_line("retrieval", argv),
    }
    print()
    print(C.table(rows, [("n", "N", "d"), ("method", "method", "s"), ("seconds", "seconds", ".2f"),
                         ("speedup_of_project", "project speedup", ".2f"),
                         ("peak_extra_mib", "peak extra MiB", ".0f"),
                         ("agreement_with_project", "same pairs", ".4f"),
                         ("planted_recall_top", "planted recall", ".3f")]))
    if emb:
        print(f"\nembedding {emb['n']} sentences (mean {emb['mean_tokens']:.1f} tokens): project "
              f"{emb['project_sent_per_s']:.0f} sent/s, xtreme-style {emb['xtreme_sent_per_s']:.0f} "
              f"({emb['speedup_vs_xtreme']:.2f}x), jiant-style {emb['jiant_sent_per_s']:.1f} "
              f"({emb['speedup_vs_jiant']:.1f}x, on {emb['jiant_n']}); max |diff| {emb['max_abs_diff_vs_xtreme']:.1e}")
    print(f"\nmining speedup at N={nmax}: {result['speedup']:.2f}x over numpy (target >= 2)"
          + (f", {result['speedup_vs_faiss']:.2f}x over faiss" if fais else "") + f"; load average {load0} -> {load1}")
    C.write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
