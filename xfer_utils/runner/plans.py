"""Plan files -> runs (a DAG): readable run ids, dependencies, params checked against each notebook's parameters.

A plan is a YAML file (``params/plans/*.yaml``)::

    name: smoke                      # plan name = folder outputs/<name>/ (default: the file's stem)
    description: ...                 # free text
    include: base.yaml               # optional (str or list): take `defaults` from other plan files (paths
                                     #   relative to this file); this file's defaults win, key by key
    defaults:                        # params for every run of every phase; a notebook gets only the keys it
      model: tiny/model              #   declares (a default that NO notebook of the plan declares is an error)
    phases:                          # run in dependency order (file order among independent phases)
      intermediate:
        notebook: notebooks/10_intermediate.ipynb   # relative to the repo root, else to the plan file's folder
        params: {epochs: 1.0}        # fixed params of this phase
        grid:                        # cartesian product -> one run per combination, in this order
          model: [tiny/model]        #   (a scalar counts as a one-element list; a list-valued param needs [[a, b]])
          intermediate: [mnli, squad, mnli+squad, mnli+mlm]
          seed: [1]
        run_id: "{model}__{intermediate}__s{seed}"  # optional template (any param, and {phase}); default below
      target:
        notebook: notebooks/20_target.ipynb
        grid: {model: [tiny/model], intermediate: [none, mnli, squad], target_task: [xnli, pawsx], seed: [1]}
        needs: intermediate          # one upstream run each (see Dependencies)
      retrieval: {notebook: notebooks/30_retrieval.ipynb, grid: {...}, needs: intermediate}
      results: {notebook: notebooks/40_results.ipynb, after: [intermediate, target, retrieval]}

``grid`` may also be a list of dicts, one explicit run each (zip style, values taken as they are)::

        grid: [{intermediate: mnli, seed: 1}, {intermediate: squad, seed: 2, lr: 3.0e-5}]

A phase without ``grid`` is a single run whose id is the phase name.

**Resources** (optional ``resources:`` blocks, top level and per phase; a site file on top): see
:mod:`xfer_utils.runner.plan_resources`.

**Run ids** are readable and filesystem-safe and unique over the whole plan (checkpoints live in
``<checkpoint_root>/<plan>/<run_id>``). Default: the run's grid values joined by ``__``: strings as they are
(a value with a ``/`` - a path or hub id - by its :func:`alias`), ``seed`` as ``s<seed>``, other numbers as
``<key><value>``. Template placeholders get the same rendering (without the key prefix).

**Dependencies.** ``needs: P``: each run depends on the one run of phase P whose grid values agree on the grid
keys both runs have (e.g. model, intermediate, seed); a run whose value for such a shared key is ``none``
(``intermediate: none`` = the baseline on the raw model) has no dependency. ``after: [P, ...]``: the run
waits for every run of those phases. No match, an ambiguous match or a cycle is an error.

**Params** given to a notebook = defaults U phase params U grid values U runner-set values, filtered to the
keys the notebook declares (``papermill.inspect_notebook``). The runner sets ``run_id``, ``plan``, ``run_dir``
(``<outputs>/<plan>/<phase>/<run_id>``), ``checkpoint_dir`` (``<checkpoint_root>/<plan>/<run_id>``,
checkpoint_root = env ``XFER_CHECKPOINTS`` or ``<outputs>/../checkpoints``; ``<outputs>_checkpoints`` for an outputs
folder not named ``outputs``), for phases with ``needs``
``init_from`` (the upstream's ``checkpoint_dir/encoder``, ``""`` for baselines), and for phases with ``after``
(the results phase) ``results_csv`` / ``figures_dir`` (``<outputs>/<plan>/results.csv``, ``.../figures``).
:func:`validate` fails, before anything runs, on a phase param or grid key the notebook does not declare and on a
value whose type does not match the declared annotation (str, int, float - an int is fine -, bool, list, dict;
``Optional[X]`` allows None). It also fails on a parameter papermill cannot see: papermill's parser silently
drops a line holding a second ``=`` (``x: int = 0  # 0 = all`` vanishes) and annotations like ``int | None``.

>>> alias("FacebookAI/xlm-roberta-large"), alias("/data/models/Tiny_Model/"), alias("mnli+squad")
('xlm-roberta-large', 'tiny_model', 'mnli+squad')
>>> default_run_id({"model": "FacebookAI/xlm-roberta-large", "intermediate": "mnli", "target_task": "xnli",
...                 "seed": 1, "lr": 2e-05})
'xlm-roberta-large__mnli__xnli__s1__lr2e-05'
"""
from __future__ import annotations

