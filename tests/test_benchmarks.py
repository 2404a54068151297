"""The benchmarks (benchmarks/, issue 8) in their --tiny configurations, so they do not rot: each script runs in a
subprocess on the synthetic length distributions (no ../shared/data needed) and writes JSON with the headline keys.
These check keys and sanity, never timings. The subprocess runs take ~5 s of CPU each (more wall time on a busy
machine: torch's import dominates), so they are marked slow: `make test` runs them, `make test-fast` does not."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{Path(script).stem}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XFER_BENCH_CACHE": str(tmp_path / "cache"),
           "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run([sys.executable, str(BENCH / script), "--tiny", "--json", str(out), *args], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_train_throughput_tiny(tmp_path):
    r = run("train_throughput.py", tmp_path, "--synthetic")
    assert 0 < r["padding_efficiency"] <= 1 and 0 < r["baseline_padding_efficiency"] <= 1
    assert r["speedup"] > 0 and r["vs_trainer"] > 0 and r["vs_trainer_min"] > 0
    assert {t["task"] for t in r["tasks"]} == {"qa", "pair", "tagging", "sentence"}
    # the Trainer arm took as many optimizer steps as the project's loop, one collated batch each (its
    # length-grouped sampler draws other batches: tokens/s, not tokens, compare)
    trainer_runs = [x for x in r["runs"] if x["mode"].startswith("trainer")]
    assert trainer_runs and all(x["steps"] == r["config"]["steps"] == x["batches"] for x in trainer_runs)
    assert all(t["trainer_tokens"] > 0 for t in r["tasks"])
    # drawing the project loop's order, the Trainer computes exactly the project's batches
    for t in r["tasks"]:
        assert t["trainer_same_batches_tokens"] == t["project_tokens"], t["task"]
        assert t["trainer_same_batches_computed_tokens"] == t["project_computed_tokens"], t["task"]
    for t in r["tasks"]:
        # the project's dynamic padding never computes more than the fixed-padding baseline
        assert t["padding_efficiency_epoch"] >= t["baseline_padding_efficiency_epoch"]
        assert 0 < t["baseline_padding_efficiency_timed"] <= 1 and t["project_tokens"] > 0
    assert {x["precision"] for x in r["runs"] if x["mode"] == "baseline"} == {"fp32"}
    assert r["machine"]["cpu_count"] >= 1 and "synthetic" in r["data"]


@pytest.mark.slow
def test_train_throughput_runs_only_the_arms_asked_for(tmp_path):
    # --arms project,trainer (the whole-epoch comparison): no baseline run, so the ratios that need it are null
    # rather than computed against a missing arm, and vs_trainer is still there
    r = run("train_throughput.py", tmp_path, "--synthetic", "--tasks", "sentence", "--arms", "project,trainer")
    assert {x["mode"] for x in r["runs"]} == {"project", "trainer"} and r["arms"] == ["project", "trainer"]
    assert r["speedup"] is None and r["vs_trainer_same_batches"] is None and r["baseline_tokens_per_s"] is None
    assert r["vs_trainer"] > 0 and r["vs_trainer_min"] == r["tasks"][0]["vs_trainer"]


def test_train_throughput_refuses_an_unknown_arm():
    p = subprocess.run([sys.executable, str(BENCH / "train_throughput.py"), "--arms", "project,hf"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "unknown arm(s) ['hf']" in p.stderr and "trainer_same_batches" in p.stderr


@pytest.mark.slow
def test_loop_overhead_tiny(tmp_path):
    r = run("loop_overhead.py", tmp_path, "--synthetic", "--tasks", "sentence")
    (t,) = r["tasks"]
    # both arms ran every repeat, in alternating order, with kernel time and loop-side time apart
    assert [(x["mode"], x["repeat"]) for x in r["runs"]] == [("project", 0), ("trainer", 0), ("trainer", 1),
                                                             ("project", 1)]
    assert t["project_kernel_seconds"] > 0 and t["trainer_kernel_seconds"] > 0
    assert t["project_loop_ms_per_step"] > 0 and r["loop_ratio_max"] == t["loop_ratio"]


@pytest.mark.slow
def test_eval_throughput_tiny(tmp_path):
    r = run("eval_throughput.py", tmp_path, "--synthetic")
    assert r["speedup"] > 0 and 0 < r["padding_efficiency"] <= 1
    assert r["padding_efficiency"] >= r["baseline_padding_efficiency"]
    assert r["predictions_agree"] is True          # padding is masked: both arms predict the same


@pytest.mark.slow
def test_retrieval_tiny(tmp_path):
    r = run("retrieval.py", tmp_path, "--synthetic")
    assert r["speedup"] > 0 and r["speedup_at_n"] == max(r["config"]["sizes"])
    methods = {m["method"] for m in r["mining"]}
    assert {"project", "numpy"} <= methods
    for m in r["mining"]:
        assert m["agreement_with_project"] == pytest.approx(1.0)   # the same pairs, whatever the method
        assert m["planted_recall_top"] > 0.9 and m["peak_extra_mib"] >= 0
    assert r["embedding"]["max_abs_diff_vs_xtreme"] < 1e-4 and r["embedding"]["speedup_vs_xtreme"] > 0


@pytest.mark.slow
def test_gpu_skips_without_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the skip path does not apply")
    r = run("gpu.py", tmp_path)   # --tiny, but no --force-cpu: must skip cleanly
    assert r["skipped"].startswith("skipped: no CUDA")


@pytest.mark.slow
def test_gpu_code_path_on_cpu(tmp_path):
    r = run("gpu.py", tmp_path, "--force-cpu")
    assert r["non_embedding_params"] > 0 and r["peak_bf16_tflops"] > 0
    rows = [x for x in r["rows"] if "error" not in x]
    # every arm (issue 20: packing, compile, the HF Trainer) at every shape; compile at the first only (--tiny)
    arms = {"project", "packed", "trainer", "baseline"}
    assert {(x["kind"], x["mode"]) for x in rows} == {(k, m) for k in ("full", "realistic", "short") for m in arms} \
        | {("full", "compiled")}
    assert all(0 < x["padding_efficiency"] <= 1 for x in rows)
    assert all(x["vs_trainer"] is not None for x in rows)


def test_real_data_readers():
    """The readers of ../shared/data (skipped where it is absent) produce the four task shapes."""
    sys.path.insert(0, str(BENCH))
    import _common as C
    root = C.shared_data()
    if root is None:
        pytest.skip("no ../shared/data")
    xq, st, ud, ta = (C.read_xquad(root, 2), C.read_stsb(root, 2), C.read_conllu(root, 2), C.read_tatoeba(root, 2))
    assert xq and all(r["answers"]["text"] for rows in xq.values() for r in rows)
    assert st and all(0.0 <= s <= 5.0 for rows in st.values() for _, _, s in rows)
    assert ud and all(len(w) == len(t) for rows in ud.values() for w, t in rows)
    assert ta and "eng" in ta
