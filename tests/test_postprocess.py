"""QA n-best decoding and tag decoding on hand-made cases with known answers."""
import numpy as np
from datasets import Dataset

from xfer_utils import features, postprocess


def test_best_span_respects_order_length_and_context():
    ctx = "Paris is the capital of France"
    offsets = [None, None, (0, 5), (6, 8), (9, 12), (13, 20), (21, 23), (24, 30), None]
    start = np.array([9, 0, 5, 0, 0, 1, 0, 2, 0], float)   # <s> (index 0) is best but not in the context
    end = np.array([9, 0, 0, 0, 0, 6, 0, 7, 0], float)
    assert postprocess.decode_qa_example(ctx, [(start, end, offsets)]) == "Paris is the capital of France"
    assert postprocess.decode_qa_example(ctx, [(start, end, offsets)], max_answer_length=4) == "Paris is the capital"
    # the top pair (start 'France', end 'Paris': 5 + 9) is invalid, end before start; the best valid pair is
    # start 'Paris' (0) + end 'Paris' (9) = 9 > 'France' + 'France' (5)
    s2, e2 = np.zeros(9), np.zeros(9)
    s2[7], e2[2] = 5, 9
    assert postprocess.decode_qa_example(ctx, [(s2, e2, offsets)]) == "Paris"


def test_best_span_across_windows():
    ctx = "aa bb cc dd"
    w1 = ([0, 0, 1, 0], [0, 0, 1, 0], [None, None, (0, 2), (3, 5)])
    w2 = ([0, 0, 0, 7], [0, 0, 0, 7], [None, None, (3, 5), (6, 8)])
    assert postprocess.decode_qa_example(ctx, [w1, w2]) == "cc"


def test_lone_metaspace_piece_is_not_an_end(tokenizer):
    """XLM-R-style tokenizers emit a lone '▁' whose offsets equal the next piece's first character; ending a span
    there would append that character. The decoder must return the clean answer."""
    ctx = "alpha Zq"
    enc = tokenizer("quiz", ctx, return_offsets_mapping=True)
    toks = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    seq = enc.sequence_ids()
    offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"], seq)]
    lone = [k for k, t in enumerate(toks) if t == "▁" and seq[k] == 1]
    assert lone, f"expected a lone metaspace piece in {toks}"
    k = lone[0]
    start, end = np.zeros(len(toks)), np.zeros(len(toks))
    start[seq.index(1)] = 5          # 'alpha' starts the answer
    end[k] = 9                       # the model's top end is the lone '▁' before 'Zq'
    end[k - 1] = 8
    assert postprocess.decode_qa_example(ctx, [(start, end, offsets)]) == "alpha"


def test_decode_qa_end_to_end_with_feature_windows(tokenizer):
    ctx = "x1 x2 quiz bravo x3 x4"
    ds = Dataset.from_dict({"id": ["a"], "context": [ctx], "question": ["quiz ?"],
                            "answers": [{"text": ["bravo"], "answer_start": [ctx.index("bravo")]}]})
    train = features.span_qa(ds, tokenizer, 64, 16, train=True)[0]
    feats = features.span_qa(ds, tokenizer, 64, 16, train=False)
    n = len(feats[0]["input_ids"])
    s, e = np.zeros(n), np.zeros(n)
    s[train["start_positions"]], e[train["end_positions"]] = 10, 10   # logits that point at the gold span
    assert postprocess.decode_qa(ds, feats, [s], [e]) == {"a": "bravo"}


def test_squad_v2_null_answer():
    offsets = [None, (0, 1), (2, 3)]
    assert postprocess.decode_qa_example("a b", [([9, 1, 1], [9, 1, 1], offsets)], allow_null=True) == ""
    assert postprocess.decode_qa_example("a b", [([0, 5, 1], [0, 1, 5], offsets)], allow_null=True) == "a b"


def test_word_tags_from_first_subwords():
    feats = [{"word_ids": [-1, 0, 0, 1, 2, -1], "n_words": 4}]
    preds = [np.array([0, 2, 1, 3, 0, 0])]
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    assert postprocess.word_tags(feats, preds, names) == [["I-PER", "B-LOC", "O", "O"]]   # word 3 truncated: 'O'