import fnmatch
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import files
from ..files import read_yaml
from .nbparams import interface, type_ok
from .plan_resources import check_resources, plan_params, run_resources

PLAN_KEYS = {"name", "description", "include", "defaults", "phases", "resources"}
PHASE_KEYS = {"notebook", "description", "params", "grid", "run_id", "needs", "after", "resources"}
RUNNER_KEYS = ("run_id", "plan", "run_dir", "checkpoint_dir", "init_from", "results_csv", "figures_dir")
NONE = "none"              # a shared-key value that means "no upstream run" (the baseline)
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
_ID_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


@dataclass
class Run:
    run_id: str
    phase: str
    notebook: Path
    values: dict                       # this run's grid values
    params: dict                       # defaults U phase params U grid values U runner-set (not yet filtered)
    explicit: frozenset                # keys from phase params/grid: the notebook must declare them
    needs: tuple = ()                  # run ids this run waits for
    upstream: str | None = None        # the `needs` run whose encoder this run starts from
    run_dir: Path = Path()
    checkpoint_dir: Path = Path()
    resources: dict = field(default_factory=dict)  # plan-level U phase-level `resources:` (launchers read them)
    passed: dict = field(default_factory=dict)   # after validate(): the params papermill gets
    resolved: dict = field(default_factory=dict)  # after validate(): notebook defaults U passed


@dataclass
class Plan:
    name: str
    description: str
    path: Path
    root: Path                         # repo root: notebooks' cwd
    outputs: Path                      # absolute outputs root
    checkpoint_root: Path
    phases: dict                       # phase name -> its YAML block (in execution order)
    runs: list                         # Run, in dependency order
    defaults: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.outputs / self.name

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def failed_dir(self) -> Path:
        return self.dir / "_failed"

    def run(self, run_id: str) -> Run:
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise ValueError(f"plan {self.name!r} has no run {run_id!r}")


def alias(value: str) -> str:
    """Short readable name of a model path or hub id: last path component, lower-cased, unsafe chars -> '-'."""
    s = str(value).rstrip("/\\")
    if "/" in s or "\\" in s:
        s = re.split(r"[/\\]", s)[-1].lower()
    return _SAFE.sub("-", s).strip("-") or "x"


def _render(key: str, value, prefix: bool) -> str:
    if isinstance(value, str):
        return alias(value)
    if not prefix:
        return _SAFE.sub("-", str(value))
    return f"s{value}" if key == "seed" else _SAFE.sub("-", f"{key}{value}")


