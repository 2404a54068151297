"""Tokenization per task type. Features are unpadded lists (padding happens per batch in `collate`), each with a
`length` so batches can be grouped by length.

Tagging: the label goes on the first sub-word of each word; later sub-words and special tokens get -100 (XTREME,
jiant). Span QA: windows of `max_length` that advance `doc_stride` context tokens (the window *step*, as XTREME's
and jiant's SQuAD features) and offset mappings (context tokens only), the answer's start/end token or the <s> index
when the answer is not inside the window (SQuAD v2 no-answer too).
"""
from __future__ import annotations

import torch

IGNORE = -100
COPA_QUESTION = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _types(enc, i: int) -> dict:
    """{'token_type_ids': ...} of sequence `i` when the tokenizer gave segment ids that are not all 0 (BERT-style
    pairs: 0 for the first segment, 1 for the second), else {}; whether the encoder uses them is the model's
    business (models.uses_token_types)."""
    types = enc.get("token_type_ids")
    return {"token_type_ids": types[i]} if types is not None and any(types[i]) else {}


def _pair_args(ds):
    a = list(ds["text_a"])
    b = list(ds["text_b"]) if "text_b" in ds.column_names else None
    return a, b


def classification(ds, tokenizer, max_length: int, regression: bool = False):
    a, b = _pair_args(ds)
    enc = tokenizer(a, b, truncation=True, max_length=max_length, return_token_type_ids=True) if b is not None else \
        tokenizer(a, truncation=True, max_length=max_length)
    labels = [float(x) for x in list(ds["label"])] if regression else [int(x) for x in ds["label"]]
    return [{"input_ids": ids, "labels": y, "length": len(ids), **_types(enc, i)}
            for i, (ids, y) in enumerate(zip(enc["input_ids"], labels))]


def multiple_choice(ds, tokenizer, max_length: int):
    """One (context + question, choice) pair per choice; COPA's 'cause'/'effect' become questions."""
    feats = []
    for ctx, q, choices, y in zip(*(list(ds[c]) for c in ("context", "question", "choices", "label"))):
        first = " ".join(x for x in (ctx, COPA_QUESTION.get(q, q)) if x)
        enc = tokenizer([first] * len(choices), list(choices), truncation=True, max_length=max_length,
                        return_token_type_ids=True)
        types = [_types(enc, j).get("token_type_ids", [0] * len(x)) for j, x in enumerate(enc["input_ids"])]
        feats.append({"input_ids": enc["input_ids"], "labels": int(y),
                      "length": max(len(x) for x in enc["input_ids"]) * len(choices),
                      **({"token_type_ids": types} if any(map(any, types)) else {})})
    return feats


def word_pieces(subwords_per_word: list[int], budget: int) -> list[tuple[int, int]]:
    """Split a sentence between words into [start, end) pieces of at most `budget` sub-words each, greedily, as
    XTREME's preprocessing does for UD-POS and PAN-X (utils_preprocess.py: a new line when the next word would
    pass max_len). A single word longer than the budget is a piece of its own (truncated when encoded).

    >>> word_pieces([2, 3, 1, 4, 1], 5)
    [(0, 2), (2, 4), (4, 5)]
    >>> word_pieces([7, 1], 5), word_pieces([], 5)
    ([(0, 1), (1, 2)], [(0, 0)])
    """
    pieces, start, used = [], 0, 0
    for w, n in enumerate(subwords_per_word):
        if used + n > budget and w > start:
            pieces.append((start, w))
            start, used = w, 0
        used += n
    pieces.append((start, len(subwords_per_word)))
    return pieces


