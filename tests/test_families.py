"""Every architecture family of the model ladder on its tiny model (xfer_utils/world/tiny_families.py): each builds and
loads by name, every head type trains, token types reach the encoders that have them (mBERT, RemBERT) and only those,
T5 encoders mean-pool, the encoder round trip is exact, LoRA and FSDP find their modules, retrieval layers count
right, MLM co-training works or fails in one sentence (mT5), and a non-XLM-R family learns a pair task."""
from __future__ import annotations

import pytest
import torch

from xfer_utils import data, embeddings, features, ladder, models, train
from xfer_utils.phases import env, launch, runs
from xfer_utils.world import tiny, tiny_families

FAMILIES = list(tiny_families.NAMES) + ["tiny-xlmr-s"]
# what each tiny model must be: (config.model_type, encoder class the project loads, tokenizer model kind)
EXPECTED = {
    "tiny-bert": ("bert", "BertModel", "WordPiece"),
    "tiny-distilbert": ("distilbert", "DistilBertModel", "WordPiece"),
    "tiny-deberta": ("deberta-v2", "DebertaV2Model", "Unigram"),
    "tiny-rembert": ("rembert", "RemBertModel", "Unigram"),
    "tiny-mt5": ("mt5", "MT5EncoderModel", "Unigram"),
    "tiny-xlmr-xl": ("xlm-roberta-xl", "XLMRobertaXLModel", "Unigram"),
    "tiny-xlmr-s": ("xlm-roberta", "XLMRobertaModel", "Unigram"),
}
TOKEN_TYPES = {"tiny-bert", "tiny-rembert"}            # type_vocab_size 2, as mBERT's and RemBERT's configs
HEAD_TASKS = [("sst2", "classification"), ("mnli", "pair_classification"), ("stsb", "regression"),
              ("hellaswag", "multiple_choice"), ("squad", "span_qa"), ("udpos", "tagging")]


@pytest.fixture(scope="module")
def fam(world):
    """name -> (folder, tokenizer); every family built once (lazily, under the test world's tiny dir)."""
    from transformers import AutoTokenizer
    out = {}
    for name in FAMILIES:
        path = env.resolve_model(name)          # XFER_TINY_DIR = the test world (conftest)
        out[name] = (path, AutoTokenizer.from_pretrained(path))
    return out


def _task(world, tok, task, n=16):
    return runs._task_data(task, "en", tok, world["data"], n, 8, 1, 64)


# ---------------------------------------------------------------- names
def test_tiny_for_maps_every_ladder_model_to_the_tiny_model_of_its_family():
    assert set(tiny_families.NAMES) == set(tiny_families._builders())
    assert set(tiny_families.FAMILY_MODELS.values()) <= set(tiny_families.NAMES) | set(tiny.MODEL_SIZES)
    for m in ladder.ladder():
        want = m.name if m.name in tiny.MODEL_SIZES else tiny_families.FAMILY_MODELS[m.family]
        for key in [m.name, *m.aliases, *([m.hub_id] if m.hub_id else [])]:
            assert tiny_families.tiny_for(key) == want, key
    assert tiny_families.tiny_for("FacebookAI/xlm-roberta-large") == "tiny-xlmr-s"
    assert tiny_families.tiny_for("google/mt5-xl") == "tiny-mt5"
    assert tiny_families.tiny_for("google/rembert") == "tiny-rembert"
    for name in FAMILIES + ["tiny-xlmr-m"]:
        assert tiny_families.tiny_for(name) == name
    with pytest.raises(ValueError, match="valid models: distilmbert, mbert, .*tiny-bert"):
        tiny_families.tiny_for("bert-large-cased")


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_model_builds_and_loads_by_name_like_its_hub_model(fam, name):
    path, tok = fam[name]
    model_type, enc_class, kind = EXPECTED[name]
    assert type(tok.backend_tokenizer.model).__name__ == kind
    assert name in tiny_families.FAMILY_MODELS.values()     # it stands for a family of the ladder
    net, report = models.build(path, {"c": ("classification", 2)})
    assert net.encoder.config.model_type == model_type and type(net.encoder).__name__ == enc_class
    assert set(report.loaded) == set(net.encoder.state_dict()) and report.initialized == sorted(
        f"heads.{k}" for k in net.heads.state_dict())
    if name == "tiny-mt5":   # encoder-decoder checkpoint: the decoder and its LM head are left in the checkpoint
        assert not any("decoder" in k for k in net.encoder.state_dict())
        assert any(k.startswith("decoder.") for k in report.unused)


