"""Papermill execution of a plan (see plans.py for the plan format): `xfer run | status | collect`.

Each run executes its phase notebook with papermill into ``<outputs>/<plan>/<phase>/<run_id>/``:
``params.yaml`` (the exact params passed: ``papermill NB out.ipynb -f params.yaml`` reproduces the run),
``notebook.ipynb`` (saved after every cell), ``notebook.log`` (the kernel's stdout/stderr), the notebook's own
outputs (``metrics.jsonl``), and ``_done.json`` (timing) once it succeeded.

Rules:
- params of every run are validated against the notebooks first (plans.validate): one error, nothing runs;
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

>>> fmt_hours(0.0004), fmt_hours(1.25), fmt_hours(None)
('<0.01', '1.25', '?')
"""
from __future__ import annotations

import contextlib
import datetime as _dt
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

from . import cost, plans, results

DONE = "_done.json"
LAUNCHERS = ("local",)      # issue 10 adds "submitit"


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
    """done | failed | partial (interrupted: resumes) | pending."""
    if read_done(run) is not None:
        return "done"
    if (plan.failed_dir / run.run_id).exists():
        return "failed"
    if run.run_dir.exists():
        return "partial"
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


def execute_local(plan: plans.Plan, run: plans.Run) -> None:
    """Run one notebook with papermill; raises on failure (the executed notebook is written either way).
    The kernel's stdout/stderr (and its own process-level messages) go to run_dir/notebook.log."""
    import papermill
    with open(run.run_dir / "notebook.log", "a", encoding="utf-8") as log, _stderr_fd_to(log):
        log.write(f"\n===== {_now()} {run.phase}/{run.run_id}\n")
        log.flush()
        papermill.execute_notebook(
            str(run.notebook), str(run.run_dir / "notebook.ipynb"), parameters=run.passed, cwd=str(plan.root),
            kernel_name=os.environ.get("XFER_KERNEL", "python3"), progress_bar=False, log_output=False,
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
    results.atomic_write_text(run.run_dir / "error.txt", text)
    dest = plan.failed_dir / run.run_id
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run.run_dir), str(dest))
    return line.splitlines()[0][:160] if line else "failed"


def _execute(plan: plans.Plan, run: plans.Run, launch) -> tuple[str, str]:
    """Execute one run: ('done', '') or ('failed', reason). KeyboardInterrupt propagates (run stays partial)."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / DONE).unlink(missing_ok=True)
    results.atomic_write_text(run.run_dir / "params.yaml", yaml.safe_dump(run.passed, sort_keys=False,
                                                                         allow_unicode=True))
    t0, started = time.time(), _now()
    try:
        launch(plan, run)
    except Exception as e:       # noqa: BLE001 - any failure of one run must not stop the plan
        if getattr(e, "ename", None) == "KeyboardInterrupt":    # Ctrl-C reached the kernel: interrupted, not failed
            raise KeyboardInterrupt from e
        return "failed", _fail(plan, run, e)
    t1 = time.time()
    results.atomic_write_text(run.run_dir / DONE, json.dumps({
        "run_id": run.run_id, "phase": run.phase, "plan": plan.name, "notebook": str(run.notebook),
        "started_at": started, "finished_at": _now(), "started_ts": t0, "finished_ts": t1,
        "wall_s": round(t1 - t0, 2), "params_digest": params_digest(run.passed), "git_sha": results.git_sha(),
    }, indent=1) + "\n")
    old = plan.failed_dir / run.run_id
    if old.exists():
        shutil.rmtree(old)
    return "done", ""


def collect_plan(plan: plans.Plan):
    return results.collect(plan.dir, plan.results_csv)


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
    return total


def run_plan(plan_path, only: str | None = None, dry_run: bool = False, outputs="outputs", launcher: str = "local",
             gpu: str = "a100", out=print) -> int:
    """Execute a plan (or list it with costs when `dry_run`). Returns the exit code: 0 ok, 1 failed/blocked runs,
    130 interrupted."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r} is not available; valid launchers: {', '.join(LAUNCHERS)}")
    plan = plans.expand(plan_path, outputs)
    runs = plans.select(plan, only)
    plans.validate(plan)
    if dry_run:
        cost_table(plan, runs, gpu, out)
        return 0
    launch = {"local": execute_local}[launcher]
    by_id = {r.run_id: r for r in plan.runs}
    state: dict[str, tuple[str, str, float]] = {}
    n = len(runs)
    out(f"plan {plan.name}: {n} runs -> {plan.dir} (checkpoints: {plan.checkpoint_root / plan.name})")
    interrupted = False
    for i, r in enumerate(runs, 1):
        head = f"[{i:>{len(str(n))}}/{n}] {r.phase}/{r.run_id}"
        bad = [d for d in r.needs if state.get(d, ("",))[0] in ("failed", "blocked")]
        if bad:
            state[r.run_id] = ("blocked", f"needs {bad[0]}", 0.0)
            out(f"{head}  blocked (needs {bad[0]})")
            continue
        done = read_done(r)
        if done is not None:
            stale = _stale(r, done, by_id)
            if stale is None:
                changed = done.get("params_digest") not in (None, params_digest(r.passed))
                note = f"; params changed since - delete {r.run_dir} to redo" if changed else ""
                state[r.run_id] = ("skipped", "", 0.0)
                out(f"{head}  skipped (done {done.get('finished_at', '')}{note})")
                continue
            out(f"{head}  stale (dependency {stale} re-ran): executing again")
        elif r.run_dir.exists():
            out(f"{head}  resuming an interrupted run")
        if plan.phases[r.phase].get("after"):
            collect_plan(plan)
        tty = out is print and sys.stdout.isatty()
        if tty:
            print(f"{head}  running ...", end="", flush=True)
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
    df = collect_plan(plan)
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
            extra = err.read_text(encoding="utf-8").splitlines()[0][:100] if err.exists() else ""
        elif s == "partial":
            extra = "interrupted; resumes on the next `xfer run`"
        out(f"{r.phase:<12} {r.run_id:<{w}}  {s:<8} {extra}".rstrip())
    out(f"plan {plan.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def collect(plan_path, outputs="outputs", out=print) -> int:
    plan = plans.expand(plan_path, outputs)
    df = collect_plan(plan)
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
    p.set_defaults(func=lambda a: run_plan(a.plan, a.only, a.dry_run, a.outputs, a.launcher, a.gpu))
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
