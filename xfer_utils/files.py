"""Where things live and how they are written: the repository and resource roots, every ``XFER_*`` environment
variable (this is the only module that reads them), the default run and checkpoint paths, and safe writes for
files that several processes may touch at once: atomic replacement through a unique temp file, appends that cannot
lose rows, and the one-runner-per-plan lock.

Environment variables (README "Environment variables"): ``XFER_CHECKPOINTS`` (checkpoint root), ``XFER_DATA_DIR``
(a local dataset mirror instead of the hub), ``XFER_TINY_DIR`` (the tiny world), ``XFER_SHARED_DATA`` (real text
for the real-text world), ``XFER_KERNEL`` (the papermill kernel), ``XFER_REHEARSAL`` (set by ``xfer rehearse``).

Every atomic write of the kit goes through `atomic_write` (a fixed temp name such as `.x.tmp` makes two writers
rename each other's half-written file away; `mkstemp` gives each writer its own). Result files are made 0644:
mkstemp creates 0600, which a group-shared study folder could not read.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

MODE = 0o644

REPO = Path(__file__).resolve().parents[1]              # notebooks and the runner work in the repository root
RESOURCES = Path(__file__).resolve().parent / "resources"   # facts shipped as data (resources/README.md)
ENV_VARS = ("XFER_CHECKPOINTS", "XFER_DATA_DIR", "XFER_TINY_DIR", "XFER_SHARED_DATA", "XFER_KERNEL", "XFER_REHEARSAL")
# ... and the user-data paths the task registry names (tasks.Task.user_path: XFER_CCG_PATH, XFER_BUCC_PATH, ...)


def env(name: str, default: str = "") -> str:
    """The value of an ``XFER_*`` variable (``default`` when unset or empty); any other name is refused, so the
    kit's configuration stays greppable in one place."""
    if not name.startswith("XFER_"):
        raise ValueError(f"files.env reads only XFER_* variables, not {name!r}; the kit's own: {', '.join(ENV_VARS)}")
    return os.environ.get(name) or default


def tiny_dir() -> Path:
    """The offline tiny world: XFER_TINY_DIR, default ``<repo>/.cache/tiny``."""
    return Path(env("XFER_TINY_DIR") or REPO / ".cache" / "tiny")


def shared_data() -> Path | None:
    """Real text for the real-text world: XFER_SHARED_DATA, default ``../shared/data`` beside the repo; None when
    absent."""
    v = env("XFER_SHARED_DATA")
    p = Path(v) if v else REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


def default_checkpoint_root(outputs: Path) -> Path:
    """`<outputs>/../checkpoints` for an outputs folder named `outputs` (the notebooks' own default, so hand runs
    and the runner's runs agree); `<outputs>_checkpoints` beside any other, so a fresh `--outputs` folder next to an
    old one never picks up the old one's checkpoints."""
    return outputs.parent / ("checkpoints" if outputs.name == "outputs" else f"{outputs.name}_checkpoints")


def checkpoint_root(outputs: str | os.PathLike | None = None) -> Path:
    """The checkpoint root: XFER_CHECKPOINTS, else :func:`default_checkpoint_root` of the outputs folder (default:
    the repository's ``outputs/``, so a notebook run by hand and the runner agree)."""
    return Path(env("XFER_CHECKPOINTS") or default_checkpoint_root(Path(outputs or REPO / "outputs").resolve()))