# ---------------------------------------------------------------- heads
@pytest.mark.parametrize("name", FAMILIES)
def test_every_head_type_trains_forward_and_backward_from_real_features(world, fam, name):
    path, tok = fam[name]
    tds = [_task(world, tok, task) for task, _ in HEAD_TASKS]
    heads = runs._heads(tds, tok)
    assert [heads[td.name][0] for td in tds] == [tt for _, tt in HEAD_TASKS]
    mlm = tok.mask_token_id is not None
    if mlm:
        heads["mlm"] = ("mlm", 0)
    net, _ = models.build(path, heads, seed=1)
    for td in tds:
        batch = features.collate(td.train[:4], tok.pad_token_id, multiple_of=1)
        net.zero_grad()
        out = net(td.name, batch)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]), td.name
        grad = net.encoder.get_input_embeddings().weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"{td.name}: no gradient reached the encoder"
    if mlm:   # '+mlm' co-training: masked batches from MLM text
        feats = features.mlm_features(["anna garcia alpha bravo", "kilo3 quiz same right"], tok, 32)
        batch = features.collate(feats, tok.pad_token_id, multiple_of=1)
        batch["input_ids"], batch["labels"] = features.mask_tokens(batch["input_ids"], tok,
                                                                   torch.Generator().manual_seed(0), prob=0.5)
        out = net("mlm", batch)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["logits"].shape[-1] == len(tok)


def test_mlm_co_training_fails_fast_on_the_mt5_encoder(fam):
    """The mT5 tokenizer has no mask token (span-corruption pre-training): '+mlm' fails in one sentence."""
    _, tok = fam["tiny-mt5"]
    with pytest.raises(ValueError, match=r"needs a tokenizer with a mask token .* drop '\+mlm'"):
        features.mlm_features(["some text here"], tok)


# ---------------------------------------------------------------- token types
def _eval_logits(net, head, batch):
    net.eval()
    with torch.no_grad():
        return net(head, batch)["logits"]


@pytest.mark.parametrize("name", FAMILIES)
def test_token_type_ids_reach_the_encoders_that_have_them_and_only_those(world, fam, name):
    path, tok = fam[name]
    net, _ = models.build(path, {"mnli": ("pair_classification", 3), "hellaswag": ("multiple_choice", 0),
                                 "squad": ("span_qa", 0)}, seed=1)
    for task in ("mnli", "hellaswag", "squad"):
        td = _task(world, tok, task)
        batch = features.collate(td.train[:4], tok.pad_token_id, multiple_of=1)
        if name in TOKEN_TYPES:
            assert "token_type_ids" in batch and batch["token_type_ids"].max() == 1, task
            assert batch["token_type_ids"].shape == batch["input_ids"].shape
            assert batch["token_type_ids"][batch["attention_mask"] == 0].sum() == 0   # padding: segment 0
            zeroed = {**batch, "token_type_ids": torch.zeros_like(batch["token_type_ids"])}
            assert not torch.allclose(_eval_logits(net, task, batch), _eval_logits(net, task, zeroed)), \
                f"{name} {task}: second-segment token types changed nothing"
        else:   # never passed: segment ids of ones (as a BERT tokenizer would give) change nothing, and do not crash
            ones = {**batch, "token_type_ids": batch["attention_mask"].clone()}
            assert torch.equal(_eval_logits(net, task, batch), _eval_logits(net, task, ones))


