"""`xfer check-data`: the QA round trip and the tagging alignment on hand-made cases, the synthetic world and
(when ../shared/data is present) the real-text world against issue 9's targets."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from xfer_utils import cli, features, tasks
from xfer_utils.world import datacheck

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO  # noqa: E402
from test_realtext import SHARED, UD_LANGS, reduced_world  # noqa: E402


def _qa(contexts, answers, questions=None):
    from datasets import Dataset
    return Dataset.from_dict({"id": [str(i) for i in range(len(contexts))], "context": contexts,
                              "question": questions or ["quiz ?"] * len(contexts),
                              "answers": [{"text": [a], "answer_start": [c.lower().index(a.lower())]}
                                          for c, a in zip(contexts, answers)]})


def _tagged(sentences):
    from datasets import Dataset
    return Dataset.from_dict({"tokens": sentences, "tags": [[0] * len(s) for s in sentences]})


# ---------------------------------------------------------------- hand-made cases on the synthetic tokenizer
def test_qa_round_trip_separates_tokenization_from_truncation(tokenizer):
    words = " ".join(["alpha"] * 60)
    ds = _qa(["quiz kilo3 bravo", "quiz kilo3 bravo", f"{words} quiz lima7 end", "the kilo3 , bravo"],
             ["kilo3", "ilo", "lima7", "The kilo3"])
    r = datacheck.qa_round_trip(ds, tokenizer, max_length=384, doc_stride=128)
    # 'ilo' starts inside the word kilo3: its tokens decode to more than the answer -> lost by tokenization;
    # 'The kilo3' vs 'the kilo3': equal after SQuAD normalisation -> kept
    assert (r["total"], r["kept"], r["lost_tokenization"], r["lost_truncation"]) == (4, 3, 1, 0)
    assert r["examples"][0]["lost"] == "tokenization" and r["examples"][0]["answer"] == "ilo"
    long_answer = " ".join(["lima7"] * 40)
    ds = _qa([f"quiz {long_answer} end"], [long_answer])
    r = datacheck.qa_round_trip(ds, tokenizer, max_length=24, doc_stride=8)   # no window can hold 40+ tokens
    assert (r["kept"], r["lost_tokenization"], r["lost_truncation"]) == (0, 0, 1)
    assert r["rate"] == 0.0 and r["windows_per_example"] > 1


def test_qa_windows_keep_answers_beyond_the_first_window(tokenizer):
    ctx = " ".join(["alpha"] * 200) + " quiz kilo3 end"
    r = datacheck.qa_round_trip(_qa([ctx], ["kilo3"]), tokenizer, max_length=64, doc_stride=16)
    assert r["rate"] == 100.0 and r["windows_per_example"] > 3


def test_tagging_alignment_counts_words_without_a_labelled_subword(tokenizer):
    ds = _tagged([["quiz", "kilo3", "."], ["a", " ", "b"], ["alpha"] * 30, ["x", "q" * 40]])
    r = datacheck.tagging_alignment(ds, tokenizer, max_length=16)
    # ' ' yields no token at all (tokenization); the 30-word sentence is split into pieces (nothing lost); a word
    # longer than 16 tokens keeps its first sub-word (still one label)
    assert r["total"] == 38 and r["lost_tokenization"] == 1 and r["lost_truncation"] == 0
    assert r["kept"] == 37 and r["multi_labelled"] == 0
    feats = features.tagging(ds, tokenizer, 16)
    labelled = sum(1 for f in feats for x in f["labels"] if x != features.IGNORE)
    assert labelled == r["kept"]


# ---------------------------------------------------------------- the synthetic world and the CLI
def test_check_on_the_synthetic_world(world):
    r = datacheck.check("xquad", world["root"], languages=["en", "th", "zh"])
    assert r["task"] == "xquad" and set(r["languages"]) == {"en", "th", "zh"}
    for lg, v in r["languages"].items():
        assert v["rate"] == 100.0 and v["total"] == v["kept"] > 0 and v["source"] == "synthetic", lg
    r = datacheck.check("udpos", world["data"], languages=["en", "ja"])     # the data folder works as well
    assert all(v["rate"] == 100.0 for v in r["languages"].values())
    assert datacheck.frame(r).shape[0] == 2


def test_cli_table_json_and_errors(world, capsys):
    assert cli.main(["check-data", "--task", "udpos", "--world", str(world["root"]), "--languages", "en", "de"]) == 0
    out = capsys.readouterr().out
    assert "words with exactly one labelled sub-word" in out and "\nen " in out and "\nde " in out
    assert cli.main(["check-data", "--task", "mlqa", "--world", str(world["root"]), "--languages", "zh",
                     "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["task"] == "mlqa" and res["languages"]["zh"]["normalization"] == "mlqa"
    assert {"total", "kept", "rate", "lost_tokenization", "lost_truncation"} <= set(res["languages"]["zh"])
    assert cli.main(["check-data", "--task", "tatoeba", "--world", str(world["root"])]) == 2
    assert "span-QA and tagging" in capsys.readouterr().err
    assert cli.main(["check-data", "--task", "xquad", "--world", str(world["root"]), "--languages", "xx"]) == 2
    assert cli.main(["check-data", "--task", "xquad", "--world", str(world["root"] / "nope")]) == 2
    assert cli.main(["check-data", "--task", "xquad", "--world", str(world["root"]), "--model",
                     "tiny-xlmr-s-untrained"]) == 2          # only the real-text world keeps untrained copies
    assert "has no model" in capsys.readouterr().err


def test_notebook_is_parameterised_and_clean():
    import ast

    import nbformat
    import papermill
    path = REPO / "notebooks" / "05_data_check.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for line in params[0].source.splitlines():
        stmt = ast.parse(line).body[0]
        assert isinstance(stmt, ast.AnnAssign) and "  # " in line and line.count("=") == 1, line
        ast.literal_eval(stmt.value)
    names = set(papermill.inspect_notebook(str(path)))
    assert {"run_id", "plan", "run_dir", "checkpoint_dir", "task", "world", "model"} <= names
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None


@pytest.mark.slow
def test_notebook_runs_on_the_synthetic_world(world, tmp_path):
    import nbformat
    import papermill
    out = tmp_path / "05.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "05_data_check.ipynb"), str(out), cwd=str(REPO),
                               parameters={"task": "udpos", "world": str(world["root"]), "languages": ["en", "th"],
                                           "run_dir": str(tmp_path / "run")},
                               kernel_name="python3", progress_bar=False)
    assert (tmp_path / "run" / "data_check.png").exists()
    res = json.loads((tmp_path / "run" / "data_check.json").read_text())
    assert set(res["languages"]) == {"en", "th"}
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
    assert "all languages:" in text


# ---------------------------------------------------------------- issue 9's targets on the real text
@pytest.fixture(scope="session")
def real_world(tmp_path_factory):
    return reduced_world(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.skipif(SHARED is None, reason="../shared/data is absent")
def test_real_qa_round_trip_meets_the_target(real_world):
    r = datacheck.check("xquad", real_world["data"].parent, languages=tasks.all_languages("xquad"))
    assert len(r["languages"]) == 12
    for lg, v in r["languages"].items():
        assert v["source"] == "real" and v["total"] == 1190, lg
        assert v["rate"] >= 99.5, (lg, v["rate"], v["examples"])
    # MLQA-style test (XQuAD articles 8-47): the same few Arabic answers that start inside a word (after the
    # conjunction wa-) are lost, out of fewer questions; the 99.5% target is XQuAD's
    r = datacheck.check("mlqa", real_world["data"].parent, split="test", languages=["ar", "hi", "zh"])
    assert all(v["rate"] >= 99.0 and v["source"] == "real" for v in r["languages"].values())


@pytest.mark.slow
@pytest.mark.skipif(SHARED is None, reason="../shared/data is absent")
def test_real_tagging_alignment(real_world):
    r = datacheck.check("udpos", real_world["data"].parent, languages=UD_LANGS)
    for lg, v in r["languages"].items():
        assert v["source"] == "real" and v["lost_tokenization"] == 0 and v["multi_labelled"] == 0, lg
    # No word is lost at all at the registry's max_length: long sentences (a few very long Japanese ones) are
    # split between words as XTREME's preprocessing does, not truncated.
    assert {lg: v["rate"] for lg, v in r["languages"].items()} == {lg: 100.0 for lg in UD_LANGS}
