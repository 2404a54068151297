"""Tiny models of every architecture family of the model ladder, for the offline world (issue 14; issue 16 item 5).

The ladder (``resources/models.yaml``, ``ladder.py``) says which family each real model belongs to; this module says
which tiny model stands for each family, and builds it on first use under ``<tiny dir>/models/<name>`` (the tiny
XLM-R world is built first: its fixture corpus and tokenizer are the raw material). Each tiny model is the real
model class with tiny sizes (d 32, 2 layers, 2 heads, ff 64, as ``tiny-xlmr-s``), saved with ``save_pretrained``
in the layout of its hub checkpoint (with its pre-training head), beside a tokenizer of the family's own kind,
trained on the fixture corpus:

  tiny-bert        BertForPreTraining, 2 token types     WordPiece (cased, as mBERT), BertTokenizer: token_type_ids
  tiny-distilbert  DistilBertForMaskedLM                 the same WordPiece vocabulary, DistilBertTokenizer (no types)
  tiny-deberta     DebertaV2ForMaskedLM (mDeBERTa-v3     sentencepiece Unigram, DebertaV2Tokenizer ([CLS]/[SEP];
                   shape: relative attention, no token   types in its output that the model ignores)
                   types)
  tiny-rembert     RemBertForMaskedLM (decoupled input   sentencepiece Unigram, RemBertTokenizer; 2 token types
                   embedding 16 < hidden 32)
  tiny-mt5         MT5ForConditionalGeneration (the hub  sentencepiece Unigram, T5Tokenizer (</s> only, no CLS, no
                   checkpoint is encoder-decoder; the    mask token, 100 sentinels); models.py loads the encoder only
                   project loads its encoder alone)
  tiny-xlmr-xl     XLMRobertaXLForMaskedLM (XLM-R XL/XXL  the tiny XLM-R tokenizer (the same kind as XL's)
                   are their own pre-LayerNorm class)

The sentencepiece families reuse the Unigram pieces that ``tiny.train_tokenizer`` learned (sentencepiece, on the same
fixture corpus) for the tiny XLM-R, laid out with each family's special tokens; WordPiece is trained here with the
``tokenizers`` trainer (well under a second). Building one family takes a few seconds; building the XLM-R world does
not build any of them.

XLM-R sizes: every ``xlm-roberta`` model maps to ``tiny-xlmr-s`` (one tiny model per family: a rehearsal checks code
paths, not sizes, and stays fastest on the smallest model); ``tiny-xlmr-m`` and every tiny name map to themselves.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

FAMILY_MODELS = {        # ladder family (resources/models.yaml `family`) -> the tiny model standing for it
    "xlm-roberta": "tiny-xlmr-s",
    "xlm-roberta-xl": "tiny-xlmr-xl",
    "bert": "tiny-bert",
    "distilbert": "tiny-distilbert",
    "deberta-v2": "tiny-deberta",
    "rembert": "tiny-rembert",
    "mt5-encoder": "tiny-mt5",
}
SHAPE = dict(hidden=32, layers=2, heads=2, ffn=64)      # tiny.MODEL_SIZES["tiny-xlmr-s"]
WORDPIECE_VOCAB = 4000
SEED = 0


def _builders() -> dict:
    return {"tiny-bert": _bert, "tiny-distilbert": _distilbert, "tiny-deberta": _deberta, "tiny-rembert": _rembert,
            "tiny-mt5": _mt5, "tiny-xlmr-xl": _xlmr_xl}


NAMES = ("tiny-bert", "tiny-distilbert", "tiny-deberta", "tiny-rembert", "tiny-mt5", "tiny-xlmr-xl")


def tiny_for(model: str) -> str:
    """The tiny model of the same architecture family as `model` (ladder name, alias, hub id, local path whose last
    part is one of those, or a tiny name).

    >>> tiny_for("FacebookAI/xlm-roberta-large"), tiny_for("google-bert/bert-base-multilingual-cased")
    ('tiny-xlmr-s', 'tiny-bert')
    >>> tiny_for("google/mt5-xl"), tiny_for("microsoft/mdeberta-v3-base"), tiny_for("tiny-xlmr-m")
    ('tiny-mt5', 'tiny-deberta', 'tiny-xlmr-m')
    """
    from .. import ladder
    from . import tiny
    key = str(model).strip().rstrip("/\\")
    if key in NAMES or key in tiny.MODEL_SIZES:
        return key
    m = ladder.lookup(key)
    if m is None:
        raise ValueError(f"no tiny model for {model!r}: it is not a model of the ladder; valid models: "
                         f"{', '.join(ladder.names() + list(NAMES))} (or their hub ids and aliases, `xfer models`)")
    if m.name in tiny.MODEL_SIZES:
        return m.name
    if m.family not in FAMILY_MODELS:
        raise ValueError(f"the ladder's family {m.family!r} of {m.name} has no tiny model; families with one: "
                         f"{', '.join(FAMILY_MODELS)}")
    return FAMILY_MODELS[m.family]


def ensure(name: str, root: str | Path | None = None) -> Path:
    """The folder of tiny family model `name`, built on first use (the tiny XLM-R world too, if missing). Safe when
    several processes ask at once: each builds in a temporary folder and the first to finish renames it in place."""
    from .. import files
    from . import tiny
    if name not in NAMES:
        raise ValueError(f"unknown tiny family model {name!r}; valid: {', '.join(NAMES)}")
    root = Path(root) if root is not None else files.tiny_dir()
    out = root / "models" / name
    if (out / "config.json").exists():
        return out
    world = tiny.ensure(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        _builders()[name](tmp, world)
        try:
            os.rename(tmp, out)
        except OSError:          # another process finished first: its copy is the same model (same seed)
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------- tokenizers
def _xlmr_pieces(world: dict) -> list[tuple[str, float]]:
    """The sentencepiece Unigram pieces (with scores) of the tiny XLM-R tokenizer, without its special tokens."""
    spec = json.loads((Path(world["tiny-xlmr-s"]) / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    if spec.get("type") != "Unigram":
        raise ValueError(f"the tiny XLM-R tokenizer in {world['tiny-xlmr-s']} is not a Unigram model")
    special = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}
    return [(p, float(s)) for p, s in spec["vocab"] if p not in special]


def _wordpiece_vocab(world: dict) -> dict[str, int]:
    """A cased WordPiece vocabulary (mBERT's kind: BERT normaliser without lower-casing, CJK characters split)
    trained on the fixture corpus; cached beside the models so tiny-bert and tiny-distilbert share it."""
    from . import tiny
    cache = Path(world["data"]).parent / "models" / f".wordpiece-{WORDPIECE_VOCAB}.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                                lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=WORDPIECE_VOCAB, min_frequency=2, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(tiny._corpus(Path(world["data"])), trainer)
    vocab = tok.get_vocab()
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    os.replace(tmp, cache)
    return vocab


def _save(model, tokenizer, out: Path) -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _seeded():
    import torch
    torch.manual_seed(SEED)


# ---------------------------------------------------------------- one builder per family
def _bert(out: Path, world: dict) -> None:
    from transformers import BertConfig, BertForPreTraining, BertTokenizer
    tok = BertTokenizer(vocab=_wordpiece_vocab(world), do_lower_case=False, strip_accents=False)
    _seeded()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=SHAPE["hidden"], num_hidden_layers=SHAPE["layers"],
                     num_attention_heads=SHAPE["heads"], intermediate_size=SHAPE["ffn"], max_position_embeddings=512,
                     type_vocab_size=2, pad_token_id=tok.pad_token_id)
    _save(BertForPreTraining(cfg), tok, out)     # mBERT's checkpoint: MLM + next-sentence heads, pooler


def _distilbert(out: Path, world: dict) -> None:
    from transformers import DistilBertConfig, DistilBertForMaskedLM, DistilBertTokenizer
    tok = DistilBertTokenizer(vocab=_wordpiece_vocab(world), do_lower_case=False, strip_accents=False)
    _seeded()
    cfg = DistilBertConfig(vocab_size=len(tok), dim=SHAPE["hidden"], n_layers=SHAPE["layers"], n_heads=SHAPE["heads"],
                           hidden_dim=SHAPE["ffn"], max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    _save(DistilBertForMaskedLM(cfg), tok, out)


def _deberta(out: Path, world: dict) -> None:
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2Tokenizer
    vocab = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0)] + _xlmr_pieces(world) + [("[MASK]", 0.0)]
    tok = DebertaV2Tokenizer(vocab=vocab)    # mDeBERTa's id layout: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, [MASK] last
    _seeded()
    # microsoft/mdeberta-v3-base's attention settings at tiny sizes: disentangled relative attention, no absolute
    # positions in the input, no token type embeddings (type_vocab_size 0)
    cfg = DebertaV2Config(vocab_size=len(tok), hidden_size=SHAPE["hidden"], num_hidden_layers=SHAPE["layers"],
                          num_attention_heads=SHAPE["heads"], intermediate_size=SHAPE["ffn"],
                          max_position_embeddings=512, type_vocab_size=0, relative_attention=True,
                          position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
                          pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_biased_input=False,
                          pad_token_id=tok.pad_token_id)
    _save(DebertaV2ForMaskedLM(cfg), tok, out)


def _rembert(out: Path, world: dict) -> None:
    from transformers import RemBertConfig, RemBertForMaskedLM, RemBertTokenizer
    # RemBertTokenizer's Unigram takes id 2 as <unk>: keep it there
    vocab = [("<pad>", 0.0), ("[CLS]", 0.0), ("<unk>", 0.0), ("[SEP]", 0.0)] + _xlmr_pieces(world) + [("[MASK]", 0.0)]
    tok = RemBertTokenizer(vocab=vocab)
    _seeded()
    # RemBERT decouples the input embedding width (256 for hidden 1152) from the hidden size: kept at half here
    cfg = RemBertConfig(vocab_size=len(tok), hidden_size=SHAPE["hidden"], num_hidden_layers=SHAPE["layers"],
                        num_attention_heads=SHAPE["heads"], intermediate_size=SHAPE["ffn"],
                        input_embedding_size=SHAPE["hidden"] // 2, output_embedding_size=SHAPE["hidden"],
                        max_position_embeddings=512, type_vocab_size=2, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    _save(RemBertForMaskedLM(cfg), tok, out)


def _mt5(out: Path, world: dict) -> None:
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + _xlmr_pieces(world)
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]        # T5's sentinels, last and reversed
    tok = T5Tokenizer(vocab=vocab, extra_ids=100)
    _seeded()
    cfg = MT5Config(vocab_size=len(tok), d_model=SHAPE["hidden"], d_kv=SHAPE["hidden"] // SHAPE["heads"],
                    d_ff=SHAPE["ffn"], num_layers=SHAPE["layers"], num_decoder_layers=SHAPE["layers"],
                    num_heads=SHAPE["heads"], feed_forward_proj="gated-gelu",
                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=0)
    _save(MT5ForConditionalGeneration(cfg), tok, out)    # the hub checkpoint's layout: encoder + decoder + lm_head


def _xlmr_xl(out: Path, world: dict) -> None:
    from transformers import XLMRobertaTokenizer, XLMRobertaXLConfig, XLMRobertaXLForMaskedLM
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + _xlmr_pieces(world) + [("<mask>", 0.0)]
    tok = XLMRobertaTokenizer(vocab=vocab)        # tiny.train_tokenizer's layout (XLM-R's)
    _seeded()
    cfg = XLMRobertaXLConfig(vocab_size=len(tok), hidden_size=SHAPE["hidden"], num_hidden_layers=SHAPE["layers"],
                             num_attention_heads=SHAPE["heads"], intermediate_size=SHAPE["ffn"],
                             max_position_embeddings=514, type_vocab_size=1, pad_token_id=tok.pad_token_id,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    _save(XLMRobertaXLForMaskedLM(cfg), tok, out)
