"""Padding-free batches (features.pack, models.MultiTaskModel's packed path, train.TrainConfig.packing): a packed
batch gives the padded batch's losses and gradients on the tiny model of every architecture family
(xfer_utils/tiny_families.py) for every head type; packing is refused, in one sentence, where it cannot be exact."""
from __future__ import annotations

import pytest
import torch

from xfer_utils import features, models, train
from xfer_utils.phases import env, runs
from xfer_utils.world import tiny_families

FAMILIES = list(tiny_families.NAMES) + ["tiny-xlmr-s"]
HEAD_TASKS = [("sst2", "classification"), ("mnli", "pair_classification"), ("stsb", "regression"),
              ("hellaswag", "multiple_choice"), ("squad", "span_qa"), ("udpos", "tagging")]
# fp32 on CPU: packed and padded rows sum attention over different zero-weight slots and run matmuls of other
# shapes, so results differ by float rounding only (observed <= ~1e-6 relative); a wrong position or a leak across
# sequences moves them by 1e-2 or more
LOSS_RTOL, GRAD_ATOL, GRAD_RTOL = 1e-5, 1e-6, 1e-4


@pytest.fixture(scope="module")
def fam(world):
    from transformers import AutoTokenizer
    return {n: (p, AutoTokenizer.from_pretrained(p)) for n in FAMILIES for p in [env.resolve_model(n)]}


def _loss_and_grads(net, task, batch):
    net.zero_grad(set_to_none=True)
    loss = net(task, batch)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", FAMILIES)
def test_packed_and_padded_batches_give_the_same_losses_and_gradients_for_every_head(world, fam, name):
    """Pins exactness per family (positions restart per sequence, no attention across sequences, per-sequence
    pooling and per-token heads read the right outputs): loss within LOSS_RTOL, every parameter's gradient within
    GRAD_ATOL + GRAD_RTOL; several sequences do share rows. Dropout off (model.eval()): it draws other masks in
    another layout, the only intended difference."""
    path, tok = fam[name]
    tds = [runs._task_data(t, "en", tok, world["data"], 12, 8, 1, 64) for t, _ in HEAD_TASKS]
    heads = runs._heads(tds, tok)
    cases = [(td.name, td.train[:6]) for td in tds]
    if tok.mask_token_id is not None:      # MLM co-training's head (not mT5: no mask token)
        heads["mlm"] = ("mlm", 0)
        cases.append(("mlm", features.mlm_features(["anna garcia alpha bravo", "kilo3 quiz same right",
                                                    "alpha bravo kilo3"], tok, 32)))
    net, _ = models.build(path, heads, seed=1)
    net.eval()
    offset = models.packing_position_offset(net.encoder.config)
    for task, feats in cases:
        batch = features.collate(feats, tok.pad_token_id, multiple_of=8)    # padding beyond the longest, too
        if task == "mlm":
            batch["input_ids"], batch["labels"] = features.mask_tokens(
                batch["input_ids"], tok, torch.Generator().manual_seed(0), prob=0.5)
        packed = features.pack(batch, 160, tok.pad_token_id, position_offset=offset, fixed_width=True)
        n_seqs = batch["attention_mask"].reshape(-1, batch["attention_mask"].shape[-1]).shape[0]
        assert packed["packed_input_ids"].shape[0] < n_seqs, f"{task}: nothing shared a row"
        loss_a, grads_a = _loss_and_grads(net, task, batch)
        loss_b, grads_b = _loss_and_grads(net, task, packed)
        assert torch.isfinite(loss_a) and abs(loss_a - loss_b) <= LOSS_RTOL * max(1.0, abs(loss_a)), \
            f"{name} {task}: padded loss {loss_a.item()} packed {loss_b.item()}"
        assert grads_a.keys() == grads_b.keys(), task
        for k in grads_a:
            torch.testing.assert_close(grads_b[k], grads_a[k], atol=GRAD_ATOL, rtol=GRAD_RTOL,
                                       msg=lambda m, k=k: f"{name} {task} {k}: {m}")


def test_pack_layout_positions_and_index():
    """features.pack: first-fit-decreasing rows of the width with fewest slots (never more than padding to the
    longest), positions restarting at the offset, segments, and pack_index pointing every padded slot at its own
    token."""
    feats = [{"input_ids": list(range(10, 10 + n))} for n in (5, 3, 7, 2)]
    batch = features.collate(feats, 1, multiple_of=1)
    p = features.pack(batch, 8, pad_id=1, position_offset=2)
    assert p["packed_input_ids"].shape == (3, 7)       # 7 | 5+2 | 3: 21 slots (width 8 would take 24, padding 28)
    flat = p["packed_input_ids"].flatten()
    m = batch["attention_mask"].bool()
    assert torch.equal(flat[p["pack_index"]][m], batch["input_ids"][m])
    assert p["packed_position_ids"][1].tolist() == [2, 3, 4, 5, 6, 2, 3]
    assert p["packed_segments"][2].tolist() == [0, 0, 0, -1, -1, -1, -1]
    short = features.collate([{"input_ids": [5] * 6} for _ in range(8)], 1, multiple_of=1)
    wide = features.pack(short, 32, pad_id=1, multiple_of=8)
    assert wide["packed_input_ids"].shape == (2, 24)    # 8 x 6 tokens: 2 rows of 24 = 48 slots (width 8: 64, 32: 64)