def test_token_types_reach_the_encoder_in_training_and_evaluation_alike(world, fam, tmp_path):
    """train.py and evaluation.predict both collate features: the encoder sees the second segment as type 1."""
    from xfer_utils import evaluation
    path, tok = fam["tiny-bert"]
    td = _task(world, tok, "mnli")
    net, _ = models.build(path, runs._heads([td], tok), seed=1)
    seen = []
    net.encoder.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("token_type_ids")), with_kwargs=True)
    cfg = train.TrainConfig(lr=1e-3, max_steps=1, batch_size=4, eval_every=0, checkpoint_every=0, patience=0)
    td.dev = None
    train.train(net, tok, [td], cfg, tmp_path / "ck", progress=False, log=lambda m: None)
    dev = data.load("mnli", "validation", "en", data_dir=world["data"], max_examples=8, seed=1)
    feats = features.build("pair_classification", dev, tok, 64, train=False)
    evaluation.predict(net, "mnli", "pair_classification", feats, tok.pad_token_id, batch_size=8)
    assert len(seen) >= 2 and all(t is not None and int(t.max()) == 1 for t in seen)


# ---------------------------------------------------------------- pooling
@pytest.mark.parametrize("name", FAMILIES)
def test_sentence_heads_pool_the_first_token_or_the_mean_for_t5(world, fam, name, tmp_path):
    """The classifier reads [CLS]/<s> (h[:, 0]) for every family but T5, which has no summary token and mean-pools
    over the attention mask; the choice follows config.model_type, so a saved encoder folder keeps it."""
    path, tok = fam[name]
    td = _task(world, tok, "mnli")
    net, _ = models.build(path, {"mnli": ("pair_classification", 3)}, seed=1)
    batch = features.collate(td.train[:4], tok.pad_token_id, multiple_of=1)
    assert (batch["attention_mask"] == 0).any(), "the batch needs padding for the test to bite"
    logits = _eval_logits(net, "mnli", batch)
    with torch.no_grad():
        h = net.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        **({"token_type_ids": batch["token_type_ids"]} if net.token_types else {})).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1) if name == "tiny-mt5" else h[:, 0]
        head = net.heads["mnli"]
        want = head.out(torch.tanh(head.dense(pooled)))
    torch.testing.assert_close(logits, want)
    assert models.pooling(net.encoder.config) == ("mean" if name == "tiny-mt5" else "first")
    saved = models.save_encoder(net, tok, tmp_path / "enc")
    again, _ = models.build(str(saved), {"x": ("classification", 2)})
    assert again.heads["x"].pooling == net.heads["mnli"].pooling


# ---------------------------------------------------------------- encoder round trip
@pytest.mark.parametrize("name", FAMILIES)
def test_encoder_save_load_round_trip_is_exact(world, fam, name, tmp_path):
    path, tok = fam[name]
    net, _ = models.build(path, {"a": ("pair_classification", 3)}, seed=1)
    with torch.no_grad():                           # stand-in for training: move every encoder weight
        for p in net.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    saved = models.save_encoder(net, tok, tmp_path / "encoder")
    again, report = models.build(str(saved), {"b": ("classification", 2)}, seed=2)
    assert type(again.encoder) is type(net.encoder)
    assert set(report.loaded) == set(again.encoder.state_dict()) and not report.unused
    assert report.initialized == sorted(f"heads.{k}" for k in again.heads.state_dict())
    batch = features.collate(_task(world, tok, "mnli").train[:4], tok.pad_token_id, multiple_of=1)
    kw = {"token_type_ids": batch["token_type_ids"]} if net.token_types else {}
    net.eval(), again.eval()
    with torch.no_grad():
        a = net.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw).last_hidden_state
        b = again.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw).last_hidden_state
    assert torch.equal(a, b)


