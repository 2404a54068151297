"""The registry against the official lists: XTREME's TASK2LANGS and XTREME-R's (google-research/xtreme evaluate.py;
docs/sources.md, XTREME tasks and languages)."""
import json

import pytest

from xfer_utils import cli, tasks

# Independent transcription of google-research/xtreme evaluate.py (XTREME_TASK2LANGS), as sets.
XTREME = {
    "pawsx": "de en es fr ja ko zh",
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh",
    "panx": "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw yo my "
            "zh kk tr et fi hu",
    "udpos": "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh",
    "bucc2018": "de fr ru zh",
    "tatoeba": "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw zh kk tr et "
               "fi hu",
    "xquad": "en es de el ru tr ar vi th zh hi",
    "mlqa": "en es de ar hi vi zh",
    "tydiqa": "en ar bn fi id ko ru sw te",
}
XTREME_R_EXTRA = {"udpos": "lt pl uk wo ro", "panx": "qu pl uk az lt pa gu ro", "xquad": "ro",
                  "tatoeba": "az lt pl uk ro"}
XCOPA = "et ht id it qu sw ta th tr vi zh"
PAPER_INTERMEDIATE = {"anli_plus", "mnli", "qqp", "sst2", "squad", "hellaswag", "cosmosqa", "commonsenseqa", "ccg"}
COUNTS = {"pawsx": 7, "xnli": 15, "panx": 40, "udpos": 33, "bucc2018": 4, "tatoeba": 36, "xquad": 11, "mlqa": 7,
          "tydiqa": 9}


@pytest.mark.parametrize("task", sorted(XTREME))
def test_xtreme_languages_are_the_official_lists(task):
    assert set(tasks.languages(task, "xtreme")) == set(XTREME[task].split())
    assert len(tasks.languages(task, "xtreme")) == COUNTS[task]   # no duplicates


@pytest.mark.parametrize("task", ["xnli", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba"])
def test_xtreme_r_languages_add_the_official_extras(task):
    want = set(XTREME[task].split()) | set(XTREME_R_EXTRA.get(task, "").split())
    assert set(tasks.languages(task, "xtreme-r")) == want


def test_xtreme_r_has_xcopa_and_no_pawsx_or_bucc():
    assert set(tasks.languages("xcopa", "xtreme-r")) == set(XCOPA.split())
    assert "xtreme-r" not in tasks.get("pawsx").languages and "xtreme-r" not in tasks.get("bucc2018").languages
    assert len({lg for t in XTREME for lg in XTREME[t].split()}) == 40


def test_english_training_tasks_follow_jiant():
    # jiant xtreme_runconfig_writer.py TRAIN_TASK_DICT; XTREME-R trains XCOPA on COPA (after SIQA)
    want = {"xnli": "mnli", "pawsx": "pawsx", "udpos": "udpos", "panx": "panx", "xquad": "squad", "mlqa": "squad",
            "tydiqa": "tydiqa", "xcopa": "copa", "stsb_multi_mt": "stsb"}
    for target, train_task in want.items():
        assert tasks.get(target).train_task == (train_task, "en")
    assert tasks.get("bucc2018").train_task is None and tasks.get("tatoeba").train_task is None


def test_protocol_hyperparameters():
    # docs/sources.md, Hyper-parameters: lr 1e-5 everywhere; batch 32 (QA 16); epochs XNLI 2, PAWS-X 5, tagging 10, QA 2
    epochs = {"xnli": 2, "pawsx": 5, "udpos": 10, "panx": 10, "xquad": 2, "mlqa": 2, "tydiqa": 2}
    for t, e in epochs.items():
        hp = tasks.hyperparameters(t)
        assert hp["epochs"] == e and hp["lr"] == 1e-5 and hp["warmup"] == 0.1 and hp["weight_decay"] == 0.01
        assert hp["batch_size"] == (16 if t in ("xquad", "mlqa", "tydiqa") else 32)
        assert hp["max_length"] == (384 if t in ("xquad", "mlqa", "tydiqa") else 256)
    assert tasks.hyperparameters("tatoeba")["max_length"] == 512


def test_every_paper_intermediate_task_is_registered():
    assert PAPER_INTERMEDIATE == set(tasks.PAPER_INTERMEDIATE)
    for t in PAPER_INTERMEDIATE | {"siqa", "copa", "stsb", "squad_v2"}:
        assert tasks.get(t).family == "intermediate"
    assert tasks.get("anli_plus").components == ("anli_r1", "anli_r2", "anli_r3", "mnli", "snli")


def test_config_names_match_the_hub():
    assert tasks.config_name("udpos", "af") == "udpos.Afrikaans"      # never the README typo 'Afrikans'
    assert tasks.config_name("tatoeba", "fa") == "tatoeba.pes"
    assert tasks.config_name("tatoeba", "zh") == "tatoeba.cmn"
    assert tasks.config_name("mlqa", "de") == "MLQA.de.de"
    assert tasks.config_name("panx", "qu") == "qu"                      # XTREME-R extra from wikiann
    assert tasks.get("panx").source_for("qu").hub_id == "unimelb-nlp/wikiann"
    assert tasks.splits("udpos", "th") == ["test"] and tasks.splits("udpos", "kk") == ["train", "test"]
    assert tasks.splits("xquad", "de") == ["test"] and tasks.get("xquad").source.splits["test"] == "validation"


@pytest.mark.parametrize("call, message", [
    (lambda: tasks.get("xnlii"), "unknown task 'xnlii'; valid tasks: "),
    (lambda: tasks.check_language("xnli", "xx"), "task 'xnli' has no language 'xx'; valid languages: ar, bg"),
    (lambda: tasks.check_split("xquad", "train", "de"), "task 'xquad' (de) has no split 'train'; valid splits: test"),
    (lambda: tasks.languages("xnli", "xtreme-s"), "unknown benchmark 'xtreme-s'; valid benchmarks: xtreme, xtreme-r"),
])
def test_bad_names_fail_with_the_valid_choices(call, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_cli_tasks_json_lists_every_task(capsys):
    assert cli.main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["task"] for r in rows}
    assert PAPER_INTERMEDIATE | set(XTREME) | {"xcopa", "stsb_multi_mt", "siqa", "copa", "stsb", "squad_v2"} <= names
    by = {r["task"]: r for r in rows}
    assert by["xnli"]["languages"]["xtreme"] == tasks.languages("xnli") and by["xnli"]["train_task"] == "mnli/en"
