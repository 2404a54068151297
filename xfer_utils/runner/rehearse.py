"""`xfer rehearse PLAN [--cover] [--parallel N]`: a plan run with its real structure on the offline tiny world, so a
plan that starts on a GPU is known to finish.

The rehearsal expands the plan exactly as `xfer run` does (plans.expand: every phase, grid value and dependency,
the `resources:` blocks and the planner's memory strategy for the *real* model) and then changes only what decides
scale, before the same runner (runner.run_plan, local launcher, ``--parallel``) executes the same notebooks:

- ``model`` -> a tiny model of the same architecture family (:func:`_tiny_model`), ``data_dir`` -> ``tiny``;
- step, example and batch counts capped (:data:`CAPS`) so a run takes seconds, ``lr`` raised to :data:`LR` (as
  params/plans/smoke.yaml does: the tiny models learn the fixture signal in a few dozen steps), the retrieval
  ``layer`` moved to the same relative depth of the tiny model, bootstrap resamples of the analyses capped;
- the strategy (LoRA, gradient checkpointing, 8-bit AdamW, FSDP) stays what the planner chose for the real model
  on the plan's GPUs; ``n_processes`` is capped at 2 CPU processes. On a machine without CUDA, 8-bit AdamW
  (bitsandbytes) cannot run: launch.run_phase substitutes AdamW when XFER_REHEARSAL is set and says so in the
  run's log. FSDP over CPU processes: accelerate only shards on GPUs, so on CPU the processes train full replicas
  over gloo (launch.run_distributed logs that) - the multi-process launch and checkpoint paths run, the sharding
  itself is exercised by tests/test_launch.py's FSDP test;
- run ids, grid values and dependencies are unchanged, so a failure names the real run.

Outputs go to ``<outputs>/rehearsal/<plan>/`` and checkpoints to ``<outputs>/rehearsal/_checkpoints/<plan>/``
(whatever XFER_CHECKPOINTS says), never mixed with real results. A rehearsal starts clean (both folders are
removed first) unless ``--resume``: a run skipped because an earlier rehearsal finished it proves nothing about
today's code.

``--cover``: a small set of runs (greedy set cover) in which every grid value of every phase occurs at least once,
closed under ``needs:`` dependencies; the analysis phases (``after:``) run on the table those runs produce.

The command ends with one line per failed run (phase, run id, the exception's line) and exits 1 if any run
failed or was blocked.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import plans, execute as runner

REHEARSAL = "rehearsal"            # <outputs>/rehearsal/<plan>/
CKPT = "_checkpoints"              # <outputs>/rehearsal/_checkpoints/<plan>/<run_id> (no plan name starts with _)
LR = 0.003                         # as params/plans/smoke.yaml: the tiny models learn in a few dozen steps
N_PROCESSES = 2                    # multi-GPU strategies run over this many CPU processes
# scale parameter -> its rehearsal value: a larger value (or the "0 / -1 = protocol default / all" values) is
# capped; a smaller positive one is kept.
CAPS = {
    "max_steps": 8, "eval_every": 4, "checkpoint_every": 4, "eval_examples": 16, "max_train_examples": 64,
    "max_eval_examples": 12, "batch_size": 8, "max_examples": 32, "n_boot": 50,
    "examples_cap": 64,            # multi-task sampling weights; the MLM line count follows max_train_examples
}
PER_DEVICE_BATCH = 4               # kept below batch_size when the plan accumulates gradients


_NOTED: set = set()


def _tiny_model(model: str) -> str:
    """The tiny model that stands in for `model` in a rehearsal: the one of its architecture family
    (tiny_families.tiny_for: BERT with token type ids, DeBERTa-v2, RemBERT, mT5 encoder, XLM-R XL, XLM-R). A model
    outside the ladder (a local checkpoint folder) has no known family: it is rehearsed on the tiny XLM-R, and the
    rehearsal says so once."""
    from ..world import tiny, tiny_families
    try:
        return tiny_families.tiny_for(model)
    except ValueError:
        if model not in _NOTED:
            _NOTED.add(model)
            print(f"rehearsal: {model} is not a model of the ladder (no known family); rehearsed on "
                  f"{tiny.DEFAULT_MODEL}", file=sys.stderr)
        return tiny.DEFAULT_MODEL


def _depth(model: str) -> int | None:
    """Transformer layers of a model: the ladder's figure for hub ids, the config for tiny/local models."""
    from .. import ladder
    from ..world import tiny
    m = ladder.lookup(model)
    if m is not None:
        return int(m.layers)
    if model in tiny.MODEL_SIZES:
        return int(tiny.MODEL_SIZES[model]["num_hidden_layers"])
    from ..world import tiny_families
    if model in tiny_families.NAMES:
        return int(tiny_families.SHAPE["layers"])
    cfg = Path(model) / "config.json"
    if cfg.exists():
        c = json.loads(cfg.read_text(encoding="utf-8"))
        return c.get("num_hidden_layers") or c.get("num_layers")
    return None


