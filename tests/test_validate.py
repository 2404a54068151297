"""Plan-time value validation (xfer_utils/runner/validate.py): every bad value fails in `runner.run_plan` before any
notebook executes (no kernel started, no run folder created), in one sentence naming the valid choices; the phase
functions of runs.py call the same validator at their start."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xfer_utils.runner import plans, execute as runner, validate
from xfer_utils.phases import runs
from xfer_utils import tasks

REPO = Path(__file__).resolve().parents[1]
NB = {k: str(REPO / "notebooks" / f"{v}.ipynb") for k, v in
      (("intermediate", "10_intermediate"), ("target", "20_target"), ("retrieval", "30_retrieval"))}


@pytest.fixture
def no_kernel(monkeypatch):
    """Record any notebook execution: a validation failure must come before the first one."""
    started = []
    monkeypatch.setattr(runner, "execute_local", lambda plan, run: started.append(run.run_id))
    monkeypatch.delenv("XFER_BUCC_PATH", raising=False)
    monkeypatch.delenv("XFER_CHECKPOINTS", raising=False)
    return started


def _plan(tmp_path, phases: dict, defaults: dict | None = None) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"name": "bad", "defaults": {"model": "tiny-xlmr-s", "data_dir": "tiny",
                                                             **(defaults or {})}, "phases": phases}))
    return p


def _target(**grid):
    return {"target": {"notebook": NB["target"], "grid": {"intermediate": "none", "target_task": "xnli", **grid}}}


def _retrieval(**grid):
    return {"retrieval": {"notebook": NB["retrieval"], "grid": {"intermediate": "none", "task": "tatoeba", **grid}}}


def _intermediate(label):
    return {"intermediate": {"notebook": NB["intermediate"], "grid": {"intermediate": label}}}


def _fails_before_any_kernel(tmp_path, no_kernel, plan: Path, *needles: str):
    outputs = tmp_path / "outputs"
    with pytest.raises(ValueError) as e:
        runner.run_plan(plan, outputs=outputs, out=lambda *a: None)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    assert msg.count(". ") == 0 and "\n" not in msg     # one sentence
    assert no_kernel == [] and not outputs.exists()       # nothing executed, no run folder created
    return msg


TRAINABLE = "mlqa, panx, pawsx, stsb_cross, stsb_multi_mt, tydiqa, udpos, xcopa, xnli, xquad"
INTERMEDIATE = ", ".join(n for n in tasks.PUBLIC if tasks.get(n).family == "intermediate")


def test_unknown_target_task(tmp_path, no_kernel):
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _target(target_task="xnlii")),
                             "target_task 'xnlii' is not a trainable target task", f"valid target tasks: {TRAINABLE}")


def test_retrieval_task_as_target_and_unknown_retrieval_task(tmp_path, no_kernel):
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _target(target_task="bucc2018")),
                             "'bucc2018' is not a trainable target task", TRAINABLE)
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _retrieval(task="bucc")),
                             "task 'bucc' is not a retrieval task; valid tasks: bucc2018, tatoeba")


def test_unknown_language(tmp_path, no_kernel):
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _target(languages=[["de", "xx"]])),
                             "task 'xnli' has no language 'xx'", "valid languages: ar, bg, de")
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _retrieval(languages=[["qq"]])),
                             "task 'tatoeba' has no language 'qq'; valid languages: ar, he")


def test_unknown_benchmark(tmp_path, no_kernel):
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _target(benchmark="xtreme-x")),
                             "unknown benchmark 'xtreme-x'; valid benchmarks: xtreme, xtreme-r")


@pytest.mark.parametrize("label, needles", [
    ("mnli+nope", ["intermediate 'mnli+nope': unknown intermediate task 'nope'", f"valid tasks: {INTERMEDIATE}"]),
    ("multitask+nope", ["unknown intermediate task 'nope'", INTERMEDIATE]),
    ("nope+mlm", ["unknown intermediate task 'nope'", INTERMEDIATE]),
    ("mnli@xx", ["task 'mnli_mt' has no language 'xx'; valid languages: ar, bg, de"]),
    ("squad@de", ["no translated data for 'squad'; translated variants exist for: mnli"]),
    ("tatoeba", ["'tatoeba' is a retrieval task and cannot be trained"]),
    ("none", ["intermediate 'none' has nothing to train", INTERMEDIATE]),
    ("", ["intermediate '' is empty", "'multitask'", "'mnli@<lang>'"]),
])
def test_bad_intermediate_labels(tmp_path, no_kernel, label, needles):
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _intermediate(label)), *needles)


def test_bad_label_downstream_of_a_good_one(tmp_path, no_kernel):
    # a target run's label is checked too ('none' allowed there): the typo fails before the good runs start
    phases = {**_intermediate(["mnli"]),
              "target": {"notebook": NB["target"], "needs": "intermediate",
                         "grid": [{"intermediate": "mnli", "target_task": "xnli"},
                                  {"intermediate": "none", "target_task": "xnli"},
                                  {"intermediate": "mnli@zz", "target_task": "xnli"}]}}
    phases["intermediate"]["grid"]["intermediate"] = ["mnli", "mnli@zz"]
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, phases),
                             "'mnli@zz'", "valid languages")


def test_good_labels_of_the_whole_grammar_pass():
    for label in ("mnli", "mnli+squad", "multitask", "multitask+mlm", "mnli+mlm", "mnli@de", "anli_plus+ccg"):
        validate.check_run("intermediate", {"intermediate": label}, corpora=False)
        validate.check_run("target", {"intermediate": label, "target_task": "xnli"})
    validate.check_run("target", {"intermediate": "none", "target_task": "udpos", "languages": ["lt"]})


@pytest.mark.parametrize("model", ["no such model", "models/never/built", "xlm-roberta-huge", "/nonexistent/ckpt"])
def test_unknown_model(tmp_path, no_kernel, model):
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _target(model=model)),
                             f"model {model!r} is neither a hub id (org/name)", "tiny-xlmr-s", "xlmr-large",
                             "any hub id, or a checkpoint folder")


def test_good_model_names_pass(tmp_path):
    for m in ("FacebookAI/xlm-roberta-large", "google/mt5-xxl", "tiny-xlmr-m", "xlm-roberta-base", "mbert",
              str(tmp_path)):
        validate.check_model(m)


def test_phase_cycle(tmp_path, no_kernel):
    phases = {"a": {"notebook": NB["target"], "after": "b"}, "b": {"notebook": NB["target"], "after": "a"}}
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, phases), "depend on each other in a cycle")


def test_bucc_without_corpus_says_where_to_get_it(tmp_path, no_kernel):
    msg = _fails_before_any_kernel(tmp_path, no_kernel,
                                   _plan(tmp_path, _retrieval(task="bucc2018"), {"data_dir": ""}),
                                   "bucc2018 needs the original BUCC 2018 corpora",
                                   "https://comparable.limsi.fr/bucc2018/", "XFER_BUCC_PATH", "bucc_proxy: true")
    assert msg.startswith("run 'none__bucc2018' (phase 'retrieval'): ")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails_before_any_kernel(tmp_path, no_kernel,
                             _plan(tmp_path, _retrieval(task="bucc2018", bucc_path=str(empty)), {"data_dir": ""}),
                             f"the BUCC 2018 folder {empty} lacks de-en.sample.de", "bucc_proxy: true")


def test_mlm_text_source(tmp_path, no_kernel):
    phases = {"intermediate": {"notebook": NB["intermediate"], "params": {"mlm_text": str(tmp_path / "nowhere")},
                               "grid": {"intermediate": "mnli+mlm"}}}
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, phases), f"mlm_text '{tmp_path / 'nowhere'}'",
                             "valid: 'wikipedia', a folder of <lang>.txt files")
    for source, data_dir in (("wikipedia", ""), ("", "tiny"), (str(tmp_path), "")):
        validate.check_run("intermediate", {"intermediate": "mnli+mlm", "mlm_text": source, "data_dir": data_dir})


@pytest.mark.parametrize("model", ["google/mt5-xl", "mt5-base", "tiny-mt5"])
def test_mlm_co_training_on_an_mt5_encoder_fails_at_plan_time(tmp_path, no_kernel, model):
    """mT5's tokenizer has no mask token: features.require_mask_token would stop the run at its first batch; the
    plan is refused before any run starts. The same label on an encoder with a mask token passes."""
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _intermediate("mnli+mlm"), {"model": model}),
                             "needs a tokenizer with a mask token", model, "drop '+mlm'")
    validate.check_run("intermediate", {"intermediate": "mnli", "model": model}, corpora=False)
    validate.check_run("intermediate", {"intermediate": "mnli+mlm", "model": "google-bert/bert-base-multilingual-cased"},
                       corpora=False)


def test_ccg_without_its_corpus(tmp_path, no_kernel, monkeypatch):
    monkeypatch.delenv("XFER_CCG_PATH", raising=False)
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _intermediate("mnli+ccg"), {"data_dir": ""}),
                             "ccg data is not on the hub and XFER_CCG_PATH is not set",
                             "train.tsv, dev.tsv, test.tsv", "LDC2005T13")
    monkeypatch.setenv("XFER_CCG_PATH", str(tmp_path))
    _fails_before_any_kernel(tmp_path, no_kernel, _plan(tmp_path, _intermediate("multitask"), {"data_dir": ""}),
                             f"{tmp_path} lacks train.tsv, dev.tsv, test.tsv")


def test_bucc_proxy_opt_in_and_user_variable_pass_validation(tmp_path, monkeypatch):
    monkeypatch.delenv("XFER_BUCC_PATH", raising=False)
    p = plans.validate(plans.expand(_plan(tmp_path, _retrieval(task="bucc2018", bucc_proxy=True), {"data_dir": ""}),
                                    tmp_path / "o"))
    validate.check_plan(p)
    corpus = tmp_path / "bucc"
    corpus.mkdir()
    for lg in tasks.languages("bucc2018"):
        for part in ("sample", "training"):
            for ext in (lg, "en", "gold"):
                (corpus / f"{lg}-en.{part}.{ext}").write_text("")
    monkeypatch.setenv("XFER_BUCC_PATH", str(corpus))
    p = plans.validate(plans.expand(_plan(tmp_path, _retrieval(task="bucc2018"), {"data_dir": ""}), tmp_path / "o"))
    validate.check_plan(p)
    assert validate.bucc_corpus("", "") == corpus


# the first missing user corpus each plan reports (paper: CCGbank, trained before BUCC is mined; quick: BUCC;
# rq_data: the LASER Tatoeba files of XTREME-R's extra languages)
NEEDS_USER_DATA = {"paper": "ccg data is not on the hub and XFER_CCG_PATH is not set", "quick": "comparable.limsi.fr",
                   "rq_data": "XFER_TATOEBA_PATH is not set; set XFER_TATOEBA_PATH to the folder holding tatoeba.aze"}


def test_shipped_plans_have_valid_values(monkeypatch):
    """Every shipped plan passes; those that need data from a user path say which without it; smoke finds the
    tiny world's own corpora."""
    for var in ("XFER_BUCC_PATH", "XFER_CCG_PATH", "XFER_TATOEBA_PATH", "XFER_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    for path in sorted((REPO / "params" / "plans").glob("*.yaml")):
        plan = plans.validate(plans.expand(path, REPO / "outputs"))
        real_world = REPO / ".cache" / "real"
        if path.stem == "smoke_real" and not (real_world / "world.json").exists():
            if not (real_world / "models").is_dir():     # (a folder without world.json: a build in progress)
                with pytest.raises(ValueError, match="'.cache/real/models/tiny-xlmr-s' is neither a hub id"):
                    validate.check_plan(plan, corpora=False)    # its world is built first (make smoke-real)
            continue
        validate.check_plan(plan, corpora=False)
        bucc = [r for r in plan.runs if r.resolved.get("task") == "bucc2018"]
        if path.stem == "smoke":
            validate.check_plan(plan)
            assert bucc and all(not r.resolved.get("bucc_proxy") for r in bucc)
        elif path.stem in NEEDS_USER_DATA:
            with pytest.raises(ValueError, match=NEEDS_USER_DATA[path.stem]):
                validate.check_plan(plan)
        else:
            validate.check_plan(plan)


def test_phase_functions_use_the_same_validator(tmp_path, monkeypatch):
    """A notebook run by hand fails the same way, before it loads a model or data."""
    monkeypatch.delenv("XFER_BUCC_PATH", raising=False)
    kw = dict(run_id="r", plan="p", run_dir=str(tmp_path / "r"), checkpoint_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=f"valid target tasks: {TRAINABLE}"):
        runs.target("tiny-xlmr-s", "xnlii", **kw)
    with pytest.raises(ValueError, match="unknown intermediate task 'nope'"):
        runs.intermediate("tiny-xlmr-s", "mnli+nope", **kw)
    with pytest.raises(ValueError, match="comparable.limsi.fr"):
        runs.retrieval("tiny-xlmr-s", "bucc2018", data_dir="", **kw)
    with pytest.raises(ValueError, match="is neither a hub id"):
        runs.target("no such model", "xnli", **kw)
    assert not (tmp_path / "c").exists()


def test_analysis_notebook_values(tmp_path, no_kernel):
    """Notebooks without a phase function (the follow-up analyses) get their declared values checked key by key."""
    nb = str(REPO / "notebooks" / "51_rq_size.ipynb")
    for params, needle in (({"targets": ["xnli", "xcopaa"]}, "targets: unknown task 'xcopaa'; valid tasks: anli_plus"),
                           ({"benchmark": "xtreme_r"}, "unknown benchmark 'xtreme_r'; valid benchmarks: xtreme, xtreme-r")):
        p = tmp_path / "rq.yaml"
        p.write_text(yaml.safe_dump({"name": "rq", "phases": {"rq": {"notebook": nb, "params": params}}}))
        _fails_before_any_kernel(tmp_path, no_kernel, p, needle)
