"""One warm kernel per runner process (xfer_utils/runner/warm_kernel.py, used by `xfer rehearse`): notebooks run in the
same kernel process, each starting from a fresh kernel's namespace, working directory and execution counter; a
failed notebook retires the kernel; a rehearsal gives the same rows with warm kernels as with fresh ones."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from xfer_utils.runner import rehearse
from xfer_utils.runner.warm_kernel import WarmKernel

REPO = Path(__file__).resolve().parents[1]


def _notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("out = ''", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _run(kernel: WarmKernel, nb: Path, tmp_path: Path, name: str, cwd: Path) -> dict:
    """Execute `nb` in the warm kernel; the notebook writes what it saw to <name>.yaml."""
    out = tmp_path / f"{name}.yaml"
    kernel.execute(str(nb), str(tmp_path / f"{name}.ipynb"), parameters={"out": str(out)}, cwd=str(cwd),
                   kernel_name="python3", progress_bar=False, log_output=False)
    return yaml.safe_load(out.read_text())


REPORT = ("import os, yaml\n"
          "open(out, 'w').write(yaml.safe_dump({'pid': os.getpid(), 'cwd': os.getcwd(), 'leftover': 'x' in globals(),"
          " 'modules': 'email.mime.text' in __import__('sys').modules}))")


def _counts(path: Path) -> list:
    return [c.get("execution_count") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_notebooks_share_one_kernel_but_not_its_namespace(tmp_path):
    a = _notebook(tmp_path / "a.ipynb", "x = 1\nimport email.mime.text", REPORT)
    b = _notebook(tmp_path / "b.ipynb", REPORT)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    k = WarmKernel()
    try:
        first = _run(k, a, tmp_path, "first", tmp_path / "one")
        second = _run(k, b, tmp_path, "second", tmp_path / "two")
    finally:
        k.close()
    assert first["pid"] == second["pid"] != os.getpid()       # the same kernel process: the saving
    assert first["leftover"] and not second["leftover"]        # but the second notebook does not see `x`
    assert second["modules"]                                   # modules stay imported (what is reused)
    assert second["cwd"] == str(tmp_path / "two")              # papermill's cwd, as a fresh kernel would have it
    assert _counts(tmp_path / "first.ipynb") == [1, 2, 3, 4]    # the record counts cells as a fresh kernel would
    assert _counts(tmp_path / "second.ipynb") == [1, 2, 3]
    assert k.km is None                                        # closed


def test_a_failed_notebook_retires_the_kernel(tmp_path):
    import papermill
    ok = _notebook(tmp_path / "ok.ipynb", REPORT)
    bad = _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('boom')")
    k = WarmKernel()
    try:
        before = _run(k, ok, tmp_path, "before", tmp_path)
        with pytest.raises(papermill.PapermillExecutionError, match="boom"):
            _run(k, bad, tmp_path, "bad", tmp_path)
        assert k.km is None                                    # the failed kernel was shut down
        after = _run(k, ok, tmp_path, "after", tmp_path)
    finally:
        k.close()
    assert before["pid"] != after["pid"]                       # a fresh kernel after the failure


@pytest.mark.slow
def test_rehearsal_rows_are_the_same_with_warm_and_fresh_kernels(world, tmp_path):
    """Kernel reuse must not change a result: an intermediate run, a baseline and a transfer target, and the results
    notebook, rehearsed both ways (two parallel workers), give the same rows value for value."""
    plan = tmp_path / "small.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "small", "defaults": {"model": "FacebookAI/xlm-roberta-base", "data_dir": "", "seed": 1},
        "phases": {
            "intermediate": {"notebook": str(REPO / "notebooks" / "10_intermediate.ipynb"),
                             "grid": {"intermediate": ["mnli"]}},
            "target": {"notebook": str(REPO / "notebooks" / "20_target.ipynb"), "needs": "intermediate",
                       "params": {"languages": ["en", "de", "fr", "ru"]},
                       "grid": {"intermediate": ["none", "mnli"], "target_task": ["xnli"]}},
            "results": {"notebook": str(REPO / "notebooks" / "40_results.ipynb"), "after": ["intermediate", "target"]},
        }}, sort_keys=False))
    tables = {}
    for fresh in (False, True):
        lines: list[str] = []
        out = tmp_path / ("fresh" if fresh else "warm")
        rc = rehearse.rehearse(plan, outputs=out, parallel=2, out=lines.append, fresh_kernels=fresh)
        assert rc == 0, "\n".join(lines)
        df = pd.read_csv(out / "rehearsal" / "small" / "results.csv")
        keys = ["run_id", "target_task", "language", "split", "metric"]
        tables[fresh] = df.sort_values(keys)[keys + ["value"]].reset_index(drop=True)
    assert len(tables[False]) == 1 + 2 * 4 * 2                   # mnli dev; 2 targets x 4 languages x dev, test
    assert tables[False]["value"].nunique() > 3                 # rows that can differ
    pd.testing.assert_frame_equal(tables[False], tables[True])
