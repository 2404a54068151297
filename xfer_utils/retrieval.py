"""Sentence retrieval without target training (docs/sources.md, Retrieval): Tatoeba 1-nearest-neighbour search and
BUCC 2018 margin-based bitext mining over the embeddings of embeddings.py.

Embeddings (one layer, mean-pooled, cached by content) are in embeddings.py.

kNN: ``knn`` uses faiss ``IndexFlatIP`` when faiss is importable and the work is on CPU, else an exact blocked
torch matmul (on the GPU when there is one); both return the same neighbours. Mining needs k-NN in both
directions; ``mine_bitext`` gets both from one pass over the similarity blocks (half the matmul work of two
faiss searches), never holding more than one block of the N x M similarity matrix.

>>> import numpy as np
>>> x = np.eye(3, dtype=np.float32); y = x[[2, 0, 1]]
>>> tatoeba_search(x, y).tolist()   # index = x (non-English), queries = y (English)
[2, 0, 1]
>>> [(i, j) for i, j, _ in mine_bitext(x, y, k=1)]
[(0, 1), (1, 2), (2, 0)]
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from xfer_utils import tasks

MARGINS = ("ratio", "distance", "absolute")
MODES = ("max", "intersect", "forward", "backward")
# XTREME scores BUCC "dev" on the BUCC "sample" files and "test" on the "training" files (jiant's comment:
# "training -> test (yup, it's weird)"): the real BUCC test gold is not public.
XTREME_BUCC_SPLITS = {"validation": "sample", "test": "training"}


# ---------------------------------------------------------------- kNN

def _device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _faiss():
    try:
        import faiss
        return faiss
    except ImportError:
        return None


def _blocked_topk(x: torch.Tensor, y: torch.Tensor, k: int, backward: bool, block: tuple[int, int]):
    """Exact top-k by inner product of every x row over y and (if `backward`) of every y row over x."""
    nx, ny = x.shape[0], y.shape[0]
    kf, kb = min(k, ny), min(k, nx)
    fwd_v = torch.empty((nx, kf), dtype=torch.float32, device=x.device)
    fwd_i = torch.empty((nx, kf), dtype=torch.long, device=x.device)
    bwd_v = torch.full((ny, kb), -math.inf, dtype=torch.float32, device=x.device)
    bwd_i = torch.zeros((ny, kb), dtype=torch.long, device=x.device)
    bx, by = block
    buf = torch.empty(bx * by, dtype=torch.float32, device=x.device)   # one block, reused (no page faults)
    for xs in range(0, nx, bx):
        xb = x[xs:xs + bx]
        a = xb.shape[0]
        vals, idxs = [], []
        for ys in range(0, ny, by):
            yb = y[ys:ys + by]
            b = yb.shape[0]
            s = buf[:a * b].view(a, b)
            torch.mm(xb, yb.T, out=s)
            v, i = s.topk(min(kf, b), dim=1)
            vals.append(v)
            idxs.append(i + ys)
            if backward:
                cv, ci = s.topk(min(kb, a), dim=0)
                mv = torch.cat([bwd_v[ys:ys + b], cv.T], 1)
                mi = torch.cat([bwd_i[ys:ys + b], ci.T + xs], 1)
                v2, p = mv.topk(kb, dim=1)
                bwd_v[ys:ys + b], bwd_i[ys:ys + b] = v2, mi.gather(1, p)
        v, i = torch.cat(vals, 1), torch.cat(idxs, 1)
        v2, p = v.topk(kf, dim=1)
        fwd_v[xs:xs + a], fwd_i[xs:xs + a] = v2, i.gather(1, p)
    return (fwd_v, fwd_i, bwd_v, bwd_i) if backward else (fwd_v, fwd_i)


def _block(device: torch.device) -> tuple[int, int]:
    return (8192, 16384) if device.type == "cuda" else (1024, 1024)   # CPU: a block stays in cache


def _as_tensor(a, device) -> torch.Tensor:
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array (n x dim), got shape {a.shape}")
    return torch.from_numpy(a).to(device)


def knn(x, y, k: int, use_faiss: bool | None = None, device=None) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `x`, its `k` rows of `y` with the largest inner product: (sims, indices), best first.

    Inner product = cosine for unit rows. `use_faiss`: None = faiss when importable and on CPU.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    dev = _device(device)
    faiss = _faiss() if use_faiss is not False else None
    if use_faiss and faiss is None:
        raise ValueError("use_faiss=True but faiss is not installed (pip install faiss-cpu)")
    xa, ya = np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32)
    if xa.ndim != 2 or ya.ndim != 2 or xa.shape[1] != ya.shape[1]:
        raise ValueError(f"knn needs two 2-d arrays of the same width, got {xa.shape} and {ya.shape}")
    k = min(k, ya.shape[0])
    if faiss is not None and (use_faiss or dev.type == "cpu"):
        index = faiss.IndexFlatIP(ya.shape[1])
        index.add(ya)
        sims, idx = index.search(xa, k)
        return sims, idx.astype(np.int64)
    v, i = _blocked_topk(_as_tensor(xa, dev), _as_tensor(ya, dev), k, False, _block(dev))
    return v.cpu().numpy(), i.cpu().numpy()


def _unit(a) -> np.ndarray:
    a = np.array(a, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def tatoeba_search(src_emb, tgt_emb, use_faiss: bool | None = None, device=None) -> np.ndarray:
    """For each row of `tgt_emb` (queries: English), the index of its cosine-nearest row of `src_emb` (the
    index: the other language), as XTREME scores Tatoeba; swap the arguments for the other direction."""
    return knn(_unit(tgt_emb), _unit(src_emb), 1, use_faiss, device)[1][:, 0]


def pair_cosines(emb_a, emb_b) -> np.ndarray:
    """Cosine of row i of `emb_a` with row i of `emb_b` (one score per sentence pair)."""
    a, b = _unit(emb_a), _unit(emb_b)
    if a.shape != b.shape:
        raise ValueError(f"pair_cosines needs two arrays of the same shape (one row per pair), got {a.shape} and "
                         f"{b.shape}")
    return (a * b).sum(axis=1)


def sts_cosine_scores(emb_a, emb_b, gold: Sequence[float]) -> dict[str, float]:
    """Unsupervised STS (no target training): each pair's cosine scored against the gold similarity as STS is,
    Pearson and Spearman x 100 (metrics.correlation_scores)."""
    from xfer_utils import metrics
    return metrics.correlation_scores(pair_cosines(emb_a, emb_b).tolist(), list(gold))


# ---------------------------------------------------------------- BUCC mining

def _margin(a: np.ndarray, b: np.ndarray, margin: str) -> np.ndarray:
    if margin == "ratio":
        return a / b
    if margin == "distance":
        return a - b
    return a


def mine_bitext(src_emb, tgt_emb, k: int = 4, margin: str = "ratio", mode: str = "max",
                use_faiss: bool | None = None, device=None) -> list[tuple[int, int, float]]:
    """Margin-based mining (Artetxe & Schwenk 2019; XTREME's utils_retrieve.mine_bitext, cosine distance).

    Each source's k nearest targets and each target's k nearest sources are its candidates, scored by
    ``margin(cos(x, y), (mean kNN sim of x + mean kNN sim of y) / 2)``; each sentence keeps its best candidate.
    `mode`: "max" = forward and backward bests pooled and matched greedily 1-to-1 by score; "intersect" = pairs
    that are each other's best; "forward"/"backward" = one direction. Returns (src_idx, tgt_idx, score), best
    first, with no threshold (choose it with `bucc_threshold`). `use_faiss`: None/False = one blocked torch pass
    for both directions; True = two faiss searches, as XTREME does.
    """
    if margin not in MARGINS:
        raise ValueError(f"unknown margin {margin!r}; valid margins: {', '.join(MARGINS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    x, y = _unit(src_emb), _unit(tgt_emb)
    if len(x) == 0 or len(y) == 0:
        return []
    if use_faiss:
        fv, fi = knn(x, y, k, use_faiss=True)
        bv, bi = knn(y, x, k, use_faiss=True)
    else:
        dev = _device(device)
        fv, fi, bv, bi = (t.cpu().numpy() for t in _blocked_topk(_as_tensor(x, dev), _as_tensor(y, dev), k,
                                                                 True, _block(dev)))
    fwd_mean, bwd_mean = fv.mean(axis=1), bv.mean(axis=1)
    fwd_scores = _margin(fv, (fwd_mean[:, None] + bwd_mean[fi]) / 2, margin)
    bwd_scores = _margin(bv, (bwd_mean[:, None] + fwd_mean[bi]) / 2, margin)
    rows_x, rows_y = np.arange(len(x)), np.arange(len(y))
    fwd_best, fwd_score = fi[rows_x, fwd_scores.argmax(1)], fwd_scores.max(1)
    bwd_best, bwd_score = bi[rows_y, bwd_scores.argmax(1)], bwd_scores.max(1)
    if mode == "forward":
        pairs = list(zip(rows_x, fwd_best, fwd_score))
    elif mode == "backward":
        pairs = list(zip(bwd_best, rows_y, bwd_score))
    elif mode == "intersect":
        pairs = [(i, j, fwd_score[i]) for i, j in enumerate(fwd_best) if bwd_best[j] == i]
    else:
        src = np.concatenate([rows_x, bwd_best])
        tgt = np.concatenate([fwd_best, rows_y])
        scores = np.concatenate([fwd_score, bwd_score])
        seen_src, seen_tgt, pairs = set(), set(), []
        for n in np.argsort(-scores, kind="stable"):
            i, j = int(src[n]), int(tgt[n])
            if i not in seen_src and j not in seen_tgt:
                seen_src.add(i)
                seen_tgt.add(j)
                pairs.append((i, j, scores[n]))
    pairs = [(int(i), int(j), float(s)) for i, j, s in pairs]
    return sorted(pairs, key=lambda p: -p[2])


def _candidate_items(candidates) -> list[tuple[tuple[str, str], float]]:
    if isinstance(candidates, Mapping):
        return [((str(a), str(b)), float(s)) for (a, b), s in candidates.items()]
    return [((str(a), str(b)), float(s)) for a, b, s in candidates]


def bucc_threshold(candidates, gold_pairs: Iterable) -> float:
    """The score threshold that maximises F1 against `gold_pairs` (XTREME's bucc_optimize): candidates sorted
    by score, the cut placed halfway to the next candidate's score; 0 when no candidate is correct.

    `candidates`: {(src_id, tgt_id): score} or [(src_id, tgt_id, score)].

    >>> bucc_threshold({("a", "x"): 1.3, ("b", "y"): 1.2, ("c", "z"): 1.1}, [("a", "x"), ("b", "y")])
    1.15
    """
    gold = {(str(a), str(b)) for a, b in gold_pairs}
    if not gold:
        raise ValueError("bucc_threshold needs gold pairs")
    items = sorted(_candidate_items(candidates), key=lambda it: -it[1])
    threshold, best_f1, correct = 0.0, 0.0, 0
    for n, (pair, score) in enumerate(items):
        correct += pair in gold
        if correct:
            p, r = correct / (n + 1), correct / len(gold)
            f1 = 2 * p * r / (p + r)
            if f1 > best_f1:
                best_f1 = f1
                threshold = (score + items[n + 1][1]) / 2 if n + 1 < len(items) else score
    return threshold


def bucc_extract(candidates, threshold: float) -> list[tuple[str, str]]:
    """The candidate pairs whose score is at least `threshold`."""
    return [pair for pair, score in _candidate_items(candidates) if score >= threshold]


@dataclass
class BuccCorpus:
    """One side pair of a BUCC split. `proxy=True`: built from gold pairs only (no distractor sentences), so
    mining on it is an easy proxy, NOT the BUCC task."""
    lang: str
    split: str
    src_ids: list[str]
    src_sents: list[str]
    tgt_ids: list[str]
    tgt_sents: list[str]
    gold: set[tuple[str, str]] | None = None
    proxy: bool = False
    note: str = field(default="")


def _read_tsv(path: Path) -> tuple[list[str], list[str]]:
    ids, sents = [], []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if "\t" not in line:
                raise ValueError(f"{path}:{n}: expected 'id<TAB>sentence'")
            i, s = line.split("\t", 1)
            ids.append(i.strip())
            sents.append(s.strip())
    return ids, sents


def read_bucc(path: str | os.PathLike, lang: str, split: str) -> BuccCorpus:
    """Read the original BUCC 2018 files ``<lang>-en.<split>.{<lang>,en,gold}`` from `path` (the folder holding
    them, or its parent with a ``<lang>-en/`` folder). `split`: the BUCC file split, "sample", "training" or
    "test" (no gold; "validation" is accepted for sample). XTREME's test is BUCC "training": see
    ``XTREME_BUCC_SPLITS`` and `read_bucc_corpus`.
    Get the corpora from https://comparable.limsi.fr/bucc2018/ (see tasks.get("bucc2018").note)."""
    tasks.check_language("bucc2018", lang)
    split = {"validation": "sample", "dev": "sample"}.get(split, split)
    root = Path(path)
    if (root / f"{lang}-en").is_dir():
        root = root / f"{lang}-en"
    stem = root / f"{lang}-en.{split}"
    src, tgt = Path(f"{stem}.{lang}"), Path(f"{stem}.en")
    if not src.exists() or not tgt.exists():
        raise FileNotFoundError(f"BUCC 2018 files {src.name} and {tgt.name} not found in {root}; download the "
                                f"corpora from https://comparable.limsi.fr/bucc2018/ and pass their folder")
    src_ids, src_sents = _read_tsv(src)
    tgt_ids, tgt_sents = _read_tsv(tgt)
    gold_path = Path(f"{stem}.gold")
    gold = None
    if gold_path.exists():
        gold = set()
        for n, line in enumerate(gold_path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                parts = line.strip().split("\t")
                if len(parts) != 2:
                    raise ValueError(f"{gold_path}:{n}: expected 'src_id<TAB>tgt_id'")
                gold.add((parts[0], parts[1]))
    return BuccCorpus(lang, split, src_ids, src_sents, tgt_ids, tgt_sents, gold)


def read_bucc_corpus(path: str | os.PathLike, lang: str, split: str):
    """`read_bucc` with XTREME's split names ("validation" = BUCC sample, "test" = BUCC training), as a tuple
    (src_ids, src_sents, tgt_ids, tgt_sents, gold pairs)."""
    if split not in XTREME_BUCC_SPLITS:
        raise ValueError(f"unknown XTREME BUCC split {split!r}; valid splits: {', '.join(XTREME_BUCC_SPLITS)}")
    c = read_bucc(path, lang, XTREME_BUCC_SPLITS[split])
    if c.gold is None:
        raise FileNotFoundError(f"no gold file for BUCC {lang} {c.split} in {path}")
    return c.src_ids, c.src_sents, c.tgt_ids, c.tgt_sents, c.gold


def bucc_proxy_corpus(rows: Iterable[Mapping], lang: str, split: str) -> BuccCorpus:
    """A BuccCorpus from hub `google/xtreme` ``bucc18.<lang>`` rows (gold pairs only; the sentence ids sit in
    `source_lang`/`target_lang`). Labelled ``proxy=True``: it is not the BUCC mining task."""
    src_ids, src_sents, tgt_ids, tgt_sents = [], [], [], []
    for r in rows:
        src_ids.append(r["source_lang"])
        src_sents.append(r["source_sentence"].strip())
        tgt_ids.append(r["target_lang"])
        tgt_sents.append(r["target_sentence"].strip())
    return BuccCorpus(lang, split, src_ids, src_sents, tgt_ids, tgt_sents, set(zip(src_ids, tgt_ids)), proxy=True,
                      note="PROXY: hub gold pairs only, no distractor sentences; not comparable to BUCC F1")


def _unique(sents: Sequence[str]) -> tuple[list[int], dict[int, int]]:
    first, count = {}, {}
    for n, s in enumerate(sents):
        first.setdefault(s, n)
        count[s] = count.get(s, 0) + 1
    rows = list(first.values())
    once = {u: rows[u] for u, s in enumerate(first) if count[s] == 1}   # unique index -> line, if not repeated
    return rows, once


def bucc_candidates(corpus: BuccCorpus, src_emb, tgt_emb, k: int = 4, margin: str = "ratio", mode: str = "max",
                    use_faiss: bool | None = None, device=None) -> dict[tuple[str, str], float]:
    """Mined {(src_id, tgt_id): score} for a corpus; embedding rows align with corpus.src_sents/tgt_sents.

    As XTREME: mining runs over distinct sentences, and a sentence that occurs more than once in its file is
    dropped from the id pairs (its id is ambiguous)."""
    if len(src_emb) != len(corpus.src_sents) or len(tgt_emb) != len(corpus.tgt_sents):
        raise ValueError("bucc_candidates: embedding rows must align with corpus.src_sents and corpus.tgt_sents")
    src_rows, src_once = _unique(corpus.src_sents)
    tgt_rows, tgt_once = _unique(corpus.tgt_sents)
    mined = mine_bitext(np.asarray(src_emb)[src_rows], np.asarray(tgt_emb)[tgt_rows], k, margin, mode,
                        use_faiss, device)
    out: dict[tuple[str, str], float] = {}
    for i, j, score in mined:
        if i in src_once and j in tgt_once:
            pair = (corpus.src_ids[src_once[i]], corpus.tgt_ids[tgt_once[j]])
            out[pair] = max(score, out.get(pair, score))
    return out


def bucc_evaluate(dev_candidates, dev_gold: Iterable, test_candidates, test_gold: Iterable) -> dict[str, float]:
    """XTREME's BUCC protocol: threshold chosen for F1 on the dev gold, applied to test; scores x 100."""
    from xfer_utils.metrics import bucc_scores
    threshold = bucc_threshold(dev_candidates, dev_gold)
    return {"threshold": threshold, **bucc_scores(bucc_extract(test_candidates, threshold), test_gold)}


def read_tatoeba(path: str | os.PathLike, lang: str) -> tuple[list[str], list[str]]:
    """(non-English sentences, English sentences) from LASER's ``tatoeba.<xxx>-eng.{<xxx>,eng}`` in `path`;
    line i of one is the translation of line i of the other. `lang`: ISO 639-1 (mapped by tasks.TATOEBA_CODES)
    or the 3-letter code itself."""
    code = tasks.TATOEBA_CODES.get(lang, lang)
    files = [Path(path) / f"tatoeba.{code}-eng.{code}", Path(path) / f"tatoeba.{code}-eng.eng"]
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"Tatoeba file {f.name} not found in {path} (LASER data/tatoeba/v1 layout)")
    xx, en = ([line.rstrip("\n") for line in f.open(encoding="utf-8")] for f in files)
    if len(xx) != len(en):
        raise ValueError(f"Tatoeba {code}: {len(xx)} {code} lines but {len(en)} English lines")
    return xx, en
