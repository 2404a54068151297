"""Papermill execution of a plan (see plans.py for the plan format): `xfer run | status | collect`.

Each run executes its phase notebook with papermill into ``<outputs>/<plan>/<phase>/<run_id>/``:
``params.yaml`` (the exact params passed: ``papermill NB out.ipynb -f params.yaml`` reproduces the run),
``notebook.ipynb`` (saved after every cell), ``notebook.log`` (the kernel's stdout/stderr), the notebook's own
outputs (``metrics.jsonl``), and ``_done.json`` (timing) once it succeeded.

Rules:
- params of every run are validated against the notebooks first (plans.validate), then their values
  (validate.check_plan: tasks, languages, labels, models, corpora): one error, nothing runs;
- runs go in dependency order; a run with ``_done.json`` is skipped, unless a dependency finished after it
  started (then it is stale and re-runs, e.g. the results notebook after a re-run target);
- a run folder without ``_done.json`` (interrupted) is executed again; the notebook resumes from its
  checkpoints (``checkpoint_dir``, outside outputs/) and ``results.append_rows`` replaces re-computed rows;
- a failed run's folder moves to ``<outputs>/<plan>/_failed/<run_id>/`` (executed notebook with the error,
  params.yaml, notebook.log, error.txt; its metrics.jsonl goes along, so the collected table never holds it);
  runs that depend on it are ``blocked``; the others go on; the command exits 1 with a summary;
- ``results.csv`` is collected before every run that waits on whole phases (``after:``) and at the end;
- ``--only PATTERN`` (fnmatch on run ids or phase/run_id, comma-separated) also runs what the matched runs
  depend on (finished dependencies are simply skipped).

Launchers: ``local`` (default) executes the runs one after the other in this process. ``submitit`` submits one
job per run through submitit (``--cluster slurm``, ``local`` or ``auto``: Slurm when ``sbatch`` is there), with the
job's resources from the plan (``resources:``: gpus, mem, time, partition, cpus, slurm), and the same rules: the
job itself executes the notebook exactly as the local launcher does (params.yaml, notebook.log, ``_done.json``,
``_failed/``), finished runs are not submitted, interrupted ones resume. On Slurm every run is submitted at once,
a run waiting for its upstream runs with ``--dependency=afterok:<job ids>`` (a failed upstream cancels it:
``--kill-on-invalid-dep=yes``), and runs that will re-execute make their finished dependents re-execute too (the
local launcher's staleness rule); a run whose last job (``_submitit/jobs.json``) is still pending or running is
not submitted again; a job that times out or is pre-empted is requeued and its notebook resumes from
its checkpoints. submitit's local executor has no dependencies: runs are submitted when their upstream runs
have finished, at most ``--parallel`` at a time. Job logs: ``<outputs>/<plan>/_submitit/<job id>/``.

>>> fmt_hours(0.0004), fmt_hours(1.25), fmt_hours(None)
('<0.01', '1.25', '?')
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

import yaml

from . import cost, plan_resources, plans, validate
from .. import files, results

DONE = "_done.json"
RUNNING = "_running.json"            # in a run folder while a process executes it (pid, host)
LOCK = "_runner.lock"                # in <outputs>/<plan>/: the runner that holds the plan (files.plan_lock)
LAUNCHERS = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60      # submitit's local executor kills a job after 2 minutes unless told otherwise


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def params_digest(params: dict) -> str:
    """Digest of the params that define a run's result (paths set by the runner left out)."""
    keep = {k: v for k, v in params.items() if k not in ("run_dir", "checkpoint_dir", "init_from", "results_csv",
                                                          "figures_dir")}
    return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_done(run: plans.Run) -> dict | None:
    p = run.run_dir / DONE
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_state(plan: plans.Plan, run: plans.Run) -> str:
    """done | failed | running (a live process executes it) | partial (interrupted: resumes) | pending."""
    if read_done(run) is not None:
        return "done"
    if (plan.failed_dir / run.run_id).exists():
        return "failed"
    if run.run_dir.exists():
        try:
            holder = json.loads((run.run_dir / RUNNING).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            holder = None
        return "running" if holder and files.holder_alive(holder) is not False else "partial"
    return "pending"


def fmt_hours(h: float | None) -> str:
    if h is None:
        return "?"
    return "<0.01" if 0 < h < 0.005 else f"{h:.2f}"


def _fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


def _stale(run: plans.Run, done: dict, by_id: dict) -> str | None:
    for d in run.needs:
        dd = read_done(by_id[d])
        if dd and dd.get("finished_ts", 0) > done.get("started_ts", 0):
            return d
    return None


# ---- launchers ----

@contextlib.contextmanager
def _stderr_fd_to(f):
    """Point file descriptor 2 at `f` so the kernel process (which inherits it) logs there, not on the console."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def execute_local(plan: plans.Plan, run: plans.Run, kernel=None) -> None:
    """Run one notebook with papermill; raises on failure (the executed notebook is written either way).
    The kernel's stdout/stderr (and its own process-level messages) go to run_dir/notebook.log. `kernel`: a
    warm_kernel.WarmKernel to execute in (rehearsals) instead of a fresh kernel; its process-level messages stay
    in the log of the run that started it."""
    import papermill
    execute = papermill.execute_notebook if kernel is None else kernel.execute
    with open(run.run_dir / "notebook.log", "a", encoding="utf-8") as log, _stderr_fd_to(log):
        log.write(f"\n===== {_now()} {run.phase}/{run.run_id}\n")
        log.flush()
        execute(
            str(run.notebook), str(run.run_dir / "notebook.ipynb"), parameters=run.passed, cwd=str(plan.root),
            kernel_name=files.env("XFER_KERNEL", "python3"), progress_bar=False, log_output=False,
            stdout_file=log, stderr_file=log, request_save_on_cell_execute=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_text(e: BaseException) -> tuple[str, str]:
    """(one line, full text) of a failure."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        tb = "\n".join(_ANSI.sub("", line) for line in getattr(e, "traceback", []) or [])
        line = f"{ename}: {evalue}"
        return line, f"{line}\n\n{tb}\n"
    line = f"{type(e).__name__}: {e}"
    return line, line + "\n\n" + "".join(traceback.format_exception(e))


def _fail(plan: plans.Plan, run: plans.Run, e: BaseException) -> str:
    line, text = _error_text(e)
    files.atomic_write_text(run.run_dir / "error.txt", text)
    dest = plan.failed_dir / run.run_id
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run.run_dir), str(dest))
    return _headline(line)


