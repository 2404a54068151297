"""Tokenization per task type, checked on hand-made cases with the tiny XLM-R tokenizer."""
import numpy as np
import torch
from datasets import Dataset

from xfer_utils import features


def test_tagging_labels_first_subword_only(tokenizer):
    ds = Dataset.from_dict({"tokens": [["quizzical", "alpha", "zzzzqqqq", "."]], "tags": [[3, 1, 7, 12]]})
    f = features.tagging(ds, tokenizer, max_length=64)[0]
    word_ids = f["word_ids"]
    labelled = [(w, lab) for w, lab in zip(word_ids, f["labels"]) if lab != features.IGNORE]
    assert labelled == [(0, 3), (1, 1), (2, 7), (3, 12)]          # exactly one label per word, on its first piece
    assert f["labels"][0] == features.IGNORE and f["labels"][-1] == features.IGNORE   # <s>, </s>
    for k in range(1, len(word_ids)):                               # continuation pieces are ignored
        if word_ids[k] == word_ids[k - 1] and word_ids[k] >= 0:
            assert f["labels"][k] == features.IGNORE
    assert sum(1 for w in set(word_ids) if w >= 0) == 4


def test_long_sentences_are_split_between_words_not_truncated(tokenizer):
    """XTREME's preprocessing (utils_preprocess.py) splits UD-POS / PAN-X sentences longer than max_len sub-words
    into pieces at word boundaries; every word keeps its label, and word_tags puts the pieces back together."""
    from xfer_utils import postprocess
    words = [f"w{k}" for k in range(50)] + ["zzzzqqqqxxxx"]
    ds = Dataset.from_dict({"tokens": [["a", "b"], words], "tags": [[0, 1], [k % 7 for k in range(51)]]})
    feats = features.tagging(ds, tokenizer, max_length=20)
    assert [f["example_index"] for f in feats][:2] == [0, 1] and len(feats) > 5
    assert all(f["length"] <= 20 for f in feats) and all(f["n_words"] == 51 for f in feats[1:])
    per_word = [len(tokenizer.tokenize(w)) for w in words]
    assert max(per_word) <= 18                                     # so no single word needs truncation here
    pieces = [sorted({w for w in f["word_ids"] if w >= 0}) for f in feats[1:]]
    assert [w for p in pieces for w in p] == list(range(51))       # every word once, in order, pieces contiguous
    for f, p in zip(feats[1:-1], feats[2:]):                       # greedy: the next word would not have fitted
        nxt = min(w for w in p["word_ids"] if w >= 0)
        assert len(f["input_ids"]) - 2 + per_word[nxt] > 18
    labels = [lab for f in feats[1:] for lab in f["labels"] if lab != features.IGNORE]
    assert labels == [k % 7 for k in range(51)]
    names = [f"T{k}" for k in range(7)]                             # predict the gold ids: the sentence comes back
    preds = [np.array([max(lab, 0) for lab in f["labels"]]) for f in feats]
    assert postprocess.word_tags(feats, preds, names) == [["T0", "T1"], [f"T{k % 7}" for k in range(51)]]


def test_a_word_longer_than_max_length_is_truncated_alone(tokenizer):
    ds = Dataset.from_dict({"tokens": [["a", "q" * 40, "b"]], "tags": [[1, 2, 3]]})
    feats = features.tagging(ds, tokenizer, max_length=6)
    assert [sorted({w for w in f["word_ids"] if w >= 0}) for f in feats] == [[0], [1], [2]]
    assert len(feats[1]["input_ids"]) == 6 and [lab for f in feats for lab in f["labels"] if lab >= 0] == [1, 2, 3]


def test_span_qa_windows_contain_the_answer(tokenizer):
    context = " ".join(f"w{i}" for i in range(300)) + " quiz answerword tail"
    start = context.index("answerword")
    ds = Dataset.from_dict({"id": ["q1"], "context": [context], "question": ["quiz ?"],
                            "answers": [{"text": ["answerword"], "answer_start": [start]}]})
    feats = features.span_qa(ds, tokenizer, max_length=64, doc_stride=16, train=True)
    assert len(feats) > 1 and all(len(f["input_ids"]) <= 64 for f in feats)
    hits = [f for f in feats if f["start_positions"] > 0]
    assert hits, "the answer must be inside at least one window"
    enc = tokenizer.convert_ids_to_tokens
    for f in hits:
        span = f["input_ids"][f["start_positions"]:f["end_positions"] + 1]
        assert tokenizer.decode(span).strip() == "answerword", enc(span)
    assert all(f["start_positions"] == 0 == f["end_positions"] for f in feats if f not in hits)   # <s> = no answer
    evals = features.span_qa(ds, tokenizer, max_length=64, doc_stride=16, train=False)
    for f in evals:   # offsets only on context tokens; question and specials are None
        assert f["offsets"][0] is None and any(o is not None for o in f["offsets"])


def test_squad_v2_unanswerable_points_at_cls(tokenizer):
    ds = Dataset.from_dict({"id": ["q"], "context": ["a b c"], "question": ["quiz"],
                            "answers": [{"text": [], "answer_start": []}]})
    f = features.span_qa(ds, tokenizer, 64, 16, train=True)[0]
    assert f["start_positions"] == f["end_positions"] == 0


def test_multiple_choice_pairs_each_choice(tokenizer):
    ds = Dataset.from_dict({"context": ["the premise"], "question": ["cause"], "choices": [["one", "two"]],
                            "label": [1]})
    f = features.multiple_choice(ds, tokenizer, 64)[0]
    assert len(f["input_ids"]) == 2 and f["labels"] == 1
    assert "What was the cause?" in tokenizer.decode(f["input_ids"][0])   # COPA's question as a question
    b = features.collate([f, f], tokenizer.pad_token_id)
    assert b["input_ids"].shape[:2] == (2, 2) and b["labels"].tolist() == [1, 1]


def test_collate_pads_dynamically_or_to_max(tokenizer):
    feats = [{"input_ids": [0, 5, 2], "labels": 1, "length": 3}, {"input_ids": [0, 5, 6, 7, 8, 2], "labels": 0,
                                                                    "length": 6}]
    b = features.collate(feats, tokenizer.pad_token_id)
    assert b["input_ids"].shape == (2, 8)                        # longest (6) rounded up to a multiple of 8
    assert b["attention_mask"].sum().item() == 9
    assert (b["input_ids"][0, 3:] == tokenizer.pad_token_id).all()
    fixed = features.collate(feats, tokenizer.pad_token_id, pad_to=256)
    assert fixed["input_ids"].shape == (2, 256)                  # the reference implementation's fixed padding


def test_mlm_masking_is_bert_style(tokenizer):
    ids = torch.randint(5, len(tokenizer) - 1, (64, 64))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    masked, labels = features.mask_tokens(ids, tokenizer, torch.Generator().manual_seed(0))
    picked = labels != features.IGNORE
    assert abs(picked.float().mean().item() - 0.15) < 0.02
    assert not picked[:, 0].any() and not picked[:, -1].any()   # special tokens are never masked
    frac_mask = (masked[picked] == tokenizer.mask_token_id).float().mean().item()
    assert 0.75 < frac_mask < 0.85 and torch.equal(labels[picked], ids[picked])
