"""Plan files -> runs: expansion, run ids, dependencies, validation against the notebooks (no notebook runs here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xfer_utils.runner import nbparams, plans, execute as runner

FIX = Path(__file__).resolve().parent / "fixtures" / "runner"
TOY = FIX / "toy.yaml"


@pytest.fixture(autouse=True)
def _no_ckpt_env(monkeypatch):
    monkeypatch.delenv("XFER_CHECKPOINTS", raising=False)


def write_plan(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    """A plan in tmp_path whose notebooks are the fixtures (absolute paths)."""
    text = text.replace("NB_I", str(FIX / "toy_intermediate.ipynb")).replace("NB_T", str(FIX / "toy_target.ipynb")) \
               .replace("NB_R", str(FIX / "toy_results.ipynb"))
    p = tmp_path / name
    p.write_text(text)
    return p


def test_alias_and_default_ids():
    assert plans.alias("FacebookAI/xlm-roberta-large") == "xlm-roberta-large"
    assert plans.alias("xlm-roberta-base") == "xlm-roberta-base"
    assert plans.alias("/abs/path/to/My Model/") == "my-model"
    assert plans.default_run_id({"model": "FacebookAI/xlm-roberta-large", "intermediate": "mnli",
                                 "target_task": "xnli", "seed": 1}) == "xlm-roberta-large__mnli__xnli__s1"
    assert plans.default_run_id({"intermediate": "mnli+squad", "epochs": 2.0}) == "mnli+squad__epochs2.0"


def test_expand_toy_plan(tmp_path):
    plan = plans.expand(TOY, tmp_path / "outputs")
    ids = [r.run_id for r in plan.runs]
    assert ids == ["tiny-model__mnli__s1", "tiny-model__squad__s1", "tiny-model__none__xnli__s1",
                   "tiny-model__mnli__xnli__s1", "tiny-model__squad__xnli__s1", "results"]
    assert [r.phase for r in plan.runs] == ["intermediate"] * 2 + ["target"] * 3 + ["results"]
    t = plan.run("tiny-model__mnli__xnli__s1")
    assert t.needs == ("tiny-model__mnli__s1",) and t.upstream == "tiny-model__mnli__s1"
    assert t.run_dir == tmp_path / "outputs" / "toy" / "target" / t.run_id
    assert t.params["checkpoint_dir"] == str(tmp_path / "checkpoints" / "toy" / t.run_id)
    assert t.params["init_from"] == str(tmp_path / "checkpoints" / "toy" / "tiny-model__mnli__s1" / "encoder")
    base = plan.run("tiny-model__none__xnli__s1")
    assert base.needs == () and base.params["init_from"] == ""
    res = plan.run("results")
    assert set(res.needs) == set(ids[:-1])
    assert res.params["results_csv"] == str(tmp_path / "outputs" / "toy" / "results.csv")
    assert res.params["figures_dir"] == str(tmp_path / "outputs" / "toy" / "figures")
    # params layering: defaults < phase params < grid < runner-set
    assert t.params["languages"] == ["en", "de", "fr"] and t.params["model"] == "Org/Tiny-Model"
    assert t.explicit == {"languages", "model", "intermediate", "target_task", "seed"}


def test_checkpoint_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_CHECKPOINTS", str(tmp_path / "drive"))
    plan = plans.expand(TOY, tmp_path / "outputs")
    assert plan.runs[0].checkpoint_dir == tmp_path / "drive" / "toy" / plan.runs[0].run_id


def test_include_list_grid_and_template(tmp_path):
    plan = plans.validate(plans.expand(FIX / "toy_fail.yaml", tmp_path / "o"))
    assert plan.defaults == {"model": "Org/Tiny-Model", "epochs": 1, "seed": 1}
    inter = [r for r in plan.runs if r.phase == "intermediate"]
    assert [r.run_id for r in inter] == ["tiny-model__mnli__s1", "tiny-model__squad__s1"]
    assert inter[1].passed["fail"] is True and "fail" not in inter[0].passed
    assert inter[0].passed["epochs"] == 1.0 and isinstance(inter[0].passed["epochs"], float)
    assert plan.run("tiny-model__squad__xnli__s1").needs == ("tiny-model__squad__s1",)


def test_validate_filters_undeclared_defaults(tmp_path):
    plan = plans.validate(plans.expand(TOY, tmp_path / "o"))
    res = plan.run("results")
    assert set(res.passed) == {"run_id", "plan", "run_dir", "results_csv", "figures_dir"}   # no model/epochs
    t = plan.run("tiny-model__mnli__xnli__s1")
    assert t.passed["init_from"].endswith("tiny-model__mnli__s1/encoder")
    assert "fail" not in t.passed and "results_csv" not in t.passed
    assert t.resolved["languages"] == ["en", "de", "fr"]


BAD = """
name: bad
defaults: {model: m}
phases:
  intermediate:
    notebook: NB_I
    grid: {intermediate: [mnli], %s}