def default_run_id(values: dict) -> str:
    """The default run id: the grid values, rendered readable and filesystem-safe, joined by '__'."""
    return "__".join(_render(k, v, True) for k, v in values.items())


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding pyproject.toml (the repo root), else the cwd."""
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").exists():
            return p
    return Path.cwd().resolve()


def load(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """The plan file as a dict, `include`d defaults merged in (later files win), top-level keys checked."""
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"plan file {path} does not exist")
    if path in _seen:
        raise ValueError(f"plan file {path} includes itself (include cycle: {' -> '.join(map(str, _seen))})")
    raw = read_yaml(path, "plan file")
    if not isinstance(raw, dict):
        raise ValueError(f"plan file {path} must be a YAML mapping with keys {', '.join(sorted(PLAN_KEYS))}")
    unknown = set(raw) - PLAN_KEYS
    if unknown:
        raise ValueError(f"plan file {path} has unknown keys {sorted(unknown)}; valid keys: "
                         f"{', '.join(sorted(PLAN_KEYS))}")
    includes = raw.get("include") or []
    defaults: dict = {}
    for inc in [includes] if isinstance(includes, str) else includes:
        defaults.update(load(path.parent / inc, _seen + (path,)).get("defaults") or {})
    defaults.update(raw.get("defaults") or {})
    return {**raw, "defaults": defaults}


def _grid_runs(phase: str, grid) -> list[dict]:
    if grid is None:
        return [{}]
    if isinstance(grid, list):
        if not all(isinstance(g, dict) for g in grid):
            raise ValueError(f"phase {phase!r}: a list grid must be a list of mappings (one run each)")
        return [dict(g) for g in grid]
    if not isinstance(grid, dict):
        raise ValueError(f"phase {phase!r}: grid must be a mapping of key -> list of values, or a list of mappings")
    keys = list(grid)
    choices = [v if isinstance(v, list) else [v] for v in grid.values()]
    for k, c in zip(keys, choices):
        if not c:
            raise ValueError(f"phase {phase!r}: grid key {k!r} has an empty list of values")
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def _phase_order(phases: dict) -> list[str]:
    deps = {}
    for name, ph in phases.items():
        needs = ph.get("needs")
        if isinstance(needs, list):
            if len(needs) != 1:
                raise ValueError(f"phase {name!r}: needs names one phase (the encoder's source); use after: for more")
            needs = needs[0]
        after = ph.get("after") or []
        after = [after] if isinstance(after, str) else list(after)
        for d in ([needs] if needs else []) + after:
            if d not in phases:
                raise ValueError(f"phase {name!r} depends on unknown phase {d!r}; phases: {', '.join(phases)}")
        deps[name] = ([needs] if needs else []) + after
    order: list[str] = []
    while len(order) < len(phases):
        ready = [p for p in phases if p not in order and all(d in order for d in deps[p])]
        if not ready:
            raise ValueError(f"phases {sorted(set(phases) - set(order))} depend on each other in a cycle")
        order.append(ready[0])
    return order


def _resolve_notebook(nb: str, root: Path, plan_dir: Path, phase: str) -> Path:
    for base in (root, plan_dir):
        p = (base / nb).resolve()
        if p.exists():
            return p
    raise FileNotFoundError(f"notebook {nb!r} of phase {phase!r} is neither under {root} nor under {plan_dir}")


def expand(path: str | os.PathLike, outputs: str | os.PathLike = "outputs",
           checkpoint_root: str | os.PathLike | None = None, site: dict | None = None) -> Plan:
    """Plan file -> Plan with every run, its params and its dependencies, in execution order. `site`: a resources
    file's content (load_site), on top of the plan's resources blocks."""
    path = Path(path).resolve()
    raw = load(path)
    name = str(raw.get("name") or path.stem)
    if not _ID_OK.fullmatch(name):
        raise ValueError(f"plan name {name!r} is not filesystem-safe (letters, digits, . _ + = - only)")
    phases = _checked_phases(raw, name, path)
    order = _phase_order(phases)
    root = find_root(path.parent)
    outputs = Path(outputs).resolve()
    ckpt = Path(checkpoint_root or files.checkpoint_root(outputs)).resolve()
    defaults = raw.get("defaults") or {}
    plan_res = check_resources(raw.get("resources"), f"plan {name!r}")
    plan = Plan(name, str(raw.get("description") or ""), path, root, outputs, ckpt,
                {p: phases[p] for p in order}, [], defaults)
    by_phase: dict[str, list[Run]] = {}
    seen: dict[str, str] = {}
    for ph in order:
        block = phases[ph]
        nb = _resolve_notebook(str(block["notebook"]), root, path.parent, ph)
        fixed = block.get("params") or {}
        grid = block.get("grid")
        site = site or {}
        layers = [plan_res, check_resources(block.get("resources"), f"phase {ph!r} of plan {name!r}"), site,
                  (site.get("phases") or {}).get(ph) or {}]
        runs = []
        for values in _grid_runs(ph, grid):
            clash = [k for k in [*defaults, *fixed, *values] if k in RUNNER_KEYS]
            if clash:
                raise ValueError(f"phase {ph!r}: parameter {clash[0]!r} is set by the runner; remove it from the plan")
            params = {**defaults, **fixed, **values}
            rid = _run_id(ph, block, params, values, grid)
            if not _ID_OK.fullmatch(rid):
                raise ValueError(f"phase {ph!r}: run id {rid!r} is not filesystem-safe")
            if rid in seen:
                raise ValueError(f"run id {rid!r} occurs twice (phases {seen[rid]!r} and {ph!r}); give phase {ph!r} "
                                 f"a run_id template that tells them apart, e.g. \"{{model}}__...__{ph}\"")
            seen[rid] = ph
            res = run_resources(layers, params)
            params.update(plan_params(params, res, f"run {rid!r} (phase {ph!r})"))
            run = Run(rid, ph, nb, values, params, frozenset(fixed) | frozenset(values),
                      run_dir=plan.dir / ph / rid, checkpoint_dir=ckpt / name / rid, resources=dict(res))
            runs.append(run)
        by_phase[ph] = runs
        for run in runs:
            _link(run, block, by_phase)
            run.params.update(run_id=run.run_id, plan=name, run_dir=str(run.run_dir),
                              checkpoint_dir=str(run.checkpoint_dir))
            if block.get("after"):
                run.params.update(results_csv=str(plan.results_csv), figures_dir=str(plan.dir / "figures"))
            if block.get("needs"):
                up = next((u for u in by_phase[_needs(block)] if u.run_id == run.upstream), None)
                run.params["init_from"] = str(up.checkpoint_dir / "encoder") if up else ""
        plan.runs += runs
    return plan


def _checked_phases(raw: dict, name: str, path: Path) -> dict:
    """The plan's `phases:` mapping; a missing notebook or an unknown key fails naming the valid keys."""
    phases = raw.get("phases")
    if not isinstance(phases, dict) or not phases:
        raise ValueError(f"plan {name!r} ({path}) has no phases")
    for ph, block in phases.items():
        if not isinstance(block, dict) or "notebook" not in block:
            raise ValueError(f"phase {ph!r} of plan {name!r} needs at least a `notebook:`")
        unknown = set(block) - PHASE_KEYS
        if unknown:
            raise ValueError(f"phase {ph!r} of plan {name!r} has unknown keys {sorted(unknown)}; valid keys: "
                             f"{', '.join(sorted(PHASE_KEYS))}")
    return phases


