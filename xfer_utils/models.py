"""Encoder (any model of the ladder, via AutoModel) + thin heads per task type; one shared encoder, one head per task.

Transfer between phases is encoder-only: `save_encoder` writes the encoder and tokenizer, `build` loads them into a
fresh model whose heads are newly initialised, and returns a load report (keys loaded, keys freshly initialised)
that the notebooks print, so an intermediate head can never leak into a target task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .features import IGNORE

T5_TYPES = ("t5", "mt5", "umt5")
# Family facts that decide a model's inputs and outputs, keyed by `config.model_type`: every checkpoint carries it
# (a hub id outside the ladder, a saved intermediate encoder folder), while names and paths do not.
# - pooling: sentence-level heads read the first token ([CLS] / <s>), as BERT's and RoBERTa's classifiers do; T5
#   encoders have no summary token, so they mean-pool over the attention mask (the usual choice for T5 encoders);
#   `pooling(config)` is the one owner.
# - token types: passed to the encoder only when it has several (`type_vocab_size > 1`: mBERT, RemBERT); XLM-R has 1,
#   mDeBERTa 0 (its tokenizer still returns them), DistilBERT and T5 none.
MEAN_POOLED_TYPES = T5_TYPES
T5_ENCODER_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def pooling(config) -> str:
    """'mean' (over the attention mask) for encoders without a summary token, else 'first'."""
    return "mean" if config.model_type in MEAN_POOLED_TYPES else "first"


def uses_token_types(config) -> bool:
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1


# Packing (train.TrainConfig.packing, features.pack): several sequences in one row, each attending only within itself
# (a block-diagonal mask), with its own positions. Exact per family, not approximate:
# - absolute positions (BERT, RemBERT, DistilBERT) restart at 0, RoBERTa's (XLM-R, XLM-R XL) at padding_idx + 1,
#   passed as position_ids;
# - relative positions (mT5's buckets, DeBERTa-v2's c2p/p2c buckets) depend on query - key only, which packing keeps
#   within a sequence; the mask removes every pair across sequences. DeBERTa-v2's optional convolution layer
#   (conv_kernel_size) would mix neighbouring sequences: refused.
# tests/test_packing.py checks losses and gradients equal the padded layout's, per family and head type.
PACKING_SCHEMES = {"xlm-roberta": "roberta", "xlm-roberta-xl": "roberta", "roberta": "roberta", "bert": "absolute",
                   "rembert": "absolute", "distilbert": "absolute", "deberta-v2": "relative", "mt5": "relative",
                   "t5": "relative"}
PACKING_ATTENTION = ("sdpa", "eager")


def packing_refusal(config) -> str:
    """Why this encoder cannot take packed rows ('' when it can)."""
    kind = config.model_type
    if kind not in PACKING_SCHEMES:
        return (f"model type {kind!r} has no packing support; packing supports: {', '.join(PACKING_SCHEMES)} "
                f"(set packing='off')")
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in PACKING_ATTENTION:
        return (f"attention {impl!r} of {kind} takes no block-diagonal mask; packing needs "
                f"{' or '.join(PACKING_ATTENTION)} (set packing='off')")
    if kind == "deberta-v2" and (getattr(config, "conv_kernel_size", 0) or (getattr(config, "z_steps", 0) or 0) > 1):
        return f"{kind} with a convolution layer or z_steps mixes neighbouring sequences; set packing='off'"
    return ""


def packing_position_offset(config) -> int:
    """First position id of every packed sequence: padding_idx + 1 for RoBERTa's embeddings, else 0."""
    return int(config.pad_token_id) + 1 if PACKING_SCHEMES.get(config.model_type) == "roberta" else 0


def _hidden(config) -> int:
    return getattr(config, "hidden_size", None) or getattr(config, "d_model")


def load_pretrained_encoder(name: str, attn: str = "sdpa"):
    """AutoModel for encoders; the encoder stack alone for (m)T5. SDPA where the model supports it, else eager
    (mDeBERTa, RemBERT have no SDPA). A name that cannot be loaded offline says where to look."""
    import transformers
    from transformers import AutoConfig, AutoModel
    try:
        config = AutoConfig.from_pretrained(name)
    except OSError as e:
        raise OSError(f"cannot load model {name!r}: not a local checkpoint folder and not in the hub cache "
                      f"(offline?). Pass a local path, set HF_HOME/HF_HUB_CACHE to a cache that holds it, or build "
                      f"the offline tiny model with `xfer tiny DIR`") from e
    cls = AutoModel
    if config.model_type in T5_TYPES:
        cls = getattr(transformers, T5_ENCODER_CLASSES[config.model_type])   # the encoder stack, no decoder
    kwargs = {"add_pooling_layer": False} if config.model_type in ("xlm-roberta", "xlm-roberta-xl", "bert",
                                                                   "roberta", "rembert") else {}
    try:
        return cls.from_pretrained(name, attn_implementation=attn, **kwargs)
    except (ValueError, ImportError):   # the model has no such attention kernel
        return cls.from_pretrained(name, attn_implementation="eager", **kwargs)


