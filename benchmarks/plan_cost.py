"""GPU-hour estimates of the quick and paper plans, the same numbers `xfer run PLAN --dry-run --gpu G` prints.

    python benchmarks/plan_cost.py [--json benchmarks/results/plan_cost.json] [--gpus a100,h100,l4,t4]

For each plan: when ``params/plans/<plan>.yaml`` exists it is expanded and validated and costed by
``xfer_utils.runner.execute.cost_table`` (exactly the dry-run). Otherwise the grid of issue 6
(docs/sources.md, Cost grids) is written out here as run params and costed run by run with
``xfer_utils.runner.cost.estimate`` (the function the dry-run calls), and the JSON says ``"source": "issue-6 grid"``.

Throughput comes from ``xfer_utils/resources/throughput.yaml``: a ``measured`` entry for (model, GPU) when there is one,
else the ``derived`` one. No GPU was measured for this project so far (benchmarks/gpu.py skips without CUDA), so
every figure here rests on derived rates; the CPU benchmark (train_throughput.py) measures the padding
efficiency those derived dynamic-padding rates assume.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402

TARGETS = ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa"]
RETRIEVAL = ["bucc2018", "tatoeba"]


def issue6_runs(plan: str) -> list[tuple[str, dict]]:
    """(phase, params) of the grids issue 6 describes (one seed)."""
    runs: list[tuple[str, dict]] = []
    if plan == "quick":
        # XLM-R base; MNLI / SQuAD / HellaSwag capped (HellaSwag 5k x 4 choices), 2 epochs; every target with
        # XNLI capped at 50k, SQuAD-trained QA targets capped at 20k (docs/sources.md, Cost grids)
        model, inter = "FacebookAI/xlm-roberta-base", ["none", "mnli", "squad", "hellaswag"]
        caps = {"mnli": 20_000, "squad": 20_000, "hellaswag": 5_000}
        for it in inter[1:]:
            runs.append(("intermediate", {"model": model, "intermediate": it, "epochs": 2.0,
                                          "max_train_examples": caps[it]}))
        tcap = {"xnli": 50_000, "xquad": 20_000, "mlqa": 20_000}
        tep = {"udpos": 3.0, "panx": 3.0}
        for it in inter:
            for t in TARGETS:
                runs.append(("target", {"model": model, "intermediate": it, "target_task": t,
                                        "epochs": tep.get(t, 2.0), "max_train_examples": tcap.get(t, -1)}))
            runs.append(("retrieval", {"model": model, "intermediate": it, "task": "+".join(RETRIEVAL)}))
    elif plan == "paper":
        # XLM-R large; 9 intermediate tasks (3 epochs, jiant's default), multi-task over all 9, MLM co-training
        # (MNLI + MLM) and translated MNLI; every target at its protocol epochs; BUCC + Tatoeba per encoder
        model = "FacebookAI/xlm-roberta-large"
        nine = ["anli_plus", "mnli", "qqp", "sst2", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa", "ccg"]
        inter = nine + ["+".join(nine), "mnli+mlm", "mnli_translated"]
        for it in inter:
            runs.append(("intermediate", {"model": model, "intermediate": it, "epochs": 3.0}))
        for it in ["none"] + inter:
            for t in TARGETS:
                runs.append(("target", {"model": model, "intermediate": it, "target_task": t}))
            runs.append(("retrieval", {"model": model, "intermediate": it, "task": "+".join(RETRIEVAL)}))
    else:
        raise ValueError(plan)
    return runs


def cost_plan(plan: str, gpus: list[str]) -> dict:
    from xfer_utils.runner import cost
    table = cost.load_table()
    path = C.REPO / "params" / "plans" / f"{plan}.yaml"
    out = {"plan": plan, "gpus": {}}
    if path.exists():
        from xfer_utils.runner import plans, execute as runner
        with tempfile.TemporaryDirectory() as tmp:
            p = plans.expand(path, tmp)
            plans.validate(p)
            singles = sorted({str(r.values.get("intermediate")) for r in p.runs
                              if r.values.get("intermediate") and not any(c in str(r.values["intermediate"])
                                                                          for c in "+@")}
                             - {"none", "multitask"})
            for g in gpus:
                lines: list[str] = []
                entry = {"hours": runner.cost_table(p, p.runs, g, out=lines.append),
                         "summary": lines[-1] if lines else ""}
                # runs the dry-run cannot cost: a 'multitask' intermediate is costed here as the plan's single
                # intermediate tasks joined (what the multi-task run trains on), reported separately
                extra = 0.0
                for r in p.runs:
                    params = dict(r.resolved or r.params)
                    h, _ = cost.estimate(r.phase, params, g, table)
                    if h is None and params.get("intermediate") == "multitask" and r.phase == "intermediate":
                        params["intermediate"] = "+".join(singles)
                        h2, _ = cost.estimate(r.phase, params, g, table)
                        extra += h2 or 0.0
                if extra:
                    entry["multitask_estimate_hours"] = extra
                    entry["hours_with_multitask_estimate"] = entry["hours"] + extra
                out["gpus"][g] = entry
            out["runs"] = len(p.runs)
        out["source"] = str(path.relative_to(C.REPO))
        return out
    runs = issue6_runs(plan)
    out["source"] = "issue-6 grid (params/plans/%s.yaml did not exist when this ran)" % plan
    out["runs"] = len(runs)
    for g in gpus:
        total, unknown, notes, by_phase = 0.0, 0, set(), {}
        for phase, params in runs:
            h, note = cost.estimate(phase, params, g, table)
            if h is None:
                unknown += 1
            else:
                total += h
                by_phase[phase] = by_phase.get(phase, 0.0) + h
            if note:
                notes.add(note)
        out["gpus"][g] = {"hours": total, "unknown_runs": unknown, "throughput": sorted(notes),
                          "by_phase": by_phase}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--gpus", default="a100,h100,l4,t4")
    ap.add_argument("--plans", default="quick,paper")
    a = ap.parse_args(argv)
    gpus = [g for g in a.gpus.split(",") if g]
    res = {"benchmark": "plan_cost", "plans": [cost_plan(p, gpus) for p in a.plans.split(",") if p],
           "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
           "command": C.command_line("plan_cost", argv)}
    for p in res["plans"]:
        hrs = ", ".join(f"{g} {v['hours']:.1f} h" + (f" (+{v['multitask_estimate_hours']:.1f} h multitask)"
                                                        if v.get("multitask_estimate_hours") else "")
                        for g, v in p["gpus"].items())
        print(f"{p['plan']}: {p['runs']} runs ({p['source']}): {hrs}")
        for g, v in p["gpus"].items():
            if v.get("unknown_runs"):
                print(f"  {g}: {v['unknown_runs']} runs of unknown cost")
            if v.get("throughput"):
                print(f"  {g}: throughput {'; '.join(v['throughput'])}")
    C.write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
