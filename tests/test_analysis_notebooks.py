"""The analysis notebooks (40_results, 51-53): structure (fast) and papermill runs on synthetic results (slow)."""
import ast
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_results as sr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"40_results": ["40_scores.png", "40_gains.png"], "51_rq_size": ["51_gain_vs_size.png"],
             "52_rq_data": ["52_gain_vs_cc100.png"], "53_rq_difficulty": ["53_gain_vs_difficulty.png"]}
RUNNER_PARAMS = {"run_id", "run_dir", "checkpoint_dir", "results_csv", "figures_dir", "plan"}


def load(name):
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name):
    nb = load(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    names = set()
    for line in params[0].source.splitlines():
        if not line.strip():
            continue
        stmt = ast.parse(line).body[0]
        assert isinstance(stmt, ast.AnnAssign) and isinstance(stmt.annotation, ast.Name), line
        ast.literal_eval(stmt.value)                      # literals only: papermill does not recompute
        assert "  # " in line, f"parameter without a one-line comment: {line}"
        names.add(stmt.target.id)
    assert RUNNER_PARAMS <= names
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "stored outputs"
            tree = ast.parse(cell.source)
            assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
    import papermill
    inspected = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
    assert set(inspected) == names and all(p["help"] for p in inspected.values())


def execute(name, tmp_path, **params):
    import papermill
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                               cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "results.csv"
    sr.write_csv(path, models=("tiny-xlmr-s", "distilmbert", "xlmr-base", "xlmr-large", "xlmr-xl"),
                 intermediates=("none", "mnli", "squad", "hellaswag", "sst2", "qqp", "mnli+squad", "mnli+mlm",
                                "mnli@tr"), languages_per_task=12)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_synthetic_results(name, synthetic_csv, tmp_path):
    figures = tmp_path / "figures"
    extra = {"40_results": {"model": "xlmr-large"}, "51_rq_size": {"n_boot": 300}, "53_rq_difficulty": {"n_boot": 300},
             "52_rq_data": {"n_boot": 300, "model": "xlmr-large", "targets": ["xnli", "panx", "tatoeba"]}}[name]
    text = execute(name, tmp_path, results_csv=str(synthetic_csv), figures_dir=str(figures), plan="synthetic",
                   **extra)
    for fig in NOTEBOOKS[name]:
        assert (figures / fig).stat().st_size > 1000, fig
    assert f"figure{'s' if name == '40_results' else ''} written: {figures}" in text
    if name == "51_rq_size":
        assert "comparisons of gain versus parameter count have enough points" in text
        assert "the smaller the gain" in text                    # the planted negative size effect
    if name == "52_rq_data":
        assert "the larger the gain" in text                     # the planted positive data effect
    if name == "53_rq_difficulty":
        assert "the larger the zero-shot gain" in text


@pytest.mark.slow
def test_rq_size_notebook_says_too_few_points(tmp_path):
    csv = tmp_path / "results.csv"
    sr.write_csv(csv, models=("tiny-xlmr-s", "tiny-xlmr-m"), intermediates=("none", "mnli"),
                 targets=("xnli", "xcopa", "stsb_multi_mt"))
    text = execute("51_rq_size", tmp_path, results_csv=str(csv), figures_dir=str(tmp_path / "figures"), n_boot=100)
    assert "too few points (n = 2; need at least 5)" in text and "no association is claimed" in text
    assert "Pearson r =" not in text
    assert (tmp_path / "figures" / "51_gain_vs_size.png").exists()