def tagging(ds, tokenizer, max_length: int):
    """One feature per sentence, or - for a sentence longer than `max_length` sub-words - one per piece of it
    (`word_pieces`; nothing is truncated away, as in XTREME). Labels sit on each word's first sub-word; `word_ids`
    index the whole sentence, so `postprocess.word_tags` puts the pieces back together."""
    budget = max_length - tokenizer.num_special_tokens_to_add()
    feats = []
    for i, (tokens, tags) in enumerate(zip(list(ds["tokens"]), list(ds["tags"]))):
        tokens = list(tokens)
        enc = tokenizer(tokens, is_split_into_words=True, truncation=False, verbose=False)
        pieces = [(0, enc)]          # (index of the piece's first word, its encoding)
        if len(enc["input_ids"]) > max_length:
            per_word = [0] * len(tokens)
            for w in enc.word_ids():
                if w is not None:
                    per_word[w] += 1
            pieces = [(a, tokenizer(tokens[a:b], is_split_into_words=True, truncation=True, max_length=max_length))
                      for a, b in word_pieces(per_word, budget)]
        for a, e in pieces:
            word_ids = [None if w is None else a + w for w in e.word_ids()]
            labels, seen = [], set()
            for w in word_ids:
                if w is None or w in seen:
                    labels.append(IGNORE)
                else:
                    seen.add(w)
                    labels.append(int(tags[w]))
            feats.append({"input_ids": e["input_ids"], "labels": labels, "length": len(e["input_ids"]),
                          "word_ids": [-1 if w is None else w for w in word_ids], "example_index": i,
                          "n_words": len(tokens)})
    return feats


def qa_overlap(max_length: int, doc_stride: int, question_tokens: int, special_tokens: int) -> int:
    """The tokenizer's `stride` (tokens shared by consecutive windows) that makes windows advance `doc_stride`
    context tokens: XTREME's run_squad.py / jiant (HF's squad_convert_examples_to_features) pass
    stride = max_seq_length - doc_stride - len(question) - special tokens. 0 when the step is the whole room.

    >>> qa_overlap(384, 128, 10, 4)       # room for context 370: windows of 370 tokens, 242 shared, step 128
    242
    >>> qa_overlap(64, 100, 10, 4)
    0
    """
    return max(0, max_length - doc_stride - question_tokens - special_tokens)


def span_qa(ds, tokenizer, max_length: int = 384, doc_stride: int = 128, train: bool = True, doc_overlap: int = -1):
    """SQuAD-style windows. With train=True each window carries start/end positions; otherwise the offsets
    (None outside the context) and the example index that QA decoding needs.

    `doc_stride` is the window step in context tokens (XTREME's and jiant's meaning, their default 128); the overlap
    then depends on each question's length (`qa_overlap`). `doc_overlap` >= 0 instead fixes the overlap itself
    (the meaning HF's run_qa.py gives its own `doc_stride`), and `doc_stride` is ignored."""
    questions = [q.lstrip() for q in ds["question"]]   # leading spaces waste window room (as HF's run_qa)
    contexts = list(ds["context"])
    if doc_overlap >= 0:
        overlap = min(doc_overlap, max_length // 3)   # the overlap must leave room for question + context
        groups = {overlap: list(range(len(questions)))}
    else:
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        q_lens = [len(x) for x in tokenizer(questions, add_special_tokens=False)["input_ids"]] if questions else []
        groups = {}
        for i, n in enumerate(q_lens):   # one tokenizer call per overlap value (questions of one length)
            groups.setdefault(qa_overlap(max_length, doc_stride, n, specials), []).append(i)
    parts = []
    for overlap, idx in groups.items():
        enc = tokenizer([questions[i] for i in idx], [contexts[i] for i in idx], truncation="only_second",
                        max_length=max_length, stride=overlap, return_overflowing_tokens=True,
                        return_offsets_mapping=True, return_token_type_ids=True)
        parts += [(idx[ex], j, enc) for j, ex in enumerate(enc["overflow_to_sample_mapping"])]
    parts.sort(key=lambda p: p[:2])   # examples in input order, each one's windows in context order
    all_answers = list(ds["answers"]) if train else None
    feats = []
    for ex, j, enc in parts:
        ids = enc["input_ids"][j]
        seq = enc.sequence_ids(j)
        offsets = enc["offset_mapping"][j]
        f = {"input_ids": ids, "length": len(ids), "example_index": ex}
        f.update(_types(enc, j))
        if train:
            ans = all_answers[ex]
            start_pos = end_pos = 0
            if ans["answer_start"]:
                s_char = ans["answer_start"][0]
                e_char = s_char + len(ans["text"][0])
                ctx = [k for k, s in enumerate(seq) if s == 1]
                if ctx and offsets[ctx[0]][0] <= s_char and offsets[ctx[-1]][1] >= e_char:
                    start_pos = next(k for k in ctx if offsets[k][1] > s_char)
                    end_pos = next(k for k in reversed(ctx) if offsets[k][0] < e_char)
            f.update(start_positions=start_pos, end_positions=end_pos)
        else:
            f["offsets"] = [tuple(o) if s == 1 else None for o, s in zip(offsets, seq)]
        feats.append(f)
    return feats


def build(task_type: str, ds, tokenizer, max_length: int, train: bool = True, doc_stride: int = 128,
          doc_overlap: int = -1):
    if task_type in ("classification", "pair_classification"):
        return classification(ds, tokenizer, max_length)
    if task_type == "regression":
        return classification(ds, tokenizer, max_length, regression=True)
    if task_type == "multiple_choice":
        return multiple_choice(ds, tokenizer, max_length)
    if task_type == "tagging":
        return tagging(ds, tokenizer, max_length)
    if task_type == "span_qa":
        return span_qa(ds, tokenizer, max_length, doc_stride, train=train, doc_overlap=doc_overlap)
    raise ValueError(f"no features for task type {task_type!r}")


def require_mask_token(tokenizer) -> None:
    """MLM co-training masks tokens: a tokenizer without a mask token (T5/mT5, pre-trained with span corruption)
    cannot take part; fail before any training."""
    if tokenizer.mask_token_id is None:
        raise ValueError(f"MLM co-training ('+mlm') needs a tokenizer with a mask token and "
                         f"{getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__} has none (T5/mT5 "
                         f"encoders were pre-trained with span corruption, not masked-LM): drop '+mlm' from the "
                         f"intermediate label for this model")


def mlm_features(texts: list[str], tokenizer, max_length: int = 128):
    require_mask_token(tokenizer)
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{"input_ids": ids, "length": len(ids)} for ids in enc["input_ids"] if len(ids) > 2]


