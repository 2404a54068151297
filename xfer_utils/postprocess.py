"""Turn model outputs into predictions: QA n-best span decoding over stride windows; tag ids -> word-level tags.

>>> offsets = [None, None, (0, 5), (6, 7), (6, 11), None]   # "Paris world": a lone '▁' piece shares 'w''s offset
>>> start = [0, 0, 9, 0, 0, 0]; end = [0, 0, 8, 9, 1, 0]
>>> decode_qa_example("Paris world", [(start, end, offsets)], max_answer_length=30)
'Paris'
"""
from __future__ import annotations

import numpy as np


def _valid_ends(offsets) -> np.ndarray:
    """A lone metaspace piece ('▁' before a word whose first piece is separate) gets the offsets of the next
    character; ending a span there would pull in the next word's first character, so it is no valid end."""
    ok = np.array([o is not None for o in offsets])
    for k in range(len(offsets) - 1):
        if offsets[k] is not None and offsets[k + 1] is not None and offsets[k][0] == offsets[k + 1][0] \
                and offsets[k][1] <= offsets[k + 1][1]:
            ok[k] = False
    return ok


def decode_qa_example(context: str, windows, n_best: int = 20, max_answer_length: int = 30,
                      allow_null: bool = False, null_threshold: float = 0.0) -> str:
    """Best span over all windows of one example: top `n_best` starts x ends, end >= start, at most
    `max_answer_length` tokens, score = start + end logit. With `allow_null` (SQuAD v2) the empty answer ("no
    answer") wins when the null score (<s> start + end logit, the lowest over the windows) minus the best span's
    score exceeds `null_threshold`, as the reference v2 post-processing does (transformers' run_qa
    `null_score_diff_threshold`, default 0.0)."""
    best_score, best = -np.inf, ""
    null_score = np.inf
    for start_logits, end_logits, offsets in windows:
        start_logits, end_logits = np.asarray(start_logits, dtype=np.float64), np.asarray(end_logits, np.float64)
        n = min(len(offsets), len(start_logits))
        null_score = min(null_score, start_logits[0] + end_logits[0])
        valid_start = np.array([o is not None for o in offsets[:n]])
        valid_end = _valid_ends(offsets[:n])
        starts = [i for i in np.argsort(start_logits[:n])[::-1] if valid_start[i]][:n_best]
        ends = [i for i in np.argsort(end_logits[:n])[::-1] if valid_end[i]][:n_best]
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = start_logits[s] + end_logits[e]
                if score > best_score:
                    best_score, best = score, context[offsets[s][0]:offsets[e][1]]
    if allow_null and null_score - best_score > null_threshold:
        return ""
    return best.strip()


def decode_qa(ds, feats, start_logits, end_logits, **kw) -> dict[str, str]:
    """{example id: answer text} for every example of `ds`, from per-window logits."""
    by_ex: dict[int, list] = {}
    for f, s, e in zip(feats, start_logits, end_logits):
        by_ex.setdefault(f["example_index"], []).append((s, e, f["offsets"]))
    ids, contexts = list(ds["id"]), list(ds["context"])
    return {ids[i]: decode_qa_example(contexts[i], by_ex.get(i, []), **kw) for i in range(len(ids))}


def word_tags(feats, token_preds, label_names, fallback: str | None = None) -> list[list[str]]:
    """Word-level tags per example from first-sub-word predictions; the pieces of a split sentence (features with
    the same `example_index`) are put back together. A word with no sub-word in any feature (a single word
    longer than max_length, or a token the tokenizer drops) gets `fallback` ('O' for NER, else the last label,
    'X' for UD), so the prediction file keeps one line per gold word, as the scorer needs."""
    if fallback is None:
        fallback = "O" if "O" in label_names else label_names[-1]
    out: dict[int, list[str]] = {}
    for k, (f, preds) in enumerate(zip(feats, token_preds)):
        words = out.setdefault(f.get("example_index", k), [fallback] * f["n_words"])
        seen = set()
        for j, w in enumerate(f["word_ids"]):
            if w >= 0 and w not in seen and j < len(preds):
                seen.add(w)
                words[w] = label_names[int(preds[j])]
    return [out[i] for i in sorted(out)]