def _run_id(ph: str, block: dict, params: dict, values: dict, grid) -> str:
    """The phase's `run_id:` template filled from the run's params, else default_run_id of its grid values (the
    phase name for a phase without a grid)."""
    if not block.get("run_id"):
        return default_run_id(values) if grid is not None else ph
    try:
        return str(block["run_id"]).format_map({"phase": ph, **{k: _render(k, v, False) for k, v in params.items()}})
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"phase {ph!r}: run_id template {block['run_id']!r} names {e} which is not "
                         f"a param of the run; params: {', '.join(params)}") from None


def _needs(block: dict) -> str | None:
    needs = block.get("needs")
    return needs[0] if isinstance(needs, list) else needs


def _link(run: Run, block: dict, by_phase: dict) -> None:
    needs = _needs(block)
    deps: list[str] = []
    if needs:
        cands = []
        baseline = False
        for u in by_phase[needs]:
            shared = [k for k in run.values if k in u.values]
            if any(run.values[k] == NONE for k in shared):
                baseline = True
                break
            if all(u.values[k] == run.values[k] for k in shared):
                cands.append(u)
        if not baseline:
            want = ", ".join(f"{k}={v}" for k, v in run.values.items())
            if not cands:
                raise ValueError(f"run {run.run_id!r} (phase {run.phase!r}) needs a run of phase {needs!r} matching "
                                 f"{want}, and there is none (use {NONE!r} for no dependency)")
            if len(cands) > 1:
                raise ValueError(f"run {run.run_id!r} (phase {run.phase!r}) matches {len(cands)} runs of phase "
                                 f"{needs!r} ({', '.join(c.run_id for c in cands[:3])}); add the grid keys that "
                                 f"tell them apart to phase {run.phase!r}")
            run.upstream = cands[0].run_id
            deps.append(cands[0].run_id)
    after = block.get("after") or []
    for ph in [after] if isinstance(after, str) else after:
        deps += [u.run_id for u in by_phase[ph] if u.run_id not in deps]
    run.needs = tuple(deps)


