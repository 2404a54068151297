"""Sentence embeddings for retrieval: one layer of the encoder, mean-pooled, L2-normalised.

Layer numbering, said once: ``layer=k`` means ``hidden_states[k]`` of a HF encoder, where index 0 is the
embedding output and k is the output of the k-th Transformer layer. XLM-R large uses ``layer=14`` (jiant's
``retrieval_layer``); XTREME's scripts write the same layer as 13 (``LAYER=13``) because they index only the
Transformer layers' outputs, without the embedding output. mBERT: ``layer=8`` (XTREME's 7).

Embeddings: mean over non-pad tokens (special tokens included, as jiant's MeanPoolerHead and XTREME's
mean pooling do), L2-normalised float32. Only the first ``layer`` layers run: a pre-hook on layer ``layer``
captures its input and stops the forward pass. Cached by a content key (model fingerprint or caller key,
tokenizer, layer, max length, SHA-1 of the texts), never by a file name.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


class _Stop(Exception):
    """Raised by the layer pre-hook once the wanted hidden state is captured."""


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
        from . import files
        files.atomic_write(path, lambda f: np.save(f, out))       # atomic: never a half-written cache entry
    return out