# ---------------------------------------------------------------- memory strategies: LoRA, FSDP wrap unit
@pytest.mark.parametrize("name", FAMILIES)
def test_lora_adapts_the_attention_of_every_layer_and_trains_only_adapters_and_heads(world, fam, name, tmp_path):
    """The planner's 'lora' strategy (adapters + gradient checkpointing, launch.strategy_options) on each family."""
    pytest.importorskip("peft")
    path, tok = fam[name]
    td = _task(world, tok, "mnli")
    net, _ = models.build(path, runs._heads([td], tok), seed=1)
    n_layers = embeddings.num_layers(net.encoder)
    frozen = {n: p.detach().clone() for n, p in net.encoder.named_parameters()}
    launch.add_lora(net, rank=4)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("heads.") for n in trainable), trainable
    adapted = {n.rsplit(".lora_A", 1)[0] for n in trainable if ".lora_A" in n}
    assert len(adapted) == 4 * n_layers, sorted(adapted)     # q, k, v and the output projection of every layer
    td.dev = None
    options = {k: v for k, v in launch.strategy_options("lora").items() if k != "lora_rank"}   # + checkpointing
    cfg = train.TrainConfig(lr=1e-2, max_steps=2, batch_size=4, eval_every=0, checkpoint_every=0, patience=0,
                            **options)
    assert cfg.gradient_checkpointing
    train.train(net, tok, [td], cfg, tmp_path / "ck", progress=False, log=lambda m: None)
    lora_b = [p for n, p in net.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b), "the adapters did not train (B starts at 0)"
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
            for n, p in net.encoder.named_parameters() if "lora_" not in n}
    assert all(torch.equal(base[n], v) for n, v in frozen.items()), "a frozen encoder weight moved"
    batch = features.collate(td.train[:4], tok.pad_token_id, multiple_of=1)
    before = _eval_logits(net, "mnli", batch)
    launch.merge_lora(net)                                    # what is saved for the next phase: a plain encoder
    assert not any("lora_" in n for n, _ in net.named_parameters())
    torch.testing.assert_close(_eval_logits(net, "mnli", batch), before, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_fsdp_wrap_class_is_the_transformer_block_of_the_loaded_encoder(fam, name):
    path, _ = fam[name]
    cls = launch.layer_class(path)
    enc = models.load_pretrained_encoder(path)
    blocks = [m for m in enc.modules() if type(m).__name__ == cls]
    assert cls and len(blocks) == embeddings.num_layers(enc), (cls, len(blocks))


# ---------------------------------------------------------------- retrieval layers
@pytest.mark.parametrize("name", FAMILIES)
def test_retrieval_layers_are_hidden_states_indices_of_every_family(fam, name):
    """layer=k is hidden_states[k] (0 = embedding output .. num_layers); the early-stopping capture equals the full
    forward pass at every k, and num_layers + 1 is refused."""
    path, tok = fam[name]
    enc = models.load_pretrained_encoder(path).eval()
    texts = ["anna garcia alpha", "kilo3 quiz same right bravo paris"]
    n = embeddings.num_layers(enc)
    enc_in = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = enc(**{k: v for k, v in enc_in.items() if k != "token_type_ids"}, output_hidden_states=True).hidden_states
    assert len(hs) == n + 1
    m = enc_in["attention_mask"].unsqueeze(-1).float()
    for k in range(n + 1):
        want = ((hs[k] * m).sum(1) / m.sum(1)).numpy()
        want /= (want ** 2).sum(1, keepdims=True) ** 0.5
        got = embeddings.embed(enc, tok, texts, layer=k, progress=False)
        assert abs(got - want).max() < 1e-5, (name, k)
    with pytest.raises(ValueError, match=f"between 0 .* and {n}"):
        embeddings.embed(enc, tok, texts, layer=n + 1, progress=False)


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("name", ["tiny-bert", "tiny-mt5"])
def test_a_non_xlmr_family_learns_a_pair_task(world, fam, name, tmp_path):
    """English NLI (3 labels, chance 33.3) on the fixture signal (a label marker word in the hypothesis)."""
    path, tok = fam[name]
    td = runs._task_data("mnli", "en", tok, world["data"], -1, 48, 1, 128)
    net, _ = models.build(path, runs._heads([td], tok), seed=1)
    cfg = train.TrainConfig(lr=3e-3, epochs=100, max_steps=100, batch_size=16, eval_every=100, patience=0,
                            checkpoint_every=0, seed=1)
    res = train.train(net, tok, [td], cfg, tmp_path / "ck", progress=False, log=lambda m: None)
    print(f"{name} mnli dev accuracy after 100 steps: {res.best_score:.1f}")
    assert res.best_score > 33.3 + 30, res.best_score