def _headline(text: str) -> str:
    """The first line of an error, whole: its end is where the valid choices are named. Only a runaway line
    (a dumped object) is cut, and then at a sentence boundary."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else "failed"
    if len(line) <= 600:
        return line
    cut = line.rfind("; ", 0, 600)
    return line[:cut if cut > 80 else 600] + " ..."


def _execute(plan: plans.Plan, run: plans.Run, launch) -> tuple[str, str]:
    """Execute one run: ('done', '') or ('failed', reason). KeyboardInterrupt propagates (run stays partial)."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / DONE).unlink(missing_ok=True)
    files.atomic_write_text(run.run_dir / "params.yaml", yaml.safe_dump(run.passed, sort_keys=False,
                                                                         allow_unicode=True))
    files.atomic_write_text(run.run_dir / RUNNING, json.dumps(files.whoami()))
    t0, started = time.time(), _now()
    try:
        launch(plan, run)
    except Exception as e:       # noqa: BLE001 - any failure of one run must not stop the plan
        if getattr(e, "ename", None) == "KeyboardInterrupt":    # Ctrl-C reached the kernel: interrupted, not failed
            raise KeyboardInterrupt from e
        (run.run_dir / RUNNING).unlink(missing_ok=True)
        return "failed", _fail(plan, run, e)
    finally:
        (run.run_dir / RUNNING).unlink(missing_ok=True)
    t1 = time.time()
    files.atomic_write_text(run.run_dir / DONE, json.dumps({
        "run_id": run.run_id, "phase": run.phase, "plan": plan.name, "notebook": str(run.notebook),
        "started_at": started, "finished_at": _now(), "started_ts": t0, "finished_ts": t1,
        "wall_s": round(t1 - t0, 2), "params_digest": params_digest(run.passed), "git_sha": results.git_sha(),
        "weights_digest": _weights_digest(run),
    }, indent=1) + "\n")
    old = plan.failed_dir / run.run_id
    if old.exists():
        shutil.rmtree(old)
    return "done", ""


def _weights_digest(run: plans.Run) -> str:
    """The checkpoint identity digest of what the run trained (identity.py), '' for a run that trains nothing."""
    try:
        return json.loads((run.checkpoint_dir / "identity.json").read_text(encoding="utf-8"))["digest"]
    except (OSError, ValueError, KeyError):
        return ""


def collect_plan(plan: plans.Plan, out=None):
    """results.csv from the finished runs of this plan only (a `_done.json` whose params are the plan's): an
    interrupted run's rows, a run folder the plan no longer has and a run whose params changed since stay out, and
    `out` (when given) gets one line per left-out folder and per truncated line skipped."""
    paths, left = [], []
    checked = all(r.passed for r in plan.runs)      # `passed` is filled by plans.validate
    for r in plan.runs:
        m = r.run_dir / "metrics.jsonl"
        done = read_done(r)
        if done is None:
            if m.exists():
                left.append(f"{r.phase}/{r.run_id}: not finished (no {DONE})")
            continue
        if checked and done.get("params_digest") not in (None, params_digest(r.passed)):
            left.append(f"{r.phase}/{r.run_id}: params changed since it ran (delete {r.run_dir} to redo)")
        elif m.exists():
            paths.append(m)
    known = {r.run_dir / "metrics.jsonl" for r in plan.runs}
    for m in sorted(plan.dir.rglob("metrics.jsonl")) if plan.dir.exists() else []:
        if m not in known and "_failed" not in m.relative_to(plan.dir).parts:
            left.append(f"{m.parent.relative_to(plan.dir)}: not a run of plan {plan.name}")
    df = results.collect(plan.dir, plan.results_csv, paths=paths, on_bad=lambda msg: left.append(f"skipped {msg}"))
    if out is not None and left:
        out(f"left out of {plan.results_csv.name}: " + "".join(f"\n  {x}" for x in left))
    return df