def run_paths(phase: str, run_id: str, plan: str, run_dir: str, checkpoint_dir: str, default_id: str):
    """(run_id, run_dir, checkpoint_dir) with the defaults a notebook uses outside the runner:
    ``outputs/<plan>/<phase>/<run_id>`` under the repo and ``<checkpoint root>/<plan>/<run_id>``."""
    run_id = run_id or default_id
    run_dir = Path(run_dir or REPO / "outputs" / plan / phase / run_id)
    checkpoint_dir = Path(checkpoint_dir or checkpoint_root() / plan / run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_id, str(run_dir), str(checkpoint_dir)


class DiskError(OSError, ValueError):
    """A folder the kit cannot write; a ValueError too, so the command line prints it as one sentence."""

    def __str__(self) -> str:
        return str(self.strerror)


def disk_error(path, e: OSError) -> OSError:
    """A read-only or full folder as one sentence (the raw errno text names neither the folder nor the remedy)."""
    if isinstance(e, DiskError):
        return e
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return DiskError(e.errno, f"cannot write {path}: the folder is read-only or not yours; choose a writable "
                                f"outputs folder (--outputs DIR) or checkpoint root (XFER_CHECKPOINTS)")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(e.errno, f"cannot write {path}: the disk is full (or over quota); free space or choose "
                                f"another outputs folder (--outputs DIR) or checkpoint root (XFER_CHECKPOINTS)")
    return e


def atomic_write(path: str | os.PathLike, write: Callable, binary: bool = True) -> Path:
    """Write `path` through a unique temp file in the same folder, fsync, rename: readers see the old or the new
    file, never half; concurrent writers never share a temp file. `write(f)` receives the open temp file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise disk_error(path, e) from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, MODE)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise disk_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), binary=False)


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """An exclusive fcntl lock on `<path>.lock` for a read-modify-write of `path` by several processes."""
    lock = Path(path).with_name(f".{Path(path).name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, MODE)
    except OSError as e:
        raise disk_error(path, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_jsonl(path: str | os.PathLike, on_bad: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of a jsonl file. A line that is not JSON (a writer killed mid-line) raises `ValueError` naming file
    and line, or, with `on_bad`, is reported through it and skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            msg = f"{path}:{n}: not a complete JSON row ({e.msg}; a writer killed mid-line leaves this)"
            if on_bad is None:
                raise ValueError(msg) from None
            on_bad(msg)
    return rows


# ---- one runner per plan ----

class LockHeld(RuntimeError):
    """The plan is held by another live process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def holder_alive(info: dict | None) -> bool | None:
    """True/False for a holder on this host; None when it runs on another host (cannot be checked from here)."""
    if not info:
        return False
    if info.get("host") != socket.gethostname():
        return None
    return _alive(int(info.get("pid", -1)))


def whoami() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe(info: dict) -> str:
    return f"process {info.get('pid')} on {info.get('host')} (since {info.get('since', '?')})"


@contextlib.contextmanager
def plan_lock(lock: str | os.PathLike, wait: bool = False, poll_s: float = 2.0, out=print):
    """Hold `lock` (a file recording pid, host, start time) for the duration. A lock whose process is dead is
    taken over with a message; a live holder raises `LockHeld` naming it, or is waited for when `wait`.
    Creation is O_EXCL, so two runners started at the same instant cannot both get it."""
    lock = Path(lock)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(lock, e) from None
    me = whoami()
    announced = False
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
        except FileExistsError:
            info = _holder(lock)
            alive = holder_alive(info)
            if info is not None and alive is False:
                out(f"taking over the lock {lock}: its {describe(info)} is no longer running")
                _steal(lock, info)
                continue
            if info is None:        # being written right now by another runner: look again
                if _age(lock) > 10:
                    out(f"taking over the lock {lock}: it is unreadable")
                    lock.unlink(missing_ok=True)
                time.sleep(0.05)
                continue
            if not wait:
                raise LockHeld(f"plan is being run by {describe(info)} (lock {lock}); wait for it, use --wait-lock "
                               f"to queue behind it, or delete the lock if that process is gone") from None
            if not announced:
                out(f"waiting for {describe(info)} to finish the plan (lock {lock})")
                announced = True
            time.sleep(poll_s)
            continue
        except OSError as e:
            raise disk_error(lock, e) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    try:
        yield me
    finally:
        if (_holder(lock) or {}).get("pid") == me["pid"]:
            lock.unlink(missing_ok=True)


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return 0.0


def _steal(lock: Path, info: dict) -> None:
    """Remove a dead holder's lock unless someone replaced it meanwhile (rename is atomic: one taker wins)."""
    grave = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
    try:
        os.replace(lock, grave)
    except FileNotFoundError:
        return
    if _holder(grave) != info:         # another taker already put a live lock there: give it back
        with contextlib.suppress(FileExistsError):
            os.link(grave, lock)
    grave.unlink(missing_ok=True)


def read_yaml(path: str | os.PathLike, what: str):
    """A YAML file's content; malformed YAML fails in one sentence naming `what`, the file and the line."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:      # PyYAML counts lines from 0
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        msg = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise ValueError(f"{what} {where}: not valid YAML ({msg}); check the indentation and the quoting "
                         f"of that line") from None
