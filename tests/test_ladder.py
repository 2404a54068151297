"""ladder.py and resources/models.yaml: complete, sourced, consistent counts; memory model and strategy choice;
the `xfer models` command."""
import json

import pytest

from xfer_utils import ladder

REQUIRED = ["distilmbert", "mbert", "xlmr-base", "xlmr-large", "xlmr-xl", "xlmr-xxl", "mdeberta-v3-base", "rembert",
            "mt5-small", "mt5-base", "mt5-large", "mt5-xl", "mt5-xxl", "tiny-xlmr-s", "tiny-xlmr-m"]


def test_every_model_is_there_with_sourced_counts():
    assert ladder.names() == REQUIRED
    for m in ladder.ladder():
        assert (m.hub_id is None) == m.name.startswith("tiny-"), m.name
        assert 0 < m.params_non_embedding < m.params_total, m.name
        assert m.sources["params_total_source"] and m.sources["params_non_embedding_source"]
        assert m.sources["retrieval_layer_source"]
        assert 0 < m.retrieval_layer <= m.layers
        assert "eager" not in m.attention or m.attention == ("eager",)


def test_counts_match_the_protocol_and_the_shapes():
    # docs/sources.md, Parameter counts (within rounding)
    expect = {"distilmbert": 134e6, "mbert": 178e6, "xlmr-base": 278e6, "xlmr-large": 560e6, "xlmr-xl": 3.5e9,
              "xlmr-xxl": 10.7e9, "mdeberta-v3-base": 276e6, "rembert": 575e6}
    for name, n in expect.items():
        assert ladder.get(name).params_total == pytest.approx(n, rel=0.02), name
    for name in ("mbert", "xlmr-base", "xlmr-large", "xlmr-xl", "xlmr-xxl", "rembert", "distilmbert"):
        m = ladder.get(name)
        per_layer = 4 * (m.hidden ** 2 + m.hidden) + 2 * m.hidden * m.ffn + m.ffn + m.hidden + 4 * m.hidden
        assert m.params_non_embedding == m.layers * per_layer, name
    # mT5 encoders are smaller than the published encoder-decoder sizes
    for name, full in {"mt5-small": 300e6, "mt5-base": 580e6, "mt5-large": 1.2e9, "mt5-xl": 3.7e9,
                       "mt5-xxl": 13e9}.items():
        assert 0.3 * full < ladder.get(name).params_total < 0.6 * full
    sizes = [m.params_total for m in ladder.ladder() if m.family == "xlm-roberta" and not m.local]
    assert sizes == sorted(sizes)


def test_attention_kernels_follow_transformers_flags():
    for name in ("mbert", "distilmbert", "xlmr-base", "xlmr-large", "xlmr-xl", "xlmr-xxl"):
        assert {"sdpa", "flash_attention_2"} <= set(ladder.get(name).attention)
    for name in ("mt5-small", "mt5-xxl"):
        m = ladder.get(name)
        assert "sdpa" in m.attention and "flash_attention_2" not in m.attention
    for name in ("mdeberta-v3-base", "rembert"):
        assert ladder.get(name).attention == ("eager",) and ladder.get(name).eager_only
        assert ladder.get(name).best_attention == "eager"
    assert ladder.get("xlmr-large").retrieval_layer == 14 and ladder.get("mbert").retrieval_layer == 8


@pytest.mark.parametrize("name,expected", [("xlm-roberta-large", "xlmr-large"),
                                           ("FacebookAI/xlm-roberta-base", "xlmr-base"),
                                           ("google/mt5-xl", "mt5-xl"), ("/ckpt/models/tiny-xlmr-s/", "tiny-xlmr-s"),
                                           ("bert-base-multilingual-cased", "mbert"), ("RemBERT", "rembert")])
def test_lookup_by_alias_hub_id_or_path(name, expected):
    assert ladder.get(name).name == expected