def mask_tokens(input_ids: torch.Tensor, tokenizer, generator: torch.Generator, prob: float = 0.15):
    """BERT masking: 15% of non-special tokens; of those 80% <mask>, 10% random, 10% kept. Returns (ids, labels)."""
    labels = input_ids.clone()
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for sid in tokenizer.all_special_ids:
        special |= input_ids == sid
    pick = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels[~pick] = IGNORE
    ids = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    ids[pick & (r < 0.8)] = tokenizer.mask_token_id
    rand = pick & (r >= 0.8) & (r < 0.9)
    ids[rand] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[rand]
    return ids, labels


def pad_multiple(device) -> int:
    """Round padded lengths up to a multiple of 8 on GPUs (tensor-core tile sizes); on CPU rounding only adds pad
    (Tatoeba-length batches lose ~10% efficiency to it)."""
    return 8 if getattr(device, "type", str(device)) == "cuda" else 1


def collate(feats: list[dict], pad_id: int, pad_to: int | None = None, multiple_of: int = 8) -> dict:
    """Dynamic padding to the longest sequence in the batch (rounded up to `multiple_of`, see `pad_multiple`), or
    to `pad_to` (the reference implementation's fixed padding)."""
    mc = isinstance(feats[0]["input_ids"][0], list)
    seqs = [s for f in feats for s in (f["input_ids"] if mc else [f["input_ids"]])]
    longest = max(len(s) for s in seqs)
    width = pad_to if pad_to else -(-longest // multiple_of) * multiple_of
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s[:width])
        mask[i, :len(s)] = 1
    if mc:
        n = len(feats[0]["input_ids"])
        ids, mask = ids.view(len(feats), n, width), mask.view(len(feats), n, width)
    batch = {"input_ids": ids, "attention_mask": mask}
    if any("token_type_ids" in f for f in feats):   # segment ids (0 = first segment, also on padding)
        rows = []
        for f in feats:
            t = f.get("token_type_ids")
            rows += (t or [[]] * len(f["input_ids"])) if mc else [t or []]
        types = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, t in enumerate(rows):
            types[i, :len(t)] = torch.tensor(t[:width], dtype=torch.long)
        batch["token_type_ids"] = types.view(ids.shape)
    if "labels" in feats[0]:
        if isinstance(feats[0]["labels"], list):
            lab = torch.full((len(feats), width), IGNORE, dtype=torch.long)
            for i, f in enumerate(feats):
                lab[i, :len(f["labels"])] = torch.tensor(f["labels"][:width])
            batch["labels"] = lab
        else:
            dtype = torch.float32 if isinstance(feats[0]["labels"], float) else torch.long
            batch["labels"] = torch.tensor([f["labels"] for f in feats], dtype=dtype)
    for k in ("start_positions", "end_positions"):
        if k in feats[0]:
            batch[k] = torch.tensor([f[k] for f in feats], dtype=torch.long)
    return batch