def _cap(key: str, value):
    cap = CAPS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value                   # a wrong type stays wrong: plans.validate names it
    return cap if value <= 0 or value > cap else value


def rehearsal_params(params: dict) -> dict:
    """One run's params for the rehearsal: model/data mapped, scale capped, everything else as it was."""
    p = dict(params)
    real = p.get("model")
    if isinstance(real, str) and real:
        p["model"] = _tiny_model(real)
    if "data_dir" in p or "model" in p:
        p["data_dir"] = "tiny"
    for k in CAPS:
        p[k] = _cap(k, p.get(k, 0))
    pdb = p.get("per_device_batch")
    if isinstance(pdb, int) and not isinstance(pdb, bool) and pdb > 0:
        p["per_device_batch"] = min(pdb, PER_DEVICE_BATCH)
    p["lr"] = LR
    if isinstance(p.get("n_processes"), int) and p["n_processes"] > 1:
        p["n_processes"] = min(p["n_processes"], N_PROCESSES)
    layer = p.get("layer")
    if isinstance(layer, int) and not isinstance(layer, bool) and layer > 0 and isinstance(real, str) and real:
        big, small = _depth(real), _depth(p["model"])
        if big and small:              # the same relative depth (XLM-R large 14/24 -> 1 of the tiny model's 2)
            p["layer"] = max(1, min(small, round(layer * small / big)))
    return p


# ---- the cover ----