class Head(nn.Module):
    """One head per task type. Sentence-level heads read the first token (<s>/[CLS]), as RoBERTa's classifier, or
    the mean over real tokens for encoders without one (`pooling`)."""

    def __init__(self, task_type: str, hidden: int, num_labels: int = 0, dropout: float = 0.1,
                 word_embeddings: nn.Embedding | None = None, pooling: str = "first"):
        super().__init__()
        self.task_type = task_type
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        if task_type in ("classification", "pair_classification", "regression"):
            self.dense = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, 1 if task_type == "regression" else num_labels)
        elif task_type == "multiple_choice":
            self.out = nn.Linear(hidden, 1)
        elif task_type == "span_qa":
            self.out = nn.Linear(hidden, 2)
        elif task_type == "tagging":
            self.out = nn.Linear(hidden, num_labels)
        elif task_type == "mlm":
            width = word_embeddings.embedding_dim   # = hidden, except RemBERT (decoupled input embeddings)
            self.dense = nn.Linear(hidden, width)
            self.norm = nn.LayerNorm(width)
            self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))
            self._emb = [word_embeddings]   # tied to the encoder's input embeddings; a list keeps it out of state
        else:
            raise ValueError(f"no head for task type {task_type!r}")

    def summary(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One vector per sequence: the first token, or the mean over the attention mask."""
        if self.pooling == "first":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, h: torch.Tensor, batch: dict, n_choices: int = 0, mask: torch.Tensor | None = None) -> dict:
        t = self.task_type
        labels = batch.get("labels")
        if mask is None:
            mask = batch["attention_mask"].flatten(0, 1) if n_choices else batch["attention_mask"]
        if t in ("classification", "pair_classification", "regression"):
            x = torch.tanh(self.dense(self.dropout(self.summary(h, mask))))
            logits = self.out(self.dropout(x))
            if t == "regression":
                logits = logits.squeeze(-1)
                loss = nn.functional.mse_loss(logits.float(), labels.float()) if labels is not None else None
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        elif t == "multiple_choice":
            logits = self.out(self.dropout(self.summary(h, mask))).view(-1, n_choices)
            loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        elif t == "span_qa":
            start, end = self.out(self.dropout(h)).float().unbind(-1)
            # padding is no answer position: left in, its logits would join the softmax, so the loss would depend on
            # how far a batch is padded (fixed vs dynamic padding, or a packed batch, which has no padding outputs)
            pad = mask[..., :start.shape[-1]] == 0
            start, end = start.masked_fill(pad, torch.finfo(start.dtype).min), end.masked_fill(pad, torch.finfo(
                end.dtype).min)
            logits = torch.stack([start, end], dim=1)   # (batch, 2, length)
            loss = None
            if "start_positions" in batch:
                loss = (nn.functional.cross_entropy(start, batch["start_positions"])
                        + nn.functional.cross_entropy(end, batch["end_positions"])) / 2
        elif t == "tagging":
            logits = self.out(self.dropout(h))
            loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE) \
                if labels is not None else None
        else:  # mlm
            x = self.norm(nn.functional.gelu(self.dense(h)))
            logits = x @ self._emb[0].weight.t() + self.bias
            loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        return {"loss": loss, "logits": logits}


class MultiTaskModel(nn.Module):
    """One shared encoder, a head per task (a single-task model is the one-head case)."""

    def __init__(self, encoder, heads: dict[str, tuple[str, int]], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = _hidden(encoder.config)
        emb = encoder.get_input_embeddings()
        pool = pooling(encoder.config)
        self.token_types = uses_token_types(encoder.config)
        self.heads = nn.ModuleDict({name: Head(tt, hidden, n, dropout, emb, pool) for name, (tt, n) in heads.items()})

    def forward(self, task: str, batch: dict) -> dict:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        types = batch.get("token_type_ids") if self.token_types else None
        n_choices = ids.shape[1] if ids.dim() == 3 else 0
        if n_choices:
            ids, mask = ids.flatten(0, 1), mask.flatten(0, 1)
            types = types.flatten(0, 1) if types is not None else None
        if "pack_index" in batch:
            h = self._packed_hidden(batch, mask)
        else:
            extra = {"token_type_ids": types} if types is not None else {}
            h = self.encoder(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
        return self.heads[task](h, batch, n_choices, mask)

    def _packed_hidden(self, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        """Encoder outputs of a packed batch (features.pack), put back in the padded layout (zeros on padding)."""
        cfg = self.encoder.config
        why = packing_refusal(cfg)
        if why:
            raise ValueError(why)
        seg = batch["packed_segments"]
        same = seg[:, :, None] == seg[:, None, :]          # (rows, width, width): attend within the sequence
        ids = batch["packed_input_ids"]
        kw = {}
        if self.token_types and "packed_token_type_ids" in batch:
            kw["token_type_ids"] = batch["packed_token_type_ids"]
        scheme = PACKING_SCHEMES[cfg.model_type]
        if cfg.model_type == "deberta-v2":
            # DebertaV2Model.forward would multiply the embeddings by a 2-D mask made from the (rows, width, width)
            # one; its own two steps are called here with the right mask for each
            if getattr(cfg, "position_biased_input", False):
                kw["position_ids"] = batch["packed_position_ids"]
            emb = self.encoder.embeddings(input_ids=ids, mask=(seg >= 0).long(), **kw)
            h = self.encoder.encoder(emb, same.long(), output_hidden_states=True, return_dict=True).last_hidden_state
        else:
            if scheme != "relative":
                kw["position_ids"] = batch["packed_position_ids"]
            mask4 = same[:, None]
            if (getattr(cfg, "_attn_implementation", None) or "eager") != "sdpa" or cfg.model_type in T5_TYPES:
                # eager attention (and T5's bias) adds the mask: 0 where attended, the dtype's minimum elsewhere
                dtype = next(self.encoder.parameters()).dtype
                mask4 = torch.zeros(mask4.shape, dtype=dtype, device=ids.device).masked_fill(
                    ~mask4, torch.finfo(dtype).min)
            h = self.encoder(input_ids=ids, attention_mask=mask4, **kw).last_hidden_state
        out = h.flatten(0, 1)[batch["pack_index"].reshape(mask.shape)]
        return out * mask.unsqueeze(-1).to(out.dtype)


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)         # encoder keys taken from the checkpoint
    initialized: list[str] = field(default_factory=list)    # keys freshly initialised (the heads, + any missing)
    unused: list[str] = field(default_factory=list)         # checkpoint keys not used (e.g. an MLM head)
    mlm_head: dict = field(default_factory=dict)            # MLM head key -> the checkpoint key it was loaded from

    def __str__(self) -> str:
        mlm = (f"; MLM head from the checkpoint's pretrained {', '.join(sorted(set(self.mlm_head.values())))}"
               if self.mlm_head else "")
        return (f"encoder from {self.source}: {len(self.loaded)} tensors loaded{mlm}; freshly initialised "
                f"({len(self.initialized)}): {', '.join(self.initialized) or '-'}; unused in checkpoint "
                f"({len(self.unused)}): {', '.join(self.unused[:8]) or '-'}{' ...' if len(self.unused) > 8 else ''}")


def build(encoder_from: str, heads: dict[str, tuple[str, int]], seed: int = 0, dropout: float = 0.1):
    """A fresh MultiTaskModel on the encoder at `encoder_from` (hub id or folder). Returns (model, LoadReport)."""
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)   # head initialisation is part of the run's seed
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()   # we print our own, encoder-level report
    hf_logging.disable_progress_bar()
    try:
        encoder, info = _with_info(encoder_from)
    finally:
        hf_logging.set_verbosity(verbosity)
    model = MultiTaskModel(encoder, heads, dropout)
    enc_keys = set(encoder.state_dict())
    missing = set(info.get("missing_keys", ()))
    mlm = _load_mlm_heads(model, encoder_from)
    report = LoadReport(source=str(encoder_from), loaded=sorted(enc_keys - missing),
                        initialized=sorted([f"encoder.{k}" for k in missing] +
                                           [f"heads.{k}" for k in model.heads.state_dict() if f"heads.{k}" not in mlm]),
                        unused=sorted(set(info.get("unexpected_keys", ())) - set(mlm.values())), mlm_head=mlm)
    return model, report


# The pretrained MLM head of a checkpoint, per family: our Head's (dense, norm, bias) = RoBERTa/XLM-R's lm_head and
# BERT's cls.predictions transform (dense -> gelu -> LayerNorm; the decoder is tied to the input embeddings).
MLM_HEAD_KEYS = {
    "lm_head.": {"dense.weight": "dense.weight", "dense.bias": "dense.bias", "norm.weight": "layer_norm.weight",
                 "norm.bias": "layer_norm.bias", "bias": "bias"},
    "cls.predictions.": {"dense.weight": "transform.dense.weight", "dense.bias": "transform.dense.bias",
                         "norm.weight": "transform.LayerNorm.weight", "norm.bias": "transform.LayerNorm.bias",
                         "bias": "bias"},
}


def _load_mlm_heads(model: MultiTaskModel, name: str) -> dict[str, str]:
    """Copy the checkpoint's pretrained MLM head into every MLM head of `model` (MLM co-training continues the
    pretraining objective with its own head, as jiant's RobertaMLMHead loaded from the checkpoint). Returns
    {our key: checkpoint key}; {} when there is no MLM head or the checkpoint has none (encoder-only saves)."""
    mlm_heads = [n for n, h in model.heads.items() if h.task_type == "mlm"]
    if not mlm_heads:
        return {}
    files = _checkpoint_files(name)
    if not files:
        return {}
    from safetensors import safe_open
    found: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            keys = set(fh.keys())
            for prefix, mapping in MLM_HEAD_KEYS.items():
                for ours, theirs in mapping.items():
                    if prefix + theirs in keys:
                        found.setdefault(ours, (prefix + theirs, fh.get_tensor(prefix + theirs)))
    if set(found) != set(MLM_HEAD_KEYS["lm_head."]):
        return {}   # no complete head: it stays freshly initialised (and the report says so)
    out = {}
    with torch.no_grad():
        for n in mlm_heads:
            state = model.heads[n].state_dict()
            for ours, (theirs, tensor) in found.items():
                if state[ours].shape != tensor.shape:
                    raise ValueError(f"{name}: checkpoint tensor {theirs} has shape {tuple(tensor.shape)}, the MLM "
                                     f"head expects {tuple(state[ours].shape)}")
                state[ours].copy_(tensor)
                out[f"heads.{n}.{ours}"] = theirs
    return out


def _checkpoint_files(name: str) -> list[Path]:
    """The safetensors files of a checkpoint folder, or of a hub checkpoint already in the local cache."""
    p = Path(name)
    if p.is_dir():
        return sorted(p.glob("*.safetensors"))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return []
    for fname in ("model.safetensors",):
        hit = try_to_load_from_cache(name, fname)
        if isinstance(hit, str):
            return [Path(hit)]
    index = try_to_load_from_cache(name, "model.safetensors.index.json")
    if isinstance(index, str):
        import json
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        return [Path(index).parent / s for s in shards if (Path(index).parent / s).exists()]
    return []


def _with_info(name: str):
    enc = load_pretrained_encoder(name)
    # Re-derive the loading info against the checkpoint's own keys (works for every encoder class).
    ckpt_keys = _checkpoint_keys(name)
    if ckpt_keys is None:
        return enc, {}
    own = set(enc.state_dict())
    prefixes = ("", "roberta.", "bert.", "encoder.", "model.", f"{enc.base_model_prefix}.")
    found = {k for k in own if any(p + k in ckpt_keys for p in prefixes)}
    tied = {k for k in own if k.endswith("embed_tokens.weight")}   # T5: tied to shared.weight
    missing = sorted(own - found - tied)
    used = {p + k for k in own for p in prefixes}
    unexpected = sorted(k for k in ckpt_keys if k not in used)
    return enc, {"missing_keys": missing, "unexpected_keys": unexpected}


def _checkpoint_keys(name: str) -> set[str] | None:
    p = Path(name)
    if not p.is_dir():
        return None
    keys: set[str] = set()
    from safetensors import safe_open
    for f in sorted(p.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            keys |= set(fh.keys())
    return keys or None


def save_encoder(model: MultiTaskModel, tokenizer, out: str | Path) -> Path:
    """Encoder + tokenizer only (heads are never carried over to the next phase)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def n_parameters(model: nn.Module, non_embedding: bool = False) -> int:
    n = sum(p.numel() for p in model.parameters())
    if non_embedding:
        n -= sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    return n