def _first_fit(lengths: list[int], width: int) -> list[list[int]]:
    """First-fit decreasing: rows of sequence indices, each row's lengths summing to at most `width`."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((k for k, free in enumerate(room) if free >= lengths[i]), None)
        if r is None:
            rows.append([])
            room.append(width)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= lengths[i]
    return rows


def pack(batch: dict, width: int, pad_id: int, multiple_of: int = 1, position_offset: int = 0,
         bucket_rows: bool = False, fixed_width: bool = False) -> dict:
    """Padding-free layout of a padded batch (`collate`, after any MLM masking): the sequences (every choice of a
    multiple-choice example is one) placed first-fit-decreasing into rows of at most `width` tokens (at least the
    longest sequence; the width with fewest slots, rounded up to `multiple_of`), each keeping its own positions (`position_offset` + 0, 1, ...: RoBERTa's
    ids restart at padding_idx + 1, models.packing_scheme). Adds to a copy of `batch`:
    packed_input_ids / packed_position_ids / packed_token_type_ids (rows, width), packed_segments (rows, width: the
    sequence's index within its row; -1 on the slots left over, which attend only to each other so that no
    attention row is empty) and pack_index (sequences, padded length): where each padded slot's token sits in the
    flattened rows (0 on padding, which models.MultiTaskModel zeroes). The padded keys stay: heads read labels,
    masks and per-sequence outputs in the padded layout, so they are the same code in both layouts. `bucket_rows`
    rounds the number of rows up to a power of two with empty rows and `fixed_width` keeps rows `width` wide (a
    compiled encoder then sees a few shapes: train.TrainConfig.compile)."""
    mask = batch["attention_mask"]
    ids = batch["input_ids"].reshape(-1, mask.shape[-1])
    flat_mask = mask.reshape(-1, mask.shape[-1])
    lengths = flat_mask.sum(1).tolist()
    if any(flat_mask[i, :n].sum() != n for i, n in enumerate(lengths)):
        raise ValueError("packing needs right-padded sequences (features.collate's layout)")
    longest = -(-max(lengths) // multiple_of) * multiple_of
    cap = max(-(-width // multiple_of) * multiple_of, longest)
    # the row width that computes fewest slots: multiples of the longest sequence up to `width`, and `width`
    # itself (ties: the narrower, whose attention is cheaper). Width = longest already never computes more than
    # padding to the longest, so packing never costs tokens.
    best = None
    for w in [cap] if fixed_width else sorted({*range(longest, cap + 1, longest), cap}):
        rows = _first_fit(lengths, w)
        if best is None or len(rows) * w < len(best[1]) * best[0]:
            best = (w, rows)
    width, rows = best
    n_rows = 1 << (len(rows) - 1).bit_length() if bucket_rows else len(rows)
    p_ids = torch.full((n_rows, width), pad_id, dtype=ids.dtype)
    p_pos = torch.zeros((n_rows, width), dtype=torch.long)
    p_seg = torch.full((n_rows, width), -1, dtype=torch.long)
    types = batch.get("token_type_ids")
    flat_types = types.reshape(-1, mask.shape[-1]) if types is not None else None
    p_types = torch.zeros((n_rows, width), dtype=torch.long) if types is not None else None
    index = torch.zeros(flat_mask.shape, dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for s, i in enumerate(members):
            n = lengths[i]
            p_ids[r, at:at + n] = ids[i, :n]
            p_pos[r, at:at + n] = torch.arange(position_offset, position_offset + n)
            p_seg[r, at:at + n] = s
            if p_types is not None:
                p_types[r, at:at + n] = flat_types[i, :n]
            index[i, :n] = torch.arange(r * width + at, r * width + at + n)
            at += n
    out = dict(batch)
    out.update(packed_input_ids=p_ids, packed_position_ids=p_pos, packed_segments=p_seg,
               pack_index=index.view(mask.shape))
    if p_types is not None:
        out["packed_token_type_ids"] = p_types
    return out