def _key(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _items(run: plans.Run, plan: plans.Plan) -> set:
    """What a run covers: (phase, grid key, value) for each of its grid values; a phase without a grid, itself."""
    if plan.phases[run.phase].get("grid") is None:
        return {(run.phase, "", run.run_id)}
    return {(run.phase, k, _key(v)) for k, v in run.values.items()}


def cover(plan: plans.Plan) -> list[plans.Run]:
    """The runs of a small subset (greedy) in which every grid value of every phase occurs at least once, closed
    under `needs:` dependencies (the upstream run whose encoder a run starts from), in plan order. Runs of phases
    without a grid (the analyses) are always in; runs without an upstream run are preferred (see below). `after:` is no dependency here: an analysis runs on what the
    cover produced."""
    by_id = {r.run_id: r for r in plan.runs}

    def closure(r) -> set:
        out, todo = set(), [r.run_id]
        while todo:
            rid = todo.pop()
            if rid not in out:
                out.add(rid)
                up = by_id[rid].upstream
                if up:
                    todo.append(up)
        return out

    chosen: set = set()
    todo_items = set().union(*(_items(r, plan) for r in plan.runs))
    closures = {r.run_id: closure(r) for r in plan.runs}
    covers = {r.run_id: _items(r, plan) for r in plan.runs}
    # Runs without an upstream run (intermediate runs, baselines) are taken first: every target or retrieval task
    # then runs once on the raw model, so a failing intermediate setup does not hide that task's own failures.
    free = [r for r in plan.runs if not r.upstream]
    while todo_items:
        best, best_score = None, None
        pool = [r for r in free if covers[r.run_id] & todo_items] or plan.runs
        for r in pool:
            if r.run_id in chosen:
                continue
            new = closures[r.run_id] - chosen
            gain = set().union(*(covers[x] for x in new)) & todo_items
            if not gain:
                continue
            score = (len(gain) / len(new), len(gain))
            if best_score is None or score > best_score:
                best, best_score = r, score
        chosen |= closures[best.run_id]
        todo_items -= set().union(*(covers[x] for x in closures[best.run_id]))
    return [r for r in plan.runs if r.run_id in chosen]


# ---- the transformed plan ----

def transform(plan: plans.Plan, use_cover: bool = False) -> plans.Plan:
    """The rehearsal plan (in place): checkpoints under the rehearsal root, params mapped (rehearsal_params),
    runs restricted to the cover when asked, `after:` dependencies to the runs kept."""
    root = plan.outputs / CKPT
    plan.checkpoint_root = root
    keep = cover(plan) if use_cover else list(plan.runs)
    ids = {r.run_id for r in keep}
    by_id = {r.run_id: r for r in plan.runs}
    for r in keep:
        r.checkpoint_dir = root / plan.name / r.run_id
        r.needs = tuple(d for d in r.needs if d in ids)
        p = rehearsal_params(r.params)
        p["checkpoint_dir"] = str(r.checkpoint_dir)
        if "init_from" in p:
            p["init_from"] = str(root / plan.name / by_id[r.upstream].run_id / "encoder") if r.upstream else ""
        r.params = p
    plan.runs = keep
    return plan


@contextlib.contextmanager
def _env(**kv):
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update(kv)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failure_line(plan: plans.Plan, run: plans.Run, since: float) -> str | None:
    """'phase/run_id: <exception line>' for a run that failed in this rehearsal, else None."""
    err = plan.failed_dir / run.run_id / "error.txt"
    try:
        if err.stat().st_mtime < since:
            return None
        text = err.read_text(encoding="utf-8")
    except OSError:
        return None
    head = text.split("\n\n", 1)[0].strip()        # "Ename: evalue" (runner._error_text): the exception's line
    lines = [x for x in head.splitlines() if x.strip()]
    return f"{run.phase}/{run.run_id}: {lines[-1] if lines else 'failed'}"


def _family_models(plan_path, resources) -> list[str]:
    """The tiny models of other families that the plan's rehearsal will use."""
    from . import plan_resources
    from ..world import tiny_families
    plan = plans.expand(plan_path, "outputs", site=plan_resources.load_site(resources))
    names = set()
    for r in plan.runs:
        m = r.params.get("model")
        if isinstance(m, str) and m:
            with contextlib.suppress(ValueError):
                names.add(_tiny_model(m))
    return sorted(names & set(tiny_families.NAMES))


def rehearse(plan_path, use_cover: bool = False, parallel: int = 1, outputs="outputs", resources: str | None = None,
             resume: bool = False, only: str | None = None, out=print, fresh_kernels: bool = False) -> int:
    """Rehearse a plan (see the module docstring); returns the exit code (0: every run done). The notebooks of
    each runner process run in one reused kernel (runner/warm_kernel.py) unless `fresh_kernels`."""
    rroot = Path(outputs).resolve() / REHEARSAL
    seen: dict = {}

    def fn(plan: plans.Plan) -> plans.Plan:
        n_all = len(plan.runs)
        plan = transform(plan, use_cover)
        seen["plan"] = plan
        if not resume:                 # start clean: a run finished by an earlier rehearsal proves nothing today
            for d in (plan.dir, plan.checkpoint_root / plan.name):
                if d.is_dir() and rroot in d.resolve().parents:
                    shutil.rmtree(d)
        out(f"rehearsal of {plan.path}: {len(plan.runs)} of {n_all} runs{' (--cover)' if use_cover else ''} on the "
            f"tiny world -> {plan.dir}")
        return plan

    t0 = time.time()
    from .. import files
    from ..world import tiny
    # Built here, once: with --parallel the first kernels would otherwise each start building it in one folder.
    tiny.ensure(files.tiny_dir())
    from ..world import tiny_families
    for name in _family_models(plan_path, resources):   # the other families' tiny models, for the same reason
        tiny_families.ensure(name, files.tiny_dir())
    with _env(XFER_REHEARSAL="1"):
        rc = runner.run_plan(plan_path, only=only, outputs=rroot, parallel=parallel, resources=resources,
                             out=out, transform=fn, warm_kernels=not fresh_kernels)
    plan = seen.get("plan")
    if plan is not None:
        failed = [x for x in (_failure_line(plan, r, t0) for r in plan.runs) if x]
        out(f"rehearsal of {plan.name}: {len(failed)} failed run(s), exit {rc}, {time.time() - t0:.0f} s")
        for line in failed:
            out(f"FAILED {line}")
    return rc


def register(sub) -> None:
    p = sub.add_parser("rehearse", help="run a plan's real structure on the offline tiny world (seconds per run)")
    p.add_argument("plan", help="plan file, e.g. params/plans/paper.yaml")
    p.add_argument("--cover", action="store_true",
                   help="only a covering subset: every grid value of every phase at least once, with dependencies")
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="runs executing at the same time (default 1)")
    p.add_argument("--outputs", default="outputs", metavar="DIR",
                   help="outputs root; the rehearsal writes under DIR/rehearsal/ (default: outputs)")
    p.add_argument("--resources", metavar="FILE", help="site resources file, as for `xfer run` (strategies follow)")
    p.add_argument("--only", metavar="PATTERN", help="fnmatch on run ids, as for `xfer run`")
    p.add_argument("--resume", action="store_true", help="keep runs an earlier rehearsal finished (default: fresh)")
    p.add_argument("--fresh-kernels", action="store_true",
                   help="start a fresh kernel for every notebook, as `xfer run` does (default: one warm kernel per "
                        "runner process, reset between notebooks; about half the time)")
    p.set_defaults(func=lambda a: rehearse(a.plan, a.cover, a.parallel, a.outputs, a.resources, a.resume, a.only,
                                           fresh_kernels=a.fresh_kernels))


if __name__ == "__main__":      # pragma: no cover
    sys.exit(rehearse(sys.argv[1]))