# ---- params checked against the notebooks ----

def validate(plan: Plan, runs: list | None = None) -> Plan:
    """Check every run's params against its notebook's parameters cell; fill `run.passed` / `run.resolved`.

    Raises one ValueError (the first problem, and how many more) before anything runs."""
    runs = plan.runs if runs is None else runs
    errors: list[str] = []
    ifaces = {ph: interface(_resolve_nb(plan, ph)) for ph in plan.phases}
    declared = set().union(*ifaces.values())
    for k in plan.defaults:
        if k not in declared:
            errors.append(f"defaults key {k!r} of plan {plan.name!r} is declared by no notebook of the plan")
    for run in runs:
        iface = ifaces[run.phase]
        for k in sorted(run.explicit):
            if k not in iface:
                have = ", ".join(iface) or "nothing (no cell tagged 'parameters')"
                errors.append(f"run {run.run_id!r} (phase {run.phase!r}): parameter {k!r} is not declared by "
                              f"{run.notebook.name}, which declares: {have}")
        passed = {}
        for k, v in run.params.items():
            if k not in iface:
                continue
            ann = iface[k][0]
            if not type_ok(v, ann):
                errors.append(f"run {run.run_id!r} (phase {run.phase!r}): parameter {k!r} must be {ann} (declared "
                              f"in {run.notebook.name}), got {type(v).__name__} ({v!r})")
            if isinstance(v, int) and not isinstance(v, bool) and "float" in ann and "int" not in ann:
                v = float(v)
            passed[k] = v
        run.passed = passed
        run.resolved = {**{k: d for k, (_, d) in iface.items()}, **passed}
    if errors:
        more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
        raise ValueError(errors[0] + more + "; nothing was run")
    return plan


def _resolve_nb(plan: Plan, phase: str) -> Path:
    return _resolve_notebook(str(plan.phases[phase]["notebook"]), plan.root, plan.path.parent, phase)


def select(plan: Plan, pattern: str | None) -> list[Run]:
    """Runs whose id (or phase/id) matches a comma-separated fnmatch pattern, plus everything they depend on
    (transitively; finished dependencies are skipped at run time), in execution order."""
    if not pattern:
        return list(plan.runs)
    pats = [p.strip() for p in pattern.split(",") if p.strip()]
    hit = {r.run_id for r in plan.runs
           if any(fnmatch.fnmatchcase(r.run_id, p) or fnmatch.fnmatchcase(f"{r.phase}/{r.run_id}", p) for p in pats)}
    if not hit:
        ex = ", ".join(r.run_id for r in plan.runs[:3])
        raise ValueError(f"--only {pattern!r} matches no run of plan {plan.name!r}; run ids look like: {ex}")
    by_id = {r.run_id: r for r in plan.runs}
    todo = list(hit)
    while todo:
        for d in by_id[todo.pop()].needs:
            if d not in hit:
                hit.add(d)
                todo.append(d)
    return [r for r in plan.runs if r.run_id in hit]
