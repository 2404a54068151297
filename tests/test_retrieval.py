"""retrieval.py: embeddings of one layer on a tiny XLM-R built in-test (nothing downloaded), exact kNN (faiss and
blocked torch agree), margin mining against a brute-force reference and on planted pairs, BUCC threshold and
readers, and Tatoeba on the real LASER files when ../shared/data is present."""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from xfer_utils import embeddings, metrics, retrieval


sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import shared_data  # noqa: E402  (one definition of where the real data lives)


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- tiny encoder

WORDS = "the cat dog sat on mat a big red blue fish ran far away house".split()


@pytest.fixture(scope="module")
def tiny():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=64, pad_token_id=1)
    return XLMRobertaModel(cfg, add_pooling_layer=False).eval(), tok


TEXTS = ["the cat", "a big red dog sat on the mat", "fish", "the blue house far away", "dog ran", "cat sat on mat"]


def reference_embedding(model, tok, texts, layer):
    """Full forward pass, one text at a time (no padding): mean of hidden_states[layer] over all tokens."""
    rows = []
    with torch.no_grad():
        for t in texts:
            h = model(**tok([t], return_tensors="pt"), output_hidden_states=True).hidden_states[layer][0]
            rows.append(h.mean(0).numpy())
    return unit(np.stack(rows))


@pytest.mark.parametrize("layer", [0, 1, 3])
def test_embed_is_mean_of_hidden_states_layer(tiny, layer):
    model, tok = tiny
    got = embeddings.embed(model, tok, TEXTS, layer, batch_size=2, progress=False)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    # batched + padded + length-sorted == one by one, in the caller's order
    np.testing.assert_allclose(got, reference_embedding(model, tok, TEXTS, layer), atol=2e-5)


