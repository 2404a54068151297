"""Each phase notebook's `parameters` cell and its typed parameter object (phases/params.py) declare the same names
with the same defaults, and the notebook hands the object on in one call: a parameter cannot be declared in a
notebook and silently dropped on the way to the phase."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import nbformat
import pytest

from xfer_utils.phases import params

REPO = Path(__file__).resolve().parents[1]
PHASE_NOTEBOOKS = {"10_intermediate": (params.Intermediate, "params.intermediate(p"),
                   "20_target": (params.Target, "params.target(p"),
                   "30_retrieval": (params.Retrieval, "params.retrieval(p")}


def _cells(name: str):
    return nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4).cells


def notebook_parameters(name: str) -> dict:
    """{name: default value} of the notebook's cell tagged `parameters`, read with ast (literals only)."""
    cell = next(c for c in _cells(name) if "parameters" in c.metadata.get("tags", []))
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                out[t.id] = ast.literal_eval(node.value)
    return out


def dataclass_defaults(cls) -> dict:
    obj = cls()
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", sorted(PHASE_NOTEBOOKS))
def test_parameters_cell_equals_the_parameter_object(name):
    cls, _ = PHASE_NOTEBOOKS[name]
    declared, fields = notebook_parameters(name), dataclass_defaults(cls)
    assert sorted(declared) == sorted(fields), (
        f"only in the notebook: {sorted(set(declared) - set(fields))}; "
        f"only in {cls.__name__}: {sorted(set(fields) - set(declared))}")
    differ = {k: (declared[k], fields[k]) for k in declared if declared[k] != fields[k]
              or type(declared[k]) is not type(fields[k])}
    assert not differ, f"defaults differ (notebook, {cls.__name__}): {differ}"


@pytest.mark.parametrize("name", sorted(PHASE_NOTEBOOKS))
def test_notebook_builds_the_object_and_passes_it_in_one_call(name):
    cls, call = PHASE_NOTEBOOKS[name]
    code = "\n".join(c.source for c in _cells(name) if c.cell_type == "code")
    assert f"params.{cls.__name__}.from_namespace(globals())" in code
    assert code.count(call) == 1
    assert "runs.intermediate(" not in code and "runs.target(" not in code and "runs.retrieval(" not in code
    assert "launch.run_phase(" not in code


def test_from_namespace_names_a_missing_parameter():
    ns = dataclass_defaults(params.Retrieval)
    del ns["bucc_proxy"]
    with pytest.raises(ValueError, match="bucc_proxy"):
        params.Retrieval.from_namespace(ns)



def test_phase_call_forwards_every_parameter(monkeypatch, tmp_path):
    """params.intermediate hands each field to the phase (as itself, resolved, or as a protocol override)."""
    seen = {}

    def fake_run_phase(fn, **kw):
        seen.update(fn=fn, **kw)
        return {}
    monkeypatch.setattr(params.launch, "run_phase", fake_run_phase)
    monkeypatch.setattr(params.env, "resolve_model", lambda m: f"/models/{m}")
    monkeypatch.setattr(params.env, "resolve_data_dir", lambda d: f"/data/{d}")
    p = params.Intermediate(model="m", intermediate="mnli+mlm", lr=3e-5, epochs=2.0, max_steps=7,
                            mlm_languages=["de"], strategy="full", n_processes=1, run_dir=str(tmp_path / "r"),
                            checkpoint_dir=str(tmp_path / "c"), sampling_temperature=2.0, examples_cap=9,
                            mlm_share=0.25, mlm_text="wikipedia", eval_examples=12, max_train_examples=50)
    params.intermediate(p, log=lambda *a: None)
    assert seen["fn"] is params.runs.intermediate
    assert seen["model"] == "/models/m" and seen["model_label"] == "m" and seen["data_dir"] == "/data/tiny"
    assert seen["lr"] == 3e-5 and seen["epochs"] == 2.0 and seen["max_steps"] == 7
    assert "batch_size" not in seen          # 0 = the protocol default: left to the task registry
    assert seen["mlm_languages"] == ["de"] and seen["sampling_temperature"] == 2.0 and seen["examples_cap"] == 9
    assert seen["mlm_share"] == 0.25 and seen["mlm_text"] == "wikipedia" and seen["eval_examples"] == 12
    assert seen["max_train_examples"] == 50 and seen["strategy"] == "full" and seen["run_id"] == "m__mnli+mlm__s1"