"""


@pytest.mark.parametrize("grid,msg", [
    ("epoch: [1.0]", "run 'mnli__epoch1.0' (phase 'intermediate'): parameter 'epoch' is not declared by "
                     "toy_intermediate.ipynb, which declares: run_id, plan, run_dir"),
    ("epochs: [fast]", "run 'mnli__fast' (phase 'intermediate'): parameter 'epochs' must be float (declared in "
                       "toy_intermediate.ipynb), got str ('fast')"),
    ("seed: [1.5]", "parameter 'seed' must be int (declared in toy_intermediate.ipynb), got float (1.5)"),
    ("fail: [1]", "parameter 'fail' must be bool (declared in toy_intermediate.ipynb), got int (1)"),
])
def test_validation_errors_before_anything_runs(tmp_path, grid, msg):
    p = write_plan(tmp_path, BAD % grid)
    out = tmp_path / "outputs"
    with pytest.raises(ValueError) as e:
        runner.run_plan(p, outputs=out, out=lambda *a, **k: None)
    assert msg in str(e.value) and "nothing was run" in str(e.value)
    assert not out.exists()


def test_default_declared_by_no_notebook_is_an_error(tmp_path):
    p = write_plan(tmp_path, "defaults: {modle: m}\nphases:\n  intermediate: {notebook: NB_I}\n")
    with pytest.raises(ValueError, match="defaults key 'modle' of plan 'p' is declared by no notebook"):
        plans.validate(plans.expand(p, tmp_path / "o"))


@pytest.mark.parametrize("text,msg", [
    ("phases:\n  a: {notebook: NB_I, needs: b}\n  b: {notebook: NB_I, needs: a}\n", "cycle"),
    ("phases:\n  a: {notebook: NB_I, needs: zz}\n", "depends on unknown phase 'zz'"),
    ("phasez: {}\n", "unknown keys ['phasez']"),
    ("phases:\n  a: {notebook: NB_I, gird: {}}\n", "unknown keys ['gird']"),
    ("phases:\n  a: {notebook: nope.ipynb}\n", "notebook 'nope.ipynb' of phase 'a'"),
    ("phases:\n  a: {notebook: NB_I, grid: {seed: [1]}}\n  b: {notebook: NB_I, grid: {seed: [1]}}\n",
     "run id 's1' occurs twice"),
    ("phases:\n  a: {notebook: NB_I, grid: {seed: [1]}, run_id: '{sede}'}\n", "names 'sede'"),
    ("phases:\n  a: {notebook: NB_I, grid: {run_dir: [x]}}\n", "parameter 'run_dir' is set by the runner"),
    ("phases:\n  a: {notebook: NB_I, grid: {intermediate: [mnli]}}\n"
     "  b: {notebook: NB_T, grid: {intermediate: [squad]}, needs: a}\n",
     "run 'squad' (phase 'b') needs a run of phase 'a' matching intermediate=squad, and there is none"),
    ("phases:\n  a: {notebook: NB_I, grid: {intermediate: [mnli], seed: [1, 2]}}\n"
     "  b: {notebook: NB_T, grid: {intermediate: [mnli], target_task: [xnli]}, needs: a}\n",
     "matches 2 runs of phase 'a'"),
])
def test_plan_errors(tmp_path, text, msg):
    p = write_plan(tmp_path, text)
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        plans.expand(p, tmp_path / "o")
    assert msg in str(e.value)


def test_unreadable_parameter_line_is_an_error(tmp_path):
    nb = json.loads((FIX / "toy_results.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = ["run_id: str = \"x\"  # id\n", "limit: int = 0  # 0 = no limit\n"]
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    p = write_plan(tmp_path, f"phases:\n  a: {{notebook: {tmp_path / 'nb.ipynb'}}}\n")
    with pytest.raises(ValueError, match="papermill cannot read parameter 'limit'"):
        plans.validate(plans.expand(p, tmp_path / "o"))


def test_select_pulls_in_dependencies(tmp_path):
    plan = plans.expand(TOY, tmp_path / "o")
    assert [r.run_id for r in plans.select(plan, "*squad__xnli*")] == ["tiny-model__squad__s1",
                                                                        "tiny-model__squad__xnli__s1"]
    assert [r.run_id for r in plans.select(plan, "intermediate/*")] == ["tiny-model__mnli__s1",
                                                                         "tiny-model__squad__s1"]
    assert len(plans.select(plan, "results")) == 6
    with pytest.raises(ValueError, match="matches no run"):
        plans.select(plan, "xlmr*")


@pytest.mark.parametrize("value,ann,ok", [
    ("a", "str", True), (1, "str", False), (1, "int", True), (True, "int", False), (1, "float", True),
    (1.0, "int", False), (False, "bool", True), ([1], "list", True), ([1], "list[str]", True), ({}, "dict", True),
    ([], "dict", False), (None, "Optional[int]", True), (None, "int", False), (3, "Union[int, str]", True),
    (object(), "None", True), ("x", "SomeCustomType", True),
])
def test_type_ok(value, ann, ok):
    assert nbparams.type_ok(value, ann) is ok