def test_packing_is_refused_where_it_cannot_be_exact(fam):
    """Pins the refusals: an attention without masks (flash-attention 2), a DeBERTa-v2 with its convolution layer
    (mixes neighbouring tokens across sequences), a model type without a packing scheme; each one sentence naming
    what is valid. TrainConfig.packing accepts auto | on | off only."""
    net, _ = models.build(fam["tiny-xlmr-s"][0], {"c": ("classification", 2)})
    cfg = net.encoder.config
    assert models.packing_refusal(cfg) == ""
    # measured slower on an H200 at every shape (benchmarks/README.md, "GPU"): auto does not pack, 'on' does
    assert train.resolve_packing("auto", cfg, torch.device("cuda")) is False
    assert train.resolve_packing("on", cfg, torch.device("cuda")) is True
    cfg._attn_implementation = "flash_attention_2"
    assert "packing needs sdpa or eager" in models.packing_refusal(cfg)
    deb, _ = models.build(fam["tiny-deberta"][0], {"c": ("classification", 2)})
    deb.encoder.config.conv_kernel_size = 3
    assert "convolution" in models.packing_refusal(deb.encoder.config)
    cfg.model_type = "gpt2"
    with pytest.raises(ValueError, match="packing supports: xlm-roberta, .*set packing='off'"):
        train.resolve_packing("on", cfg, torch.device("cpu"))
    assert train.resolve_packing("auto", cfg, torch.device("cuda")) is False       # auto never fails
    with pytest.raises(ValueError, match="packing must be one of auto, on, off"):
        train.resolve_packing("yes", cfg, torch.device("cpu"))


def test_training_with_packing_matches_padded_training_without_dropout(world, fam, tmp_path):
    """The training loop's packed path (packing='on') takes the same optimizer steps as the padded one: with dropout
    off, a few steps end at the same dev score and weights (within float rounding)."""
    path, tok = fam["tiny-xlmr-s"]
    td = runs._task_data("udpos", "en", tok, world["data"], 16, 8, 1, 64)
    heads = runs._heads([td], tok)
    res = {}
    for mode in ("off", "on"):
        net, _ = models.build(path, heads, seed=1, dropout=0.0)
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        cfg = train.TrainConfig(lr=1e-3, batch_size=8, max_steps=3, eval_every=0, checkpoint_every=0, seed=1,
                                packing=mode)
        r = train.train(net, tok, [td], cfg, tmp_path / mode, progress=False, log=lambda *a: None)
        res[mode] = (r, {k: v.clone() for k, v in net.state_dict().items()})
    (a, wa), (b, wb) = res["off"], res["on"]
    assert a.steps == b.steps == 3 and a.tokens == b.tokens
    assert a.identity != b.identity            # the packed run was packed (identity.settings records it)
    w0, _ = models.build(path, heads, seed=1, dropout=0.0)
    assert not torch.allclose(w0.state_dict()["heads.udpos.out.weight"], wa["heads.udpos.out.weight"])
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-5, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.slow
def test_compiled_encoder_trains_to_the_eager_loss(world, fam, tmp_path):
    """TrainConfig.compile (torch.compile of the encoder, batch widths rounded to compile_buckets) runs and takes
    the eager run's steps: with dropout off, the same per-step losses within float rounding (inductor fuses and
    reorders float ops), and checkpoints keep the eager parameter names."""
    path, tok = fam["tiny-xlmr-s"]
    td = runs._task_data("sst2", "en", tok, world["data"], 16, 8, 1, 64)
    td.dev = None                       # no evaluation: the compiled graphs are the training step's alone
    heads = runs._heads([td], tok)
    res = {}
    for comp in (False, True):
        torch._dynamo.reset()
        net, _ = models.build(path, heads, seed=1, dropout=0.0)
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        cfg = train.TrainConfig(lr=1e-3, batch_size=8, max_steps=2, eval_every=0, checkpoint_every=0, seed=1,
                                compile=comp, packing="off")
        r = train.train(net, tok, [td], cfg, tmp_path / str(comp), progress=False, log=lambda *a: None)
        res[comp] = ([h["loss"] for h in r.history], set(net.state_dict()))
    (eager, keys_e), (compiled, keys_c) = res[False], res[True]
    assert len(eager) == len(compiled) == 1 and keys_e == keys_c     # the last step's loss: after one update
    assert compiled == pytest.approx(eager, rel=1e-4)
