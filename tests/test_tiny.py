"""The offline world: deterministic, loadable like a hub checkpoint, and carrying a cross-lingual signal."""
import json

import pytest

from xfer_utils import data
from xfer_utils.world import tiny


def test_tiny_model_round_trips_through_from_pretrained(world, tmp_path):
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(world["tiny-xlmr-s"])
    assert type(tok).__name__ == "XLMRobertaTokenizer"
    # XLM-R's special-token layout: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1
    mlm = AutoModelForMaskedLM.from_pretrained(world["tiny-xlmr-s"])
    mlm.save_pretrained(tmp_path)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(mlm.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    enc = AutoModel.from_pretrained(world["tiny-xlmr-m"])
    assert enc.config.num_hidden_layers == 4 and enc.config.hidden_size == 64
    ids = tok(["quiz alpha", "Ein Satz"], padding=True, return_tensors="pt")
    assert enc(**ids).last_hidden_state.shape[:2] == ids["input_ids"].shape


def test_pair_encoding_is_xlmr_shaped(tokenizer):
    enc = tokenizer("a b", "c")
    toks = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert toks[0] == "<s>" and toks[-1] == "</s>" and toks.count("</s>") == 3   # <s> A </s></s> B </s>


def test_world_is_deterministic(tmp_path):
    a = tiny.build_data(tmp_path / "a", seed=5, sizes={"train": 8, "validation": 4, "test": 4})
    b = tiny.build_data(tmp_path / "b", seed=5, sizes={"train": 8, "validation": 4, "test": 4})
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    import pyarrow.parquet as pq
    for rel in fa:
        if rel.suffix == ".parquet":
            assert pq.read_table(a / rel).to_pylist() == pq.read_table(b / rel).to_pylist(), rel


def test_the_signal_is_the_same_in_every_language(world):
    """NLI: the label marker in sentence 2 decides the label in English and in Thai alike (that is what makes
    zero-shot transfer possible in the tiny world); the fillers differ by script."""
    for lg in ("en", "th", "ru"):
        ds = data.load("xnli", "test", lg, data_dir=world["data"])
        for b, y in zip(ds["text_b"], ds["label"]):
            present = [k for k, m in enumerate(tiny.LABEL_MARKERS[:3]) if m in b.split()]
            assert present == [y]
    th = data.load("xnli", "test", "th", data_dir=world["data"])["text_a"][0]
    assert all("\u0e00" <= ch <= "\u0e7f" or ch == " " for ch in th)   # Thai script fillers


@pytest.mark.slow
def test_cli_builds_the_world(tmp_path, capsys):
    # what `xfer tiny DIR` leaves behind (its speed is not asserted here: a timing on a shared machine is noise)
    from xfer_utils import cli
    assert cli.main(["tiny", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "models" / "tiny-xlmr-s" / "tokenizer.json").exists()
    assert json.loads((tmp_path / "w" / "world.json").read_text())["models"] == list(tiny.MODEL_SIZES)
