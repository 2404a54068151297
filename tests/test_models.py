"""Encoder-only transfer between phases, and the load report the notebooks print."""
import torch

from xfer_utils import models


def test_heads_are_fresh_and_the_encoder_is_carried_over(world, tokenizer, tmp_path):
    base = str(world["tiny-xlmr-s"])
    phase1, _ = models.build(base, {"mnli": ("pair_classification", 3), "squad": ("span_qa", 0)}, seed=3)
    with torch.no_grad():                      # stand-in for phase-1 training: move every encoder weight
        for p in phase1.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    enc_dir = models.save_encoder(phase1, tokenizer, tmp_path / "encoder")
    assert not any("heads" in p.name for p in enc_dir.iterdir())

    target, report = models.build(str(enc_dir), {"xnli": ("pair_classification", 3)}, seed=7)
    fresh, _ = models.build(base, {"xnli": ("pair_classification", 3)}, seed=7)
    for k, v in target.encoder.state_dict().items():
        assert torch.equal(v, phase1.encoder.state_dict()[k]), f"encoder tensor {k} was not carried over"
    for k, v in target.heads.state_dict().items():
        assert torch.equal(v, fresh.heads.state_dict()[k]), f"head tensor {k} is not a fresh initialisation"
    # The report lists exactly the head keys as initialised, and every encoder tensor as loaded.
    assert report.initialized == sorted(f"heads.{k}" for k in target.heads.state_dict())
    assert set(report.loaded) == set(target.encoder.state_dict())
    assert "mnli" not in str(report) and "heads.xnli.out.weight" in str(report)


def test_raw_checkpoint_report_names_the_unused_mlm_head(world):
    _, report = models.build(str(world["tiny-xlmr-s"]), {"udpos": ("tagging", 17)})
    assert report.unused and all(k.startswith("lm_head") for k in report.unused)
    assert report.initialized == ["heads.udpos.out.bias", "heads.udpos.out.weight"]


def test_every_head_type_runs_forward_and_backward(world, tokenizer):
    heads = {"c": ("pair_classification", 3), "r": ("regression", 0), "m": ("multiple_choice", 0),
             "q": ("span_qa", 0), "t": ("tagging", 5), "mlm": ("mlm", 0)}
    net, _ = models.build(str(world["tiny-xlmr-s"]), heads)
    ids = torch.randint(5, 100, (2, 9))
    mask = torch.ones_like(ids)
    batches = {"c": {"labels": torch.tensor([0, 2])}, "r": {"labels": torch.tensor([0.5, 4.0])},
               "m": {"labels": torch.tensor([1, 0])}, "t": {"labels": torch.randint(0, 5, (2, 9))},
               "q": {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 2])},
               "mlm": {"labels": torch.randint(5, 100, (2, 9))}}
    for name, extra in batches.items():
        x = {"input_ids": ids, "attention_mask": mask, **extra}
        if name == "m":
            x["input_ids"], x["attention_mask"] = ids.view(2, 1, 9).expand(2, 3, 9), mask.view(2, 1, 9).expand(2, 3, 9)
        out = net(name, x)
        out["loss"].backward()
        assert torch.isfinite(out["loss"])
        if name == "m":
            assert out["logits"].shape == (2, 3)     # one score per choice


def test_unloadable_model_names_the_offline_options():
    import pytest
    with pytest.raises(OSError, match="xfer tiny"):
        models.load_pretrained_encoder("/no/such/checkpoint")
