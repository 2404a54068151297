"""Sentence retrieval without target training (protocol.md §2.2, §9): one-layer mean-pooled embeddings,
Tatoeba 1-nearest-neighbour search, and BUCC 2018 margin-based bitext mining.

Layer numbering, said once: ``layer=k`` means ``hidden_states[k]`` of a HF encoder, where index 0 is the
embedding output and k is the output of the k-th Transformer layer. XLM-R large uses ``layer=14`` (jiant's
``retrieval_layer``); XTREME's scripts write the same layer as 13 (``LAYER=13``) because they index only the
Transformer layers' outputs, without the embedding output. mBERT: ``layer=8`` (XTREME's 7).

Embeddings: mean over non-pad tokens (special tokens included, as jiant's MeanPoolerHead and XTREME's
mean pooling do), L2-normalised float32. Only the first ``layer`` layers run: a pre-hook on layer ``layer``
captures its input and stops the forward pass. Cached by a content key (model fingerprint or caller key,
tokenizer, layer, max length, SHA-1 of the texts), never by a file name.

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

import hashlib
import json
import math
import os
import tempfile
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


class _Stop(Exception):
    """Raised by the layer pre-hook once the wanted hidden state is captured."""


# ---------------------------------------------------------------- embeddings

def num_layers(model) -> int:
    cfg = model.config
    for attr in ("num_hidden_layers", "num_layers", "n_layers"):
        if isinstance(getattr(cfg, attr, None), int):
            return getattr(cfg, attr)
    raise ValueError(f"cannot tell how many layers {type(model).__name__} has (no num_hidden_layers in its config)")


def _layer_list(model) -> torch.nn.ModuleList:
    n, best = num_layers(model), None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n and \
                name.split(".")[-1] in ("layer", "layers", "block", "blocks", "h"):
            if best is None or name.count(".") < best[0].count("."):
                best = (name, mod)
    if best is None:
        raise ValueError(f"cannot find the list of {n} Transformer layers in {type(model).__name__}")
    return best[1]


def model_fingerprint(model) -> str:
    """SHA-1 of the architecture config and a strided sample of every weight: changes when any layer changes."""
    h = hashlib.sha1(type(model).__name__.encode())
    cfg = model.config.to_dict()
    cfg.pop("_name_or_path", None)
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, p in model.state_dict().items():
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64].float().cpu().numpy()
        h.update(name.encode() + str(tuple(p.shape)).encode() + sample.tobytes())
    return h.hexdigest()


def embedding_cache_key(model, tokenizer, texts: Sequence[str], layer: int, max_length: int,
                        cache_key: str | None = None) -> str:
    """The content key of an embedding cache entry (see the module docstring)."""
    texts_sha1 = hashlib.sha1(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()
    ident = {"model": cache_key or model_fingerprint(model), "name": getattr(model.config, "_name_or_path", ""),
             "tokenizer": [type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer)],
             "layer": layer, "max_length": max_length, "pooling": "mean", "texts": texts_sha1}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _hidden_at(model, layers, batch: dict, layer: int) -> torch.Tensor:
    if layer == len(layers):
        return model(**batch, output_hidden_states=True).hidden_states[layer]
    captured = {}

    def pre_hook(module, args, kwargs):
        captured["h"] = args[0] if args else kwargs["hidden_states"]
        raise _Stop

    handle = layers[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        model(**batch)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["h"]


def _pad(tokenizer, enc: dict, rows: list[int], device) -> dict:
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token before embedding")
    width = max(len(enc["input_ids"][i]) for i in rows)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    out = {}
    for key, fill in (("input_ids", tokenizer.pad_token_id), ("token_type_ids", 0)):
        if key not in enc:
            continue
        seqs = [list(enc[key][i]) for i in rows]
        out[key] = [([fill] * (width - len(s)) + s) if left else (s + [fill] * (width - len(s))) for s in seqs]
    lens = [len(enc["input_ids"][i]) for i in rows]
    out["attention_mask"] = [([0] * (width - n) + [1] * n) if left else ([1] * n + [0] * (width - n)) for n in lens]
    return {k: torch.tensor(v, dtype=torch.long, device=device) for k, v in out.items()}


def embed(model, tokenizer, texts: Sequence[str], layer: int, batch_size: int = 32, max_length: int = 512,
          device=None, cache_dir: str | os.PathLike | None = None, cache_key: str | None = None,
          progress: bool = True) -> np.ndarray:
    """Embeddings (len(texts) x hidden, float32, unit rows) = mean of `hidden_states[layer]` over real tokens.

    `device`: where to run (the model is moved there); default: where the model already is. `cache_dir`: read
    or write ``emb-<content key>.npy`` there; `cache_key`: the caller's identity of the checkpoint (e.g. its
    path and hash), used instead of hashing a sample of the weights.
    """
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("embed: every text must be a string")
    layers = _layer_list(model)
    if not 0 <= layer <= len(layers):
        raise ValueError(f"layer must be between 0 (embedding output) and {len(layers)}, got {layer}")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"emb-{embedding_cache_key(model, tokenizer, texts, layer, max_length, cache_key)}.npy"
        if path.exists():
            return np.load(path)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if not texts:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))   # longest first: OOM shows early
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    from tqdm.auto import tqdm
    try:
        with torch.inference_mode(), tqdm(total=len(texts), desc=f"embed layer {layer}", disable=not progress,
                                          unit="sent") as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                batch = _pad(tokenizer, enc, rows, device)
                h = _hidden_at(model, layers, batch, layer).float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[rows] = pooled.cpu().numpy()
                bar.update(len(rows))
    finally:
        model.train(was_training)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, out)
        os.replace(tmp, path)                                      # atomic: never a half-written cache entry
    return out


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