def test_embed_runs_only_the_layers_it_needs(tiny):
    model, tok = tiny
    calls = []
    handles = [layer.register_forward_hook(lambda m, a, o, n=n: calls.append(n))
               for n, layer in enumerate(model.encoder.layer)]
    try:
        embeddings.embed(model, tok, TEXTS[:2], 1, batch_size=8, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == [0]                   # hidden_states[1] needs layer 0 only
    assert not model.training


def test_embed_cache_is_keyed_by_content(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    first = embeddings.embed(model, tok, TEXTS, 2, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 1
    def boom(*a, **k):
        raise AssertionError("the cache should have answered")
    monkeypatch.setattr(embeddings, "_hidden_at", boom)
    np.testing.assert_array_equal(embeddings.embed(model, tok, TEXTS, 2, progress=False, cache_dir=tmp_path), first)
    monkeypatch.undo()
    key = embeddings.embedding_cache_key(model, tok, TEXTS, 2, 512)
    assert key != embeddings.embedding_cache_key(model, tok, TEXTS, 1, 512)                 # layer
    assert key != embeddings.embedding_cache_key(model, tok, TEXTS[::-1], 2, 512)           # texts
    assert key != embeddings.embedding_cache_key(model, tok, TEXTS, 2, 512, cache_key="ckpt-b")
    with torch.no_grad():
        model.encoder.layer[0].output.dense.bias.add_(1.0)
    try:
        assert key != embeddings.embedding_cache_key(model, tok, TEXTS, 2, 512)             # weights changed
    finally:
        with torch.no_grad():
            model.encoder.layer[0].output.dense.bias.sub_(1.0)


def test_embed_rejects_bad_layer(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="between 0"):
        embeddings.embed(model, tok, TEXTS, 4, progress=False)


# ---------------------------------------------------------------- kNN

def brute_topk(x, y, k):
    s = x.astype(np.float64) @ y.astype(np.float64).T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def assert_same_neighbours(sims_a, idx_a, sims_b, idx_b, tol=1e-5):
    np.testing.assert_allclose(sims_a, sims_b, atol=tol)
    differ = idx_a != idx_b
    # a different index is only allowed where two neighbours tie within float rounding
    assert np.all(np.abs(sims_a[differ] - sims_b[differ]) < tol)
    assert differ.mean() < 1e-3


def test_blocked_topk_matches_brute_force_both_directions():
    rng = np.random.default_rng(0)
    x, y = unit(rng.standard_normal((53, 16))), unit(rng.standard_normal((71, 16)))
    fv, fi, bv, bi = (t.numpy() for t in retrieval._blocked_topk(torch.from_numpy(x), torch.from_numpy(y), 4,
                                                                   True, (7, 13)))
    rs, ri = brute_topk(x, y, 4)
    assert_same_neighbours(fv, fi, rs, ri)
    rs, ri = brute_topk(y, x, 4)
    assert_same_neighbours(bv, bi, rs, ri)


def test_faiss_and_torch_knn_give_the_same_neighbours():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    x, y = unit(rng.standard_normal((1500, 64))), unit(rng.standard_normal((2500, 64)))
    fs, fi = retrieval.knn(x, y, 5, use_faiss=True)
    ts, ti = retrieval.knn(x, y, 5, use_faiss=False)
    assert fi.dtype == ti.dtype == np.int64 and fs.shape == ts.shape == (1500, 5)
    assert_same_neighbours(fs, fi, ts, ti)
    assert retrieval.knn(x[:3], y[:2], 5, use_faiss=False)[1].shape == (3, 2)          # k capped at len(y)


def test_tatoeba_search_direction():
    rng = np.random.default_rng(2)
    src = unit(rng.standard_normal((40, 8)))
    perm = rng.permutation(40)
    eng = unit(src[perm] + 0.01 * rng.standard_normal((40, 8)))
    pred = retrieval.tatoeba_search(src, eng)            # for each English query, the index into src
    np.testing.assert_array_equal(pred, perm)
    assert metrics.tatoeba_accuracy(pred, perm) == 100.0
    np.testing.assert_array_equal(retrieval.tatoeba_search(eng, src), np.argsort(perm))   # other direction


# ---------------------------------------------------------------- mining

def test_mine_bitext_hand_computed():
    # x0=(1,0) x1=(0,1); y0=(1,0) y1=(.6,.8); k=2: kNN means x: .8 .4, y: .5 .7
    x = np.array([[1, 0], [0, 1]], np.float32)
    y = np.array([[1, 0], [.6, .8]], np.float32)
    got = retrieval.mine_bitext(x, y, k=2)
    assert [(i, j) for i, j, _ in got] == [(0, 0), (1, 1)]
    assert [s for _, _, s in got] == pytest.approx([1 / 0.65, 0.8 / 0.55])     # ratio: cos / mean of means
    got = retrieval.mine_bitext(x, y, k=2, margin="distance")
    assert [s for _, _, s in got] == pytest.approx([1 - 0.65, 0.8 - 0.55])


def reference_mining(x, y, k, margin, mode):
    """Straight from the definition (XTREME utils_retrieve.mine_bitext), O(n*m) with loops."""
    s = x.astype(np.float64) @ y.astype(np.float64).T
    kx, ky = min(k, len(y)), min(k, len(x))
    fwd_idx = np.argsort(-s, 1, kind="stable")[:, :kx]
    bwd_idx = np.argsort(-s.T, 1, kind="stable")[:, :ky]
    mx = np.take_along_axis(s, fwd_idx, 1).mean(1)
    my = np.take_along_axis(s.T, bwd_idx, 1).mean(1)
    f = {"ratio": lambda a, b: a / b, "distance": lambda a, b: a - b, "absolute": lambda a, b: a}[margin]
    fwd = [max(((f(s[i, j], (mx[i] + my[j]) / 2), j) for j in fwd_idx[i])) for i in range(len(x))]
    bwd = [max(((f(s[i, j], (my[j] + mx[i]) / 2), i) for i in bwd_idx[j])) for j in range(len(y))]
    if mode == "forward":
        return {(i, j) for i, (_, j) in enumerate(fwd)}
    if mode == "backward":
        return {(i, j) for j, (_, i) in enumerate(bwd)}
    if mode == "intersect":
        return {(i, j) for i, (_, j) in enumerate(fwd) if bwd[j][1] == i}
    cands = sorted([(sc, i, j) for i, (sc, j) in enumerate(fwd)] + [(sc, i, j) for j, (sc, i) in enumerate(bwd)],
                   reverse=True)
    seen_x, seen_y, out = set(), set(), set()
    for _, i, j in cands:
        if i not in seen_x and j not in seen_y:
            seen_x.add(i)
            seen_y.add(j)
            out.add((i, j))
    return out


@pytest.mark.parametrize("mode", retrieval.MODES)
@pytest.mark.parametrize("margin", retrieval.MARGINS)
def test_mine_bitext_matches_reference(mode, margin):
    rng = np.random.default_rng(3)
    x, y = unit(rng.standard_normal((60, 12))), unit(rng.standard_normal((45, 12)))
    got = retrieval.mine_bitext(x, y, k=4, margin=margin, mode=mode)
    assert {(i, j) for i, j, _ in got} == reference_mining(x, y, 4, margin, mode)
    assert [s for *_, s in got] == sorted((s for *_, s in got), reverse=True)


def planted(n=400, distract=300, dim=48, noise=0.6, seed=4):
    """n source sentences whose translations sit at a random place among n + distract targets, plus
    `distract` unmatched sources. Returns x, y and the planted {(i, j)}."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, dim))
    x = np.vstack([base, rng.standard_normal((distract, dim))])
    y_rows = np.vstack([base + noise * rng.standard_normal((n, dim)), rng.standard_normal((distract, dim))])
    perm = rng.permutation(len(y_rows))
    y = np.empty_like(y_rows)
    y[perm] = y_rows
    return unit(x), unit(y), {(i, int(perm[i])) for i in range(n)}


def test_mining_recovers_planted_pairs_and_threshold_separates_them():
    x, y, gold = planted()
    mined = retrieval.mine_bitext(x, y)
    assert {(i, j) for i, j, _ in mined[:len(gold)]} == gold              # the planted pairs score highest
    cands = {(f"s{i}", f"t{j}"): s for i, j, s in mined}
    gold_ids = {(f"s{i}", f"t{j}") for i, j in gold}
    th = retrieval.bucc_threshold(cands, gold_ids)
    assert metrics.bucc_scores(retrieval.bucc_extract(cands, th), gold_ids)["f1"] == 100.0
    if retrieval._faiss() is not None:                                     # XTREME's two-search path agrees
        assert {(i, j) for i, j, _ in retrieval.mine_bitext(x, y, use_faiss=True)} == {(i, j) for i, j, _ in mined}


def test_bucc_threshold_rules():
    # official bucc_optimize: halfway to the next score when F1 improves; 0 when nothing is correct
    c = [("a", "x", 3.0), ("b", "y", 2.0), ("c", "z", 1.0)]
    assert retrieval.bucc_threshold(c, [("a", "x")]) == 2.5
    assert retrieval.bucc_threshold(c, [("c", "z")]) == 1.0      # best at the last candidate (official: IndexError)
    assert retrieval.bucc_threshold(c, [("q", "q")]) == 0.0
    assert retrieval.bucc_extract(c, 2.0) == [("a", "x"), ("b", "y")]


def write_bucc(root: Path, lang: str, split: str, src: list[tuple[str, str]], tgt: list[tuple[str, str]],
               gold: list[tuple[str, str]] | None):
    d = root / f"{lang}-en"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{lang}-en.{split}.{lang}").write_text("".join(f"{i}\t{s}\n" for i, s in src), encoding="utf-8")
    (d / f"{lang}-en.{split}.en").write_text("".join(f"{i}\t{s}\n" for i, s in tgt), encoding="utf-8")
    if gold is not None:
        (d / f"{lang}-en.{split}.gold").write_text("".join(f"{a}\t{b}\n" for a, b in gold), encoding="utf-8")


def bag_of_words(sents: list[str], dim: int = 64) -> np.ndarray:
    out = np.zeros((len(sents), dim), np.float32)
    for n, s in enumerate(sents):
        for w in s.lower().split():
            out[n, zlib.crc32(w.encode()) % dim] += 1
    return unit(out + 1e-3)


def test_bucc_reader_candidates_and_duplicates(tmp_path):
    # hand-made corpus: "de" sentences use the English words, so bag-of-words embeddings align them
    src = [("de-1", "red house"), ("de-2", "big blue fish"), ("de-3", "cat"), ("de-4", "cat"), ("de-5", "sun moon")]
    tgt = [("en-7", "big blue fish"), ("en-8", "red house"), ("en-9", "cat"), ("en-3", "tree")]
    write_bucc(tmp_path, "de", "sample", src, tgt, [("de-1", "en-8"), ("de-2", "en-7")])
    write_bucc(tmp_path, "de", "test", src, tgt, None)
    corpus = retrieval.read_bucc(tmp_path, "de", "validation")
    assert corpus.split == "sample" and corpus.src_ids[0] == "de-1" and corpus.tgt_sents[1] == "red house"
    assert corpus.gold == {("de-1", "en-8"), ("de-2", "en-7")} and not corpus.proxy
    assert retrieval.read_bucc(tmp_path / "de-en", "de", "test").gold is None
    cands = retrieval.bucc_candidates(corpus, bag_of_words(corpus.src_sents), bag_of_words(corpus.tgt_sents), k=2)
    assert ("de-1", "en-8") in cands and ("de-2", "en-7") in cands
    assert not any(s in ("de-3", "de-4") for s, _ in cands)            # "cat" occurs twice: ambiguous, dropped
    out = retrieval.bucc_evaluate(cands, corpus.gold, cands, corpus.gold)
    assert out["f1"] == 100.0 and out["threshold"] > 0
    ids = retrieval.read_bucc_corpus(tmp_path, "de", "validation")
    assert ids[0] == corpus.src_ids and ids[4] == corpus.gold
    with pytest.raises(FileNotFoundError, match="comparable.limsi.fr"):
        retrieval.read_bucc(tmp_path, "fr", "sample")


def test_bucc_proxy_corpus_is_labelled():
    rows = [{"source_sentence": "Ein Satz.\n", "target_sentence": "A sentence.", "source_lang": "de-000000017",
             "target_lang": "en-000004242"}]
    c = retrieval.bucc_proxy_corpus(rows, "de", "validation")
    assert c.proxy and "PROXY" in c.note and c.gold == {("de-000000017", "en-000004242")}
    assert c.src_sents == ["Ein Satz."]


# ---------------------------------------------------------------- real data: Tatoeba line alignment

def char_ngrams(sents: list[str], n: int = 3, dim: int = 4096) -> np.ndarray:
    out = np.zeros((len(sents), dim), np.float32)
    for row, s in enumerate(sents):
        s = f" {s.lower()} "
        for i in range(len(s) - n + 1):
            out[row, zlib.crc32(s[i:i + n].encode()) % dim] += 1
    return unit(out + 1e-6)


@pytest.mark.parametrize("lang", ["fr", "de", "nl"])
def test_tatoeba_real_files_are_line_aligned(lang):
    root = shared_data()
    if root is None or not (root / "tatoeba").is_dir():
        pytest.skip("real data (../shared/data or XFER_SHARED_DATA) not present")
    xx, en = retrieval.read_tatoeba(root / "tatoeba", lang)
    assert len(xx) == len(en) == 1000 and all(xx) and all(en)
    pred = retrieval.tatoeba_search(char_ngrams(xx), char_ngrams(en))
    acc = metrics.tatoeba_accuracy(pred)
    # surface overlap (names, numbers, cognates) finds the aligned line far above chance (0.1 %) ...
    assert acc > 8
    # ... and shifting the gold alignment by one line destroys it
    assert metrics.tatoeba_accuracy(pred, [(i + 1) % len(en) for i in range(len(en))]) < 2


def test_both_retrieval_phases_run_on_the_tiny_world(world, tmp_path):
    """runs.retrieval end to end for BUCC (the mirror's original-layout corpus: mine sample and training, F1-optimal
    sample threshold) and Tatoeba, from the raw tiny encoder: one row per metric and language, predictions written,
    scores in range."""
    import json as _json

    from xfer_utils.phases import runs
    for task in ("bucc2018", "tatoeba"):
        out = runs.retrieval(str(world["tiny-xlmr-s"]), task, run_id=f"r-{task}", plan="t",
                             run_dir=str(tmp_path / task), checkpoint_dir=str(tmp_path / "ckpt"),
                             languages=["de"], data_dir=str(world["data"]), log=lambda *a: None)
        rows = [_json.loads(x) for x in (tmp_path / task / "metrics.jsonl").read_text().splitlines()]
        assert rows == out["rows"] and {r["language"] for r in rows} == {"de"} and rows[0]["split"] == "test"
        assert {r["metric"] for r in rows} == ({"f1", "precision", "recall"} if task == "bucc2018" else {"accuracy"})
        assert all(0.0 <= r["value"] <= 100.0 for r in rows)
        assert list((tmp_path / task / "predictions").iterdir())