def test_lookup_unknown():
    assert ladder.lookup("gpt2") is None
    with pytest.raises(ValueError, match="valid models: distilmbert"):
        ladder.get("gpt2")


def test_tiny_models_match_the_tiny_world():
    tiny = pytest.importorskip("xfer_utils.world.tiny")
    for name, cfg in tiny.MODEL_SIZES.items():
        m = ladder.get(name)
        assert (m.hidden, m.layers, m.heads, m.ffn) == (cfg["hidden_size"], cfg["num_hidden_layers"],
                                                        cfg["num_attention_heads"], cfg["intermediate_size"])


def test_memory_model_orders_strategies():
    for name in ("xlmr-large", "xlmr-xl", "mt5-xxl", "rembert"):
        full = ladder.estimate_memory_gb(name, "full")
        ckpt = ladder.estimate_memory_gb(name, "grad_checkpointing")
        eight = ladder.estimate_memory_gb(name, "adam8bit")
        lora = ladder.estimate_memory_gb(name, "lora")
        assert full > ckpt > eight > lora, name
        assert ladder.estimate_memory_gb(name, "fsdp", n_gpus=8) < ladder.estimate_memory_gb(name, "fsdp", n_gpus=2)
    # states dominate for big models: ~18 bytes/param (docs/sources.md, Memory: XLM-R XL 63 GB of states)
    assert 63 < ladder.estimate_memory_gb("xlmr-xl", "grad_checkpointing") < 80
    assert ladder.estimate_memory_gb("xlmr-large", batch=32) > ladder.estimate_memory_gb("xlmr-large", batch=8)
    with pytest.raises(ValueError, match="valid strategies"):
        ladder.estimate_memory_gb("mbert", "zero3")
    with pytest.raises(ValueError, match="n_gpus >= 2"):
        ladder.estimate_memory_gb("mbert", "fsdp")


def test_fits_and_plan_strategy():
    assert ladder.fits("xlmr-base", 16) and ladder.fits("xlmr-large", 16)
    assert not ladder.fits("xlmr-xxl", 80) and not ladder.fits("xlmr-xxl", 80, strategy="fsdp")
    assert ladder.fits("xlmr-xxl", 80, n_gpus=4, strategy="fsdp")
    assert ladder.plan_strategy("mbert", 16).strategy == "full"
    assert ladder.plan_strategy("rembert", 16).strategy == "grad_checkpointing"   # eager attention scores
    assert ladder.plan_strategy("xlmr-xl", 80).strategy == "full"
    assert ladder.plan_strategy("xlmr-xl", 40).strategy == "lora"
    p = ladder.plan_strategy("xlmr-xxl", 80, n_gpus=4)
    assert (p.strategy, p.n_gpus) == ("fsdp", 4) and "accelerate launch" in p.launch
    p = ladder.plan_strategy("xlmr-xxl", 80)
    assert p.strategy == "lora" and p.requires == "peft"
    assert ladder.plan_strategy("xlmr-xxl", 8).strategy == "none"


def test_table_and_params_table():
    rows = ladder.table()
    assert [r["model"] for r in rows] == REQUIRED
    assert {f"plan_{g}gb" for g in ladder.GPU_SIZES} <= set(rows[0])
    pt = ladder.params_table()
    assert list(pt["ladder_name"]) == REQUIRED and (pt["log10_params_total"] > 5).all()


def test_cli_models(capsys):
    from xfer_utils import cli
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in REQUIRED) and "16G" in out and "80G" in out
    assert cli.main(["models", "--plan", "--gpu-mem", "80", "--gpus", "4", "--json"]) == 0
    plans = {p["model"]: p for p in json.loads(capsys.readouterr().out)}
    assert plans["xlmr-xxl"]["strategy"] == "fsdp" and plans["mbert"]["strategy"] == "full"
    assert cli.main(["models", "--plan", "--gpu-mem", "24"]) == 0
    assert "lora" in capsys.readouterr().out