def cost_table(plan: plans.Plan, runs: list, gpu: str = "a100", out=print) -> float:
    """Print the runs in order with their dependencies and estimated GPU-hours; returns the total."""
    table = cost.load_table()
    if gpu not in (table.get("gpus") or {}):
        raise ValueError(f"unknown GPU kind {gpu!r}; the throughput table knows: {', '.join(table.get('gpus') or {})}")
    w = max([len(r.run_id) for r in runs] + [6])
    pw = max([len(r.phase) for r in runs] + [5])
    out(f"plan {plan.name}: {len(runs)} runs -> {plan.dir}  (GPU-hours on one {gpu}, estimated: see cost.py)")
    out(f"{'#':>3}  {'phase':<{pw}}  {'run_id':<{w}}  {'GPU-h':>6}  depends on")
    total, unknown, notes = 0.0, 0, set()
    for i, r in enumerate(runs, 1):
        h, note = cost.estimate(r.phase, r.resolved or r.params, gpu, table)
        if h is None:
            unknown += 1
        else:
            total += h
        if note:
            notes.add(note)
        after = plan.phases[r.phase].get("after")
        dep = (f"after {', '.join([after] if isinstance(after, str) else after)} ({len(r.needs)} runs)" if after
               else ", ".join(r.needs) or "-")
        out(f"{i:>3}  {r.phase:<{pw}}  {r.run_id:<{w}}  {fmt_hours(h):>6}  {dep}")
    extra = f" (+ {unknown} runs of unknown cost)" if unknown else ""
    out(f"total: {fmt_hours(total)} GPU-hours on one {gpu}{extra}; throughput: {'; '.join(sorted(notes)) or '-'}")
    _print_lengths(runs, out)
    return total


def _print_lengths(runs: list, out=print) -> None:
    """Which tokens-per-example figures the costs rest on: measured with XLM-R's real tokenizer on real text
    (resources/token_lengths.yaml) or estimated (cost.TOKENS_PER_EXAMPLE, where no real text exists)."""
    used = cost.lengths_used([(r.phase, r.resolved or r.params) for r in runs])
    for status, what in (("measured", "measured (XLM-R tokenizer, real text; resources/token_lengths.yaml)"),
                         ("measured-proxy", "measured on stand-in real text (see token_lengths.yaml `text`)"),
                         ("estimated", "estimated (no real text: cost.TOKENS_PER_EXAMPLE)")):
        figs = [f"{t} {use} {n:.0f}" for t, use, n, st, _ in used if st == status]
        if figs:
            out(f"tokens per example, {what}: {', '.join(figs)}")


def _decide(plan: plans.Plan, r: plans.Run, by_id: dict, state: dict, head: str, out) -> bool:
    """The skip/resume rules, shared by the launchers: True when `r` must execute (records and prints the
    outcome otherwise)."""
    bad = [d for d in r.needs if state.get(d, ("",))[0] in ("failed", "blocked", "interrupted")]
    if bad:
        state[r.run_id] = ("blocked", f"needs {bad[0]}", 0.0)
        out(f"{head}  blocked (needs {bad[0]})")
        return False
    done = read_done(r)
    if done is not None:
        stale = _stale(r, done, by_id)
        if stale is None:
            changed = done.get("params_digest") not in (None, params_digest(r.passed))
            note = (f"; params changed since - delete {r.run_dir} and {r.checkpoint_dir} to redo (its checkpoints "
                    f"hold the old settings' weights)") if changed else ""
            state[r.run_id] = ("skipped", "", 0.0)
            out(f"{head}  skipped (done {done.get('finished_at', '')}{note})")
            return False
        out(f"{head}  stale (dependency {stale} re-ran): executing again")
    elif r.run_dir.exists():
        out(f"{head}  resuming an interrupted run")
    return True


