"""THE results schema of the study (README, Results): one long table, one row per number, values on XTREME's
0-100 scale.

Every phase notebook writes rows with `append_rows` (atomic: a crash never leaves half a row) into its run folder's
`metrics.jsonl`; `collect` gathers every run of a plan into one validated DataFrame.

>>> r = make_row(run_id="r1", plan="smoke", phase="target", model="tiny", intermediate="mnli", target_task="xnli",
...              language="de", split="test", metric="accuracy", value=71.5, is_primary=True, seed=1, n_examples=40)
>>> sorted(set(COLUMNS) - set(r))
[]
>>> validate_row({**r, "value": "high"})
Traceback (most recent call last):
...
ValueError: results row field 'value' must be float, got str ('high')
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from pathlib import Path
from typing import Iterable

from . import files

COLUMNS = ("run_id", "plan", "phase", "model", "intermediate", "target_task", "language", "split", "metric", "value",
           "is_primary", "seed", "n_examples", "init_from", "git_sha", "created_at", "weights_digest")
TYPES = {"run_id": str, "plan": str, "phase": str, "model": str, "intermediate": str, "target_task": str,
         "language": str, "split": str, "metric": str, "value": float, "is_primary": bool, "seed": int,
         "n_examples": int, "init_from": str, "git_sha": str, "created_at": str, "weights_digest": str}
# Columns added after tables were first written: a row or results.csv without them still loads, with these values.
# weights_digest: the checkpoint identity (identity.py) of the weights that produced the number; '' = unrecorded.
# strategy, lr: how the row's model was trained (issue 16: RQ-size compares like with like): the memory strategy of
# the phase (launch.STRATEGIES; "" = not recorded or no training, as retrieval) and its peak learning rate (0.0
# likewise: rows stay strict JSON).
OPTIONAL = {"weights_digest": "", "strategy": "", "lr": 0.0}
COLUMNS = COLUMNS + ("strategy", "lr")
TYPES = {**TYPES, "strategy": str, "lr": float}
PHASES = ("intermediate", "target", "retrieval")
NO_INTERMEDIATE = "none"   # the `intermediate` value of baseline runs (raw pretrained encoder)


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_row(**fields) -> dict:
    """A schema row with defaults for the bookkeeping fields; raises on unknown or missing fields."""
    row = {"init_from": "", "git_sha": git_sha(), "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"), "plan": "", "intermediate": NO_INTERMEDIATE, "is_primary": False, "seed": 0,
        "n_examples": 0, **OPTIONAL, **fields}
    if isinstance(row["value"], int) and not isinstance(row["value"], bool):
        row["value"] = float(row["value"])
    validate_row(row)
    return {c: row[c] for c in COLUMNS}


def validate_row(row: dict) -> None:
    row.update({c: v for c, v in OPTIONAL.items() if c not in row})   # an older row: the column was added later
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"results row has unknown fields {sorted(unknown)}; the schema is: {', '.join(COLUMNS)}")
    for c in COLUMNS:
        if c not in row and c in OPTIONAL:   # a row written before the column existed: read with its default
            continue
        if c not in row:
            raise ValueError(f"results row is missing field {c!r}; the schema is: {', '.join(COLUMNS)}")
        want, got = TYPES[c], row[c]
        if want is float and isinstance(got, (int, float)) and not isinstance(got, bool):
            continue
        if not isinstance(got, want) or (want is int and isinstance(got, bool)):
            raise ValueError(f"results row field {c!r} must be {want.__name__}, got {type(got).__name__} ({got!r})")
    if row["phase"] not in PHASES:
        raise ValueError(f"results row phase {row['phase']!r} is not one of {', '.join(PHASES)}")


def read_rows(path: str | os.PathLike, on_bad=None) -> list[dict]:
    """Rows of a metrics.jsonl; a truncated line raises naming file and line, or goes to `on_bad` and is skipped."""
    return [{**OPTIONAL, **r} for r in files.read_jsonl(path, on_bad)]


def append_rows(path: str | os.PathLike, rows: Iterable[dict]) -> list[dict]:
    """Validate `rows` and append them to a jsonl file atomically (rewrite + rename). Returns the new rows.

    A row with the same key (run_id, target_task, language, split, metric) replaces the old one, so a re-run of a
    half-finished evaluation never duplicates numbers."""
    rows = list(rows)
    for r in rows:
        validate_row(r)
    # The read-modify-write holds a lock on the file: concurrent writers would otherwise each rewrite what they read
    # and the last rename would drop the others' rows. A truncated line (a writer killed mid-line, outside this
    # function) is dropped with a message rather than blocking every later append.
    with files.locked(path):
        old = read_rows(path, on_bad=lambda m: print(f"dropping {m}"))
        new_keys = {row_key(r) for r in rows}
        kept = [r for r in old if row_key(r) not in new_keys]
        files.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept + rows))
    return rows


def row_key(r: dict) -> tuple:
    return (r["run_id"], r["target_task"], r["language"], r["split"], r["metric"])


def to_frame(rows: list[dict]):
    import pandas as pd
    df = pd.DataFrame([{**OPTIONAL, **r} for r in rows], columns=list(COLUMNS))
    for c, default in OPTIONAL.items():
        df[c] = df[c].astype(object).where(df[c].notna(), default) if len(df) else df[c]
    return df.astype({"value": float, "is_primary": bool, "seed": int, "n_examples": int, "lr": float})


def collect(root: str | os.PathLike, out_csv: str | os.PathLike | None = None, paths=None, on_bad=None):
    """Every `metrics.jsonl` under `root` (skipping `_failed/`), or only `paths` when given (the runner passes its
    finished runs) -> one validated DataFrame; optionally a CSV. A truncated line raises naming file and line, or,
    with `on_bad(message)`, is reported and skipped."""
    root = Path(root)
    rows: list[dict] = []
    found = sorted(root.rglob("metrics.jsonl")) if paths is None else [Path(p) for p in paths]
    for p in found:
        if paths is None and "_failed" in p.relative_to(root).parts:
            continue
        for r in read_rows(p, on_bad):
            validate_row(r)
            rows.append(r)
    from collections import Counter
    dup = {k for k, n in Counter(row_key(r) for r in rows).items() if n > 1}
    if dup:
        raise ValueError(f"duplicate results rows under {root}: {sorted(dup)[:3]}")
    df = to_frame(rows)
    if out_csv is not None:
        files.atomic_write_text(out_csv, df.to_csv(index=False))
    return df


def load_csv(path: str | os.PathLike):
    """Read a results.csv written by `collect`, with the schema's dtypes (empty strings stay strings)."""
    import pandas as pd
    df = pd.read_csv(path, dtype={c: str for c, t in TYPES.items() if t is str}, keep_default_na=False)
    for c, default in OPTIONAL.items():   # tables written before these columns existed
        if c not in df.columns:
            df[c] = default
    df["lr"] = pd.to_numeric(df["lr"].replace("", 0.0))
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path} is not a results table: missing columns {sorted(missing)}")
    return df.astype({"value": float, "is_primary": bool, "seed": int, "n_examples": int})
