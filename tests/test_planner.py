"""The memory planner: its choice for a table of (model, GPU memory, GPUs) cases, the rules every choice keeps,
`xfer models --plan`, and the runner applying the choice to runs (plan `resources:` -> `strategy`,
`n_processes` params, recorded in params.yaml)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from xfer_utils import cli, ladder
from xfer_utils.runner import plan_resources, plans

FIX = Path(__file__).resolve().parent / "fixtures" / "runner"

# (model, GB per GPU, GPUs) -> (strategy, GPUs it uses). Micro-batch 8 x 256 tokens (ladder.BATCH, SEQ_LEN).
CASES = [
    ("tiny-xlmr-s", 16, 1, "full", 1),
    ("mbert", 16, 1, "full", 1),
    ("xlmr-base", 16, 1, "full", 1),
    ("xlmr-large", 16, 1, "full", 1),             # ~14 GB: fits a T4 / V100-16GB
    ("rembert", 16, 1, "grad_checkpointing", 1),  # eager attention: the s^2 scores push it over 16 GB
    ("rembert", 24, 1, "full", 1),
    ("mt5-xl", 24, 1, "adam8bit", 1),
    ("mt5-xl", 40, 1, "full", 1),
    ("mt5-xl", 16, 4, "fsdp", 4),
    ("mt5-xl", 16, 1, "lora", 1),
    ("xlmr-xl", 24, 1, "lora", 1),
    ("xlmr-xl", 40, 1, "lora", 1),                # 63 GB of states: neither 8-bit Adam nor checkpointing is enough
    ("xlmr-xl", 24, 4, "fsdp", 4),
    ("xlmr-xl", 16, 8, "fsdp", 8),
    ("xlmr-xl", 80, 1, "full", 1),
    ("xlmr-xxl", 16, 1, "none", 1),               # even the frozen bf16 copy (21 GB) does not fit
    ("xlmr-xxl", 40, 1, "lora", 1),
    ("xlmr-xxl", 80, 1, "lora", 1),
    ("xlmr-xxl", 40, 4, "lora", 1),               # 4 x 40 GB: the FSDP shards + activations still exceed 40 GB
    ("xlmr-xxl", 80, 4, "fsdp", 4),
    ("xlmr-xxl", 40, 8, "fsdp", 8),
    ("mt5-xxl", 80, 1, "adam8bit", 1),
    ("mt5-xxl", 40, 4, "fsdp", 4),
    ("mt5-xxl", 24, 4, "lora", 1),
]


@pytest.mark.parametrize("model,gb,gpus,strategy,used", CASES)
def test_planner_choices(model, gb, gpus, strategy, used):
    p = ladder.plan_strategy(model, gb, gpus)
    assert (p.strategy, p.n_gpus) == (strategy, used)
    if strategy != "none":
        assert p.memory_gb <= gb
        assert p.requires == ladder.REQUIRES.get(strategy, "")


ORDER = {s: i for i, s in enumerate(ladder.STRATEGIES + ("none",))}


def test_every_choice_is_the_cheapest_that_fits_and_more_hardware_never_hurts():
    for m in ladder.ladder():
        for n in ladder.GPU_COUNTS:
            prev = None
            for g in ladder.GPU_SIZES:
                p = ladder.plan_strategy(m, g, n)
                earlier = ladder.STRATEGIES[:ORDER.get(p.strategy, len(ladder.STRATEGIES))]
                for s in earlier:   # every strategy tried before the chosen one does not fit
                    if s == "fsdp" and n < 2:
                        continue
                    assert not ladder.fits(m, g, n, s), (m.name, g, n, s)
                if prev is not None:
                    assert ORDER[p.strategy] <= ORDER[prev], (m.name, g, n)   # more memory: never a later strategy
                prev = p.strategy
        for g in ladder.GPU_SIZES:
            seq = [ORDER[ladder.plan_strategy(m, g, n).strategy] for n in ladder.GPU_COUNTS]
            assert seq == sorted(seq, reverse=True), (m.name, g)             # more GPUs: never a later strategy


def test_cli_plan_prints_the_whole_matrix(capsys):
    assert cli.main(["models", "--plan"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    cols = [f"{n}x{g}G" for n in (1, 4, 8) for g in (16, 24, 40, 80)]
    assert header.split()[2:] == cols
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in ladder.names()}
    assert set(rows) == set(ladder.names())
    cells = [" ".join(rows["xlmr-xxl"][26 + 12 * i:26 + 12 * i + 12].split()) for i in range(len(cols))]
    assert dict(zip(cols, cells)) == {"1x16G": "-", "1x24G": "-", "1x40G": "lora 26.2G", "1x80G": "lora 26.2G",
                                      "4x16G": "-", "4x24G": "-", "4x40G": "lora 26.2G", "4x80G": "fsdp 60.6G",
                                      "8x16G": "-", "8x24G": "-", "8x40G": "fsdp 34.1G", "8x80G": "fsdp 34.1G"}
    assert cli.main(["models", "--plan", "--gpu-mem", "80", "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan for 4 x 80 GB")
    assert "xlmr-xxl          fsdp" in out and "params/accelerate/fsdp_full_shard.yaml --num_processes 4" in out
    assert "1x16G" in out                                                           # and then the matrix
    assert cli.main(["models", "--plan", "--json"]) == 0
    matrix = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert matrix["xlmr-xxl"]["8x40gb"] == {"strategy": "fsdp", "memory_gb": 34.1, "n_gpus": 8}


# ---- the runner applies the planner's choice ----

def _notebook_with_strategy(tmp_path: Path) -> Path:
    nb = nbformat.read(str(FIX / "toy_target.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += ('\nstrategy: str = "auto"  # memory strategy, auto means the planner decides at run time'
                    '\nn_processes: int = 1  # training processes\n')
    out = tmp_path / "train_nb.ipynb"
    nbformat.write(nb, str(out))
    return out


def _plan(tmp_path: Path, resources: dict, grid: dict, phase_resources: dict | None = None, params=None) -> Path:
    nb = _notebook_with_strategy(tmp_path)
    p = tmp_path / "sized.yaml"
    phase = {"notebook": str(nb), "grid": grid, "params": params or {}}
    if phase_resources:
        phase["resources"] = phase_resources
    p.write_text(yaml.safe_dump({"name": "sized", "resources": resources, "phases": {"target": phase},
                                 "defaults": {"intermediate": "none"}}))
    return p


def test_runner_sets_strategy_and_processes_from_resources(tmp_path):
    grid = {"model": ["FacebookAI/xlm-roberta-large", "facebook/xlm-roberta-xxl", "tiny-xlmr-s", "org/unknown"]}
    plan = plans.validate(plans.expand(_plan(tmp_path, {"gpus": 4, "gpu_mem": 80, "time": "12:00:00"}, grid),
                                       tmp_path / "o"))
    got = {r.values["model"]: (r.resolved["strategy"], r.passed["n_processes"]) for r in plan.runs}
    assert got == {"FacebookAI/xlm-roberta-large": ("full", 4), "facebook/xlm-roberta-xxl": ("fsdp", 4),
                   "tiny-xlmr-s": ("full", 4), "org/unknown": ("auto", 4)}   # unknown: the notebook's default
    assert all(r.resources == {"gpus": 4, "gpu_mem": 80, "time": "12:00:00"} for r in plan.runs)
    # the phase's resources win key by key; a strategy the plan sets wins over the planner
    plan = plans.validate(plans.expand(_plan(tmp_path, {"gpus": 4, "gpu_mem": 80},
                                             {"model": ["facebook/xlm-roberta-xxl"]}, {"gpus": 1}), tmp_path / "o"))
    assert (plan.runs[0].passed["strategy"], plan.runs[0].resolved["n_processes"]) == ("lora", 1)
    plan = plans.validate(plans.expand(_plan(tmp_path, {"gpus": 1, "gpu_mem": 80},
                                             {"model": ["facebook/xlm-roberta-xxl"]},
                                             params={"strategy": "adam8bit"}), tmp_path / "o"))
    assert plan.runs[0].passed["strategy"] == "adam8bit"


def test_params_yaml_records_the_strategy(tmp_path):
    from xfer_utils.runner import execute as runner
    p = _plan(tmp_path, {"gpus": 1, "gpu_mem": 16}, {"model": ["rembert"], "target_task": ["xnli"]})
    plan = plans.validate(plans.expand(p, tmp_path / "o"))
    run = plan.runs[0]
    status, why = runner._execute(plan, run, lambda plan, run: None)     # the launcher itself is not under test
    assert status == "done", why
    assert yaml.safe_load((run.run_dir / "params.yaml").read_text())["strategy"] == "grad_checkpointing"


@pytest.mark.parametrize("resources,match", [
    ({"gpu": 1}, "unknown resources key 'gpu'"),
    ({"gpus": "4"}, "resources 'gpus' must be int"),
    ({"time": "soon"}, "not a Slurm time"),
    ({"mem": "lots"}, "not a size"),
    ({"slurm": "account=x"}, "resources 'slurm' must be dict"),
])
def test_bad_resources_fail_before_anything_runs(tmp_path, resources, match):
    with pytest.raises(ValueError, match=match):
        plans.expand(_plan(tmp_path, resources, {"model": ["mbert"]}), tmp_path / "o")


def test_a_model_that_fits_nothing_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="xlmr-xxl fits no strategy on 1 x 16 GB"):
        plans.expand(_plan(tmp_path, {"gpu_mem": 16}, {"model": ["facebook/xlm-roberta-xxl"]}), tmp_path / "o")


def test_per_model_overrides_and_a_site_file(tmp_path):
    grid = {"model": ["FacebookAI/xlm-roberta-large", "facebook/xlm-roberta-xxl"]}
    p = _plan(tmp_path, {"gpus": 1, "gpu_mem": 80, "models": {"xlmr-xxl": {"gpus": 4, "time": "3-00:00:00"}}}, grid)
    plan = plans.validate(plans.expand(p, tmp_path / "o"))
    large, xxl = plan.runs
    assert (large.resources["gpus"], large.resolved["strategy"], large.resolved["n_processes"]) == (1, "full", 1)
    assert (xxl.resources["gpus"], xxl.resources["time"], xxl.passed["strategy"], xxl.passed["n_processes"]) == \
        (4, "3-00:00:00", "fsdp", 4)
    # the example site file on top of a plan without resources
    site = plan_resources.load_site(plans.find_root(FIX) / "params" / "cluster" / "slurm_example.yaml")
    plan = plans.validate(plans.expand(_plan(tmp_path, {}, grid), tmp_path / "o", site=site))
    large, xxl = plan.runs
    assert large.resources == {"gpus": 1, "gpu_mem": 80, "mem": "64G", "cpus": 8, "time": "24:00:00",
                               "partition": "gpu", "slurm": {"account": "my-account"}}
    assert (xxl.resources["gpus"], xxl.resources["mem"], xxl.passed["strategy"]) == (4, "256G", "fsdp")
    bad = tmp_path / "site.yaml"
    bad.write_text("gpus: 1\nphases: {results: {gpu: 0}}\n")
    with pytest.raises(ValueError, match="unknown resources key 'gpu'"):
        plan_resources.load_site(bad)