def _summary(plan: plans.Plan, state: dict, out, interrupted: bool) -> int:
    df = collect_plan(plan, out)
    counts = {k: sum(1 for s in state.values() if s[0] == k)
              for k in ("done", "skipped", "failed", "blocked", "interrupted")}
    out(f"results: {len(df)} rows -> {plan.results_csv}")
    out("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or k in ("done", "skipped")))
    for rid, (s, why, _) in state.items():
        if s in ("failed", "blocked"):
            out(f"  {s:<8} {rid}: {why}")
    if interrupted:
        return 130
    return 1 if counts["failed"] or counts["blocked"] else 0


def run_plan(plan_path, only: str | None = None, dry_run: bool = False, outputs="outputs", launcher: str = "local",
             gpu: str = "a100", out=print, cluster: str = "auto", parallel: int = 1, wait: bool = True,
             poll_s: float | None = None, resources: str | None = None, wait_lock: bool = False,
             transform=None, warm_kernels: bool = False, runs_per_gpu: int = 0, gpus: str | None = None) -> int:
    """`_run_plan` holding the plan's lock (one runner per outputs root + plan; see files.plan_lock): a second
    runner exits at once naming the holder, or queues behind it with `wait_lock`. A dry run takes no lock."""
    try:
        with contextlib.ExitStack() as held:    # _run_plan takes the lock once the plan is valid, before any write
            return _run_plan(plan_path, only, dry_run, outputs, launcher, gpu, out, cluster, parallel, wait, poll_s,
                             resources, _lock=lambda plan: held.enter_context(
                                 files.plan_lock(plan.dir / LOCK, wait=wait_lock, out=out)), transform=transform,
                             warm_kernels=warm_kernels, runs_per_gpu=runs_per_gpu, gpus=gpus)
    except files.LockHeld as e:
        out(f"xfer run: {e}")
        return 3


def _run_plan(plan_path, only: str | None = None, dry_run: bool = False, outputs="outputs", launcher: str = "local",
              gpu: str = "a100", out=print, cluster: str = "auto", parallel: int = 1, wait: bool = True,
              poll_s: float | None = None, resources: str | None = None, _lock=None, transform=None,
              warm_kernels: bool = False, runs_per_gpu: int = 0, gpus: str | None = None) -> int:
    """Execute a plan (or list it with costs when `dry_run`). Returns the exit code: 0 ok, 1 failed/blocked runs,
    130 interrupted. `cluster`, `parallel`, `wait`, `poll_s`: the submitit launcher's options; `resources`: a site
    resources file (plan_resources.load_site); `transform`: Plan -> Plan applied to the expanded plan before
    anything else (xfer rehearse: the same plan on the tiny world); `warm_kernels`: the local launcher executes
    the notebooks of each runner process in one reused kernel (runner/warm_kernel.py; rehearsals only, never with
    GPU placement: a kernel sees the GPU its process had when it started); `runs_per_gpu` (or the site file's
    `runs_per_gpu`) > 0: the local launcher places that many runs at most on each of `gpus` (`Placer`)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r} is not available; valid launchers: {', '.join(LAUNCHERS)}")
    site = plan_resources.load_site(resources)
    runs_per_gpu = runs_per_gpu or int(site.get("runs_per_gpu", 0) or 0)
    if runs_per_gpu and launcher != "local":
        raise ValueError(f"runs per GPU are placed by the local launcher; with launcher {launcher!r} ask the "
                         f"scheduler for GPU shares instead (valid launcher for --runs-per-gpu: local)")
    plan = plans.expand(plan_path, outputs, site=site)
    if transform is not None:
        plan = transform(plan)
    runs = plans.select(plan, only)
    plans.validate(plan)
    validate.check_plan(plan, corpora=not dry_run)      # values (tasks, labels, models, corpora): before any kernel
    if dry_run:
        cost_table(plan, runs, gpu, out)
        try:
            validate.check_plan(plan)
        except ValueError as e:
            out(f"note: `xfer run` needs data this machine lacks: {e}")
        return 0
    if _lock is not None:
        _lock(plan)
    if launcher == "submitit":
        return run_submitit(plan, runs, out, cluster, parallel, wait, poll_s, plan_path)
    by_id = {r.run_id: r for r in plan.runs}
    state: dict[str, tuple[str, str, float]] = {}
    n = len(runs)
    out(f"plan {plan.name}: {n} runs -> {plan.dir} (checkpoints: {plan.checkpoint_root / plan.name})")
    if runs_per_gpu:
        placer = Placer(visible_gpus(gpus), runs_per_gpu, _gpu_memory_gb())
        slots = len(placer.held) * runs_per_gpu
        out(f"placing up to {runs_per_gpu} runs on each of GPUs {', '.join(placer.held)} ({slots} at a time)")
        return _summary(plan, state, out, _run_parallel(plan, runs, by_id, state, max(parallel, slots), out,
                                                        plan_path, placer))
    if parallel > 1:
        return _summary(plan, state, out,
                        _run_parallel(plan, runs, by_id, state, parallel, out, plan_path, warm=warm_kernels))
    with contextlib.ExitStack() as stack:
        launch = execute_local
        if warm_kernels:
            from .warm_kernel import WarmKernel
            kernel = WarmKernel()
            stack.callback(kernel.close)
            launch = functools.partial(execute_local, kernel=kernel)
        return _run_sequential(plan, runs, by_id, state, launch, out, plan_path)


def _run_sequential(plan: plans.Plan, runs: list, by_id: dict, state: dict, launch, out, plan_path) -> int:
    n = len(runs)
    interrupted = False
    for i, r in enumerate(runs, 1):
        head = f"[{i:>{len(str(n))}}/{n}] {r.phase}/{r.run_id}"
        if not _decide(plan, r, by_id, state, head, out):
            continue
        if plan.phases[r.phase].get("after"):
            collect_plan(plan)
        tty = out is print and sys.stdout.isatty()
        if tty:
            print(f"{head}  running ...", end="", flush=True)
        else:       # a log file or a pipe: a line of its own, flushed, so a long run shows it has started
            out(f"{head}  running ...")
            sys.stdout.flush()
        t0 = time.time()
        try:
            status, why = _execute(plan, r, launch)
        except KeyboardInterrupt:
            out(f"{chr(13) if tty else ''}{head}  interrupted: run `xfer run {plan_path}` again to resume")
            state[r.run_id] = ("interrupted", "", time.time() - t0)
            interrupted = True
            break
        wall = time.time() - t0
        state[r.run_id] = (status, why, wall)
        msg = f"{head}  {status} ({_fmt_s(wall)})" + (f": {why} -> {plan.failed_dir / r.run_id}" if why else "")
        out(("\r" if tty else "") + msg)
    return _summary(plan, state, out, interrupted)


_WORKER_KERNEL = None      # a runner worker process's warm kernel (warm_kernels=True), shut down when it exits


def _execute_local_worker(plan: plans.Plan, run: plans.Run, gpu: str | None = None,
                          warm: bool = False) -> tuple[str, str]:
    global _WORKER_KERNEL
    if gpu is not None:          # the run's kernel (a child of this worker) sees its one GPU as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if not warm or gpu is not None:
        return _execute(plan, run, execute_local)
    if _WORKER_KERNEL is None:
        import multiprocessing.util
        from .warm_kernel import WarmKernel
        _WORKER_KERNEL = WarmKernel()
        # pool workers leave through os._exit: atexit would not run, multiprocessing's finalizers do
        multiprocessing.util.Finalize(_WORKER_KERNEL, _WORKER_KERNEL.close, exitpriority=10)
    return _execute(plan, run, functools.partial(execute_local, kernel=_WORKER_KERNEL))


def run_memory_gb(run: plans.Run, gpu_gb: float | None = None) -> float | None:
    """The memory planner's peak estimate for one run (ladder.estimate_memory_gb of its model and strategy, one
    GPU; strategy 'auto' is the planner's choice for a `gpu_gb` GPU, full fine-tuning when that is unknown); None
    when its model is not on the ladder or its strategy spans several GPUs."""
    from .. import ladder
    params = run.resolved or run.params
    model = params.get("model")
    m = ladder.lookup(model) if isinstance(model, str) else None
    strategy = params.get("strategy") or "auto"
    if m is not None and strategy == "auto":
        strategy = ladder.plan_strategy(m, gpu_gb).strategy if gpu_gb else "full"
    if m is None or strategy not in ladder.STRATEGIES or strategy == "fsdp":
        return None
    return ladder.estimate_memory_gb(m, strategy)


class Placer:
    """Several runs per GPU (local launcher, `--runs-per-gpu N` or the resources key `runs_per_gpu`): a run goes to
    the least-loaded GPU with a free slot whose runs' memory estimates (`run_memory_gb`) plus its own fit the GPU
    (resources `gpu_mem`; unchecked when neither it nor the driver gives a size). A run without an estimate, or
    larger than the GPU, runs alone. Each run is its own process and seeds itself: sharing changes no result."""

    def __init__(self, gpus: list[str], per_gpu: int, capacity_gb: float | None = None):
        if per_gpu < 1:
            raise ValueError(f"runs per GPU must be >= 1, got {per_gpu}")
        if not gpus:
            raise ValueError("--runs-per-gpu needs GPUs and this machine shows none; name them with --gpus 0,1")
        self.per_gpu, self.capacity = per_gpu, capacity_gb
        self.held: dict[str, dict[str, float | None]] = {g: {} for g in gpus}

    def place(self, run: plans.Run) -> tuple[str, str] | None:
        """(GPU id, the placement line), or None when no GPU has room now."""
        cap = run.resources.get("gpu_mem", self.capacity)
        est = run_memory_gb(run, cap)
        alone = est is None or (cap is not None and est > cap)
        choice = None
        for g, runs in self.held.items():
            if len(runs) >= self.per_gpu or (runs and (alone or None in runs.values())):
                continue
            used = sum(runs.values())
            if cap is not None and not alone and used + est > cap:
                continue
            if choice is None or (len(runs), used) < (len(self.held[choice]), sum(self.held[choice].values())):
                choice = g
        if choice is None:
            return None
        self.held[choice][run.run_id] = None if alone else est
        runs = self.held[choice]
        mem = "no estimate: alone" if alone else f"{est:.1f} GB estimated"
        total = sum(v for v in runs.values() if v is not None)
        room = f", {total:.1f}/{cap:g} GB" if cap is not None else ", memory unchecked (no gpu_mem)"
        return choice, (f"placed {run.phase}/{run.run_id} on GPU {choice} ({mem}; GPU {choice} now runs "
                        f"{len(runs)}/{self.per_gpu}{room})")

    def release(self, run: plans.Run) -> None:
        for runs in self.held.values():
            runs.pop(run.run_id, None)


def visible_gpus(gpus: str | None = None) -> list[str]:
    """GPU ids for placement: `gpus` ('0,1'), else CUDA_VISIBLE_DEVICES, else every GPU the driver lists."""
    if gpus:
        return [g.strip() for g in str(gpus).split(",") if g.strip()]
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [x.strip() for x in cvd.split(",") if x.strip()]
    return [str(i) for i in range(_local_gpus())]


def _run_parallel(plan: plans.Plan, runs: list, by_id: dict, state: dict, parallel: int, out, plan_path,
                  placer: Placer | None = None, warm: bool = False) -> bool:
    """The local launcher with `parallel` runs at a time, each in its own worker process (papermill's kernels
    and the fd-level log redirection are per process); a run starts once its dependencies are finished and, with
    a `placer`, once a GPU has room for it. Returns True when interrupted."""
    import concurrent.futures as cf
    import multiprocessing as mp
    order = {r.run_id: i for i, r in enumerate(runs, 1)}
    pending, running, decided = list(runs), {}, set()
    width = len(str(len(runs)))
    # Split the machine's threads between the workers' kernels (inherited by each papermill kernel).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    with cf.ProcessPoolExecutor(parallel, mp_context=mp.get_context("spawn")) as pool:
        try:
            while pending or running:
                for r in list(pending):
                    if len(running) >= parallel:
                        break
                    if any(d in order and d not in state for d in r.needs):
                        continue          # a dependency has not finished yet
                    head = f"[{order[r.run_id]:>{width}}/{len(runs)}] {r.phase}/{r.run_id}"
                    if r.run_id not in decided:
                        if not _decide(plan, r, by_id, state, head, out):
                            pending.remove(r)
                            continue
                        decided.add(r.run_id)
                    gpu = None
                    if placer is not None:
                        spot = placer.place(r)
                        if spot is None:
                            continue      # no GPU has room for it now: it waits for a run to finish
                        gpu, line = spot
                        out(line)
                    pending.remove(r)
                    if plan.phases[r.phase].get("after"):
                        collect_plan(plan)
                    running[pool.submit(_execute_local_worker, plan, r, gpu, warm)] = (r, head, time.time())
                    out(f"{head}  running ...")
                if not running:
                    continue
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    r, head, t0 = running.pop(fut)
                    if placer is not None:
                        placer.release(r)
                    status_, why = fut.result()
                    state[r.run_id] = (status_, why, time.time() - t0)
                    out(f"{head}  {status_} ({_fmt_s(time.time() - t0)})"
                        + (f": {why} -> {plan.failed_dir / r.run_id}" if why else ""))
        except KeyboardInterrupt:
            for fut, (r, head, t0) in running.items():
                fut.cancel()
                state[r.run_id] = ("interrupted", "", time.time() - t0)
            out(f"interrupted: run `xfer run {plan_path}` again to resume")
            return True
    return False


# ---- submitit launcher ----

class RunJob:
    """One run as a submitit job: executes the notebook like the local launcher (in the job's process). Raises
    when the run failed, so that Slurm's afterok dependencies hold back (and cancel) its dependents. submitit
    calls `checkpoint` on timeout / pre-emption: the job is requeued and the notebook resumes from its
    checkpoints (the run folder has no _done.json yet)."""

    def __init__(self, plan: plans.Plan, run: plans.Run):
        self.plan, self.run = plan, run

    def __call__(self) -> dict:
        plan, run = self.plan, self.run
        by_id = {r.run_id: r for r in plan.runs}
        missing = [d for d in run.needs if read_done(by_id[d]) is None]
        if missing:
            raise RuntimeError(f"run {run.run_id}: dependency {missing[0]} has not finished")
        if plan.phases[run.phase].get("after"):
            collect_plan(plan)
        t0 = time.time()
        status, why = _execute(plan, run, execute_local)
        if status != "done":
            raise RuntimeError(f"run {run.run_id} failed: {why}")
        return {"run_id": run.run_id, "status": status, "wall_s": time.time() - t0}

    def checkpoint(self, *args, **kwargs):
        import submitit
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _local_gpus() -> int:
    """GPUs this machine shows (without importing torch): CUDA_VISIBLE_DEVICES, else the NVIDIA driver's list."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return len([x for x in cvd.split(",") if x.strip()])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def _gpu_memory_gb() -> float | None:
    """The smallest visible GPU's memory in GB from the driver (nvidia-smi), None when it cannot say."""
    import subprocess
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True)
        sizes = [float(x) / 1024 for x in res.stdout.split()]     # MiB
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return min(sizes) if sizes else None


def job_parameters(plan: plans.Plan, run: plans.Run, cluster: str) -> dict:
    """submitit AutoExecutor parameters for one run, from its `resources`."""
    res = run.resources
    p: dict = {"name": f"xfer-{plan.name}-{run.run_id}"[:120], "nodes": 1, "tasks_per_node": 1}
    if "gpus" in res:
        if res["gpus"] > 0 or cluster != "slurm":      # Slurm: no GPU request at all rather than 0 GPUs
            p["gpus_per_node"] = int(res["gpus"])
    elif cluster == "local":           # the local executor hides every GPU unless asked for them
        p["gpus_per_node"] = _local_gpus()
    if "time" in res:
        p["timeout_min"] = plan_resources.time_minutes(res["time"])
    elif cluster == "local":
        p["timeout_min"] = LOCAL_TIMEOUT_MIN
    if "mem" in res:
        p["mem_gb"] = plan_resources.mem_gb(res["mem"])
    if "cpus" in res:
        p["cpus_per_task"] = int(res["cpus"])
    if "partition" in res:
        p["slurm_partition"] = str(res["partition"])
    return p


def make_executor(plan: plans.Plan, cluster: str = "auto"):
    """submitit's AutoExecutor with its logs under <outputs>/<plan>/_submitit/<job id>/."""
    try:
        import submitit
    except ImportError as e:
        raise ValueError("launcher 'submitit' needs the submitit package: pip install submitit "
                         "(or pip install 'xfer-utils[cluster]')") from e
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; valid clusters: {', '.join(CLUSTERS)}")
    return submitit.AutoExecutor(folder=plan.dir / "_submitit" / "%j", cluster=None if cluster == "auto" else cluster)


SLURM_ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def _jobs_file(plan: plans.Plan) -> Path:
    return plan.dir / "_submitit" / "jobs.json"


def _read_jobs(plan: plans.Plan) -> dict:
    try:
        return json.loads(_jobs_file(plan).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _queued(plan: plans.Plan, job_id: str):
    """The Slurm job `job_id` when it is still pending or running, else None."""
    import submitit
    job = submitit.SlurmJob(folder=plan.dir / "_submitit" / "%j", job_id=str(job_id))
    return job if str(job.state).upper() in SLURM_ACTIVE else None


def _job_error(plan: plans.Plan, run: plans.Run, e: BaseException) -> str:
    err = plan.failed_dir / run.run_id / "error.txt"
    if err.exists():
        lines = err.read_text(encoding="utf-8").splitlines()
        if lines:
            return _headline(lines[0])
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return _headline(lines[-1] if lines else type(e).__name__)


def run_submitit(plan: plans.Plan, runs: list, out=print, cluster: str = "auto", parallel: int = 1,
                 wait: bool = True, poll_s: float | None = None, plan_path=None) -> int:
    """Dispatch `runs` as submitit jobs (see the module docstring); returns the exit code like run_plan."""
    d = _Dispatch(plan, runs, make_executor(plan, cluster).cluster, out, plan_path or plan.path)
    out(f"plan {plan.name}: {len(runs)} runs -> {plan.dir} (checkpoints: {plan.checkpoint_root / plan.name}); "
        f"submitit on {d.kind}, job logs in {plan.dir / '_submitit'}")
    poll = poll_s if poll_s is not None else (15.0 if d.kind == "slurm" else 0.5)
    try:
        if d.kind == "slurm":
            d.submit_all()
            if not wait:
                d.say_how_to_follow()
                return 0
            d.wait(poll)
        else:
            d.submit_when_ready(parallel, poll)
    except KeyboardInterrupt:
        d.interrupt()
        return _summary(plan, d.state, out, True)
    return _summary(plan, d.state, out, False)


class _Dispatch:
    """The jobs of one `xfer run --launcher submitit`: what was submitted, what finished how (`state`, as the
    local launchers keep it), and jobs.json (run id -> its last job id, so that a second `xfer run` does not
    submit a run that is still queued)."""

    def __init__(self, plan: plans.Plan, runs: list, kind: str, out, plan_path):
        self.plan, self.runs, self.kind, self.out, self.plan_path = plan, runs, kind, out, plan_path
        self.by_id = {r.run_id: r for r in plan.runs}
        n = len(runs)
        self.heads = {r.run_id: f"[{i:>{len(str(n))}}/{n}] {r.phase}/{r.run_id}" for i, r in enumerate(runs, 1)}
        self.state: dict[str, tuple[str, str, float]] = {}
        self.jobs: dict[str, tuple] = {}          # run_id -> (job, submitted at)
        self.known = _read_jobs(plan)

    def submit(self, r: plans.Run, deps: list[str]) -> None:
        params = job_parameters(self.plan, r, self.kind)
        extra = dict(r.resources.get("slurm") or {})
        if deps:
            extra.update(dependency="afterok:" + ":".join(deps), kill_on_invalid_dep="yes")
        if self.kind == "slurm":
            params["slurm_additional_parameters"] = extra
        ex = make_executor(self.plan, self.kind)    # a fresh one: submitit's parameters stick between submissions
        ex.update_parameters(**params)
        job = ex.submit(RunJob(self.plan, r))
        self.jobs[r.run_id] = (job, time.time())
        self.known[r.run_id] = str(job.job_id)
        files.atomic_write_text(_jobs_file(self.plan), json.dumps(self.known, indent=1))
        self.out(f"{self.heads[r.run_id]}  submitted (job {job.job_id}"
                 + (f", after {', '.join(deps)})" if deps else ")"))

    def finish(self, rid: str) -> None:
        job, t0 = self.jobs.pop(rid)
        r, head, wall = self.by_id[rid], self.heads[rid], time.time() - t0
        try:
            job.result()
            self.state[rid] = ("done", "", wall)
            self.out(f"{head}  done ({_fmt_s(wall)})")
        except Exception as e:          # noqa: BLE001 - a failed job is one failed run
            bad = [d for d in r.needs if self.state.get(d, ("",))[0] in ("failed", "blocked")]
            if bad:
                self.state[rid] = ("blocked", f"needs {bad[0]}", wall)
                self.out(f"{head}  blocked (needs {bad[0]})")
            else:
                why = _job_error(self.plan, r, e)
                self.state[rid] = ("failed", why, wall)
                self.out(f"{head}  failed ({_fmt_s(wall)}): {why} -> {self.plan.failed_dir / rid} "
                         f"(job log: {job.paths.stderr})")

    def _reap(self) -> None:
        for rid in [rid for rid, (job, _) in self.jobs.items() if job.done()]:
            self.finish(rid)

    def submit_all(self) -> None:
        """Slurm holds dependents back itself (afterok): everything is submitted now, each run after the jobs of
        its upstream runs; a run still queued from an earlier `xfer run` is followed, not resubmitted."""
        for r in self.runs:
            head = self.heads[r.run_id]
            queued = (_queued(self.plan, self.known[r.run_id])
                      if r.run_id in self.known and read_done(r) is None else None)
            if queued is not None:
                queued._xfer_queued = True
                self.jobs[r.run_id] = (queued, time.time())
                self.out(f"{head}  already queued (job {queued.job_id})")
                continue
            upstream = [d for d in r.needs if d in self.jobs]
            if upstream:
                self.out(f"{head}  waits for {', '.join(upstream)}")
            elif not _decide(self.plan, r, self.by_id, self.state, head, self.out):
                continue
            self.submit(r, [str(self.jobs[d][0].job_id) for d in upstream])

    def say_how_to_follow(self) -> None:
        fresh = sum(1 for j, _ in self.jobs.values() if not getattr(j, "_xfer_queued", False))
        self.out(f"submitted {fresh} jobs ({len(self.jobs) - fresh} already queued); follow them with `xfer status "
                 f"{self.plan_path}` and collect with `xfer collect {self.plan_path}`")

    def wait(self, poll: float) -> None:
        while self.jobs:
            self._reap()
            if self.jobs:
                time.sleep(poll)

    def submit_when_ready(self, parallel: int, poll: float) -> None:
        """Executors without dependencies (local, debug): a run is submitted once its upstream runs finished, at
        most `parallel` at a time."""
        chosen = {r.run_id for r in self.runs}
        pending = list(self.runs)
        while pending or self.jobs:
            for r in list(pending):
                if len(self.jobs) >= max(1, parallel):
                    break
                if any(d in chosen and d not in self.state for d in r.needs):
                    continue        # an upstream run is pending or running
                pending.remove(r)
                if _decide(self.plan, r, self.by_id, self.state, self.heads[r.run_id], self.out):
                    self.submit(r, [])
            self._reap()
            if self.jobs or pending:
                time.sleep(poll)

    def interrupt(self) -> None:
        for rid, (job, t0) in list(self.jobs.items()):
            if self.kind != "slurm":
                job.cancel(check=False)
            self.state[rid] = ("interrupted", "", time.time() - t0)
            self.out(f"{self.heads[rid]}  interrupted" + (" (the Slurm job goes on)" if self.kind == "slurm" else
                                                          f": run `xfer run {self.plan_path}` again to resume"))


def status(plan_path, outputs="outputs", out=print) -> int:
    """Print done / failed / partial / pending per run; returns 0."""
    plan = plans.expand(plan_path, outputs)
    w = max(len(r.run_id) for r in plan.runs)
    counts: dict[str, int] = {}
    for r in plan.runs:
        s = run_state(plan, r)
        counts[s] = counts.get(s, 0) + 1
        extra = ""
        if s == "done":
            d = read_done(r) or {}
            extra = f"{_fmt_s(d.get('wall_s', 0))}, {d.get('finished_at', '')}"
        elif s == "failed":
            err = plan.failed_dir / r.run_id / "error.txt"
            extra = _headline(err.read_text(encoding="utf-8")) if err.exists() else ""
        elif s == "partial":
            extra = "interrupted; resumes on the next `xfer run`"
        elif s == "running":
            h = json.loads((r.run_dir / RUNNING).read_text(encoding="utf-8"))
            extra = f"by {files.describe(h)}"
        out(f"{r.phase:<12} {r.run_id:<{w}}  {s:<8} {extra}".rstrip())
    out(f"plan {plan.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    holder = _lock_holder(plan)
    if holder:
        out(f"held by {files.describe(holder)}" + (" (another host: cannot check it is alive)"
                                                  if files.holder_alive(holder) is None else ""))
    return 0


def _lock_holder(plan: plans.Plan) -> dict | None:
    """The live runner holding the plan, if any (a stale lock counts as none)."""
    try:
        h = json.loads((plan.dir / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return h if files.holder_alive(h) is not False else None


def collect(plan_path, outputs="outputs", out=print) -> int:
    plan = plans.expand(plan_path, outputs)
    with contextlib.suppress(ValueError):    # the params each run gets, to leave out runs whose params changed
        plans.validate(plan)
    df = collect_plan(plan, out)
    out(f"{len(df)} rows -> {plan.results_csv}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="execute a plan's notebooks with papermill (skips finished runs)")
    p.add_argument("plan", help="plan file, e.g. params/plans/smoke.yaml")
    p.add_argument("--only", metavar="PATTERN", help="fnmatch on run ids (comma-separated); dependencies come along")
    p.add_argument("--dry-run", action="store_true", help="list the runs with estimated GPU-hours; execute nothing")
    p.add_argument("--outputs", default="outputs", metavar="DIR", help="outputs root (default: outputs)")
    p.add_argument("--launcher", default="local", help=f"how runs are executed: {', '.join(LAUNCHERS)}")
    p.add_argument("--gpu", default="a100", help="GPU kind for --dry-run costs (a100, h100, l4, t4)")
    p.add_argument("--cluster", default="auto", choices=CLUSTERS,
                   help="submitit: slurm, local (this machine) or auto (slurm when sbatch is available)")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="runs executing at the same time, locally or with submitit's local executor (default 1)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="submitit on Slurm: submit every job and return (follow with `xfer status`)")
    p.add_argument("--resources", metavar="FILE", help="site resources file (GPUs, memory, time, partition; per "
                   "phase and per model) on top of the plan's, e.g. params/cluster/slurm_example.yaml")
    p.add_argument("--runs-per-gpu", type=int, default=0, metavar="N",
                   help="local launcher: up to N runs at once on each GPU when their memory estimates fit "
                        "(resources gpu_mem, else the driver's size); 0 = one run at a time (default)")
    p.add_argument("--gpus", metavar="IDS", help="GPU ids for --runs-per-gpu, e.g. 0,1 (default: all visible)")
    p.add_argument("--wait-lock", action="store_true",
                   help="when another runner holds this plan (same outputs folder), wait for it instead of exiting")
    p.set_defaults(func=lambda a: run_plan(a.plan, a.only, a.dry_run, a.outputs, a.launcher, a.gpu,
                                           cluster=a.cluster, parallel=a.parallel, wait=a.wait,
                                           resources=a.resources, wait_lock=a.wait_lock,
                                           runs_per_gpu=a.runs_per_gpu, gpus=a.gpus))
    s = sub.add_parser("status", help="done / failed / pending per run of a plan")
    s.add_argument("plan")
    s.add_argument("--outputs", default="outputs", metavar="DIR")
    s.set_defaults(func=lambda a: status(a.plan, a.outputs))
    c = sub.add_parser("collect", help="gather a plan's metrics into outputs/<plan>/results.csv")
    c.add_argument("plan")
    c.add_argument("--outputs", default="outputs", metavar="DIR")
    c.set_defaults(func=lambda a: collect(a.plan, a.outputs))


if __name__ == "__main__":      # pragma: no cover
    sys.exit(run_plan(sys.argv[1]))
