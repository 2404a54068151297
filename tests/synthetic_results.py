"""Schema-valid synthetic results tables with planted effects, for the analysis tests and the notebook runs.

Every target score is ``base + gain + noise`` with an additive planted gain (intermediate rows only)::

    gain = size_intercept + size_slope * log10(params_total of the model)          (RQ-size)
         + data_slope * (log10(CC-100 tokens of the language) - 3)                 (RQ-data; 0 for unseen languages)
         + difficulty_slope * (ERRORS[first task of the label] - 25)               (RQ-difficulty)

and the phase-intermediate rows carry the English dev score ``100 - (ERRORS[task] + model_error_shift)``, so the
model's own error is the planted difficulty plus a per-model constant. Each analysis averages the other terms
away (they are constant within its comparison), so its slope should come back as the planted one.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xfer_utils.analysis import tables as analysis
from xfer_utils import ladder, results, tasks

ERRORS = {"mnli": 15.0, "squad": 12.0, "hellaswag": 35.0, "qqp": 10.0, "sst2": 6.0, "cosmosqa": 30.0,
          "commonsenseqa": 40.0, "anli_plus": 45.0}
MODELS = ("tiny-xlmr-s", "tiny-xlmr-m", "distilmbert", "xlmr-base", "xlmr-large", "mt5-xl", "xlmr-xl", "xlmr-xxl")
INTERMEDIATES = ("none", "mnli", "squad", "hellaswag", "qqp", "sst2", "cosmosqa", "commonsenseqa",
                 "mnli+squad", "mnli+mlm", "mnli@tr")
TARGETS = tuple(tasks.XTREME_TARGETS) + ("xcopa", "stsb_multi_mt")


def _tokens() -> dict:
    cc = analysis.cc100()
    return dict(zip(cc["iso639_1"], cc["cc100_tokens_m"]))


def _row(**kw) -> dict:
    row = {"run_id": "", "plan": "synthetic", "phase": "target", "model": "", "intermediate": "none",
           "target_task": "", "language": "", "split": "test", "metric": "", "value": 0.0, "is_primary": False,
           "seed": 1, "n_examples": 100, "init_from": "", "git_sha": "synthetic", "created_at": "2025-01-01T00:00:00"}
    row.update(kw)
    return row


def _metric_rows(task: str, value: float, **kw) -> list[dict]:
    t = tasks.get(task)
    if t.type == "span_qa":            # EM and F1 around the score, so (EM + F1) / 2 == value
        return [_row(metric="exact_match", value=value - 6.0, is_primary=t.primary_metric == "exact_match", **kw),
                _row(metric="f1", value=value + 6.0, is_primary=t.primary_metric == "f1", **kw)]
    return [_row(metric=t.primary_metric, value=value, is_primary=True, **kw)]


def make_results(models=MODELS, intermediates=INTERMEDIATES, targets=TARGETS, seeds=(1,),
                 size_intercept: float = 15.0, size_slope: float = -1.5, data_slope: float = 1.0,
                 difficulty_slope: float = 0.1, noise: float = 0.3,
                 languages_per_task: int | None = None, seed: int = 0) -> pd.DataFrame:
    """A long results table (results.COLUMNS) with the planted effects of the module docstring.

    A slope of 0 plants no effect (a null table). ``languages_per_task``: keep only the first k languages of each
    task (smaller tables)."""
    rng = np.random.default_rng(seed)
    tokens = _tokens()
    params = {m: ladder.get(m).params_total for m in models}
    rows = []
    for s in seeds:
        for m in models:
            lp = math.log10(params[m])
            shift = -2.0 * (lp - 8.0)                          # bigger models make fewer English dev errors
            for inter in intermediates:
                kind = analysis.kind_of(inter)
                first = inter.split("+")[0].split("@")[0]
                if kind == "single":
                    rows += _metric_rows(first, 100.0 - (ERRORS[first] + shift) + rng.normal(0, noise),
                                         run_id=f"{m}__{inter}__s{s}", phase="intermediate", model=m,
                                         intermediate=inter, target_task=first, language="en", split="validation",
                                         seed=s)
                for t in targets:
                    bench = "xtreme-r" if t in ("xcopa", "stsb_multi_mt") else "xtreme"
                    langs = tasks.languages(t, bench)[:languages_per_task]
                    phase = "retrieval" if t in tasks.RETRIEVAL_TASKS else "target"
                    for lg in langs:
                        base = 40.0 + 6.0 * (lp - 8.0) + (5.0 if lg == "en" else 0.0)
                        gain = 0.0
                        if kind != "baseline":
                            tok = tokens.get(lg, float("nan"))
                            gain = (size_intercept + size_slope * lp
                                    + (data_slope * (math.log10(tok) - 3.0) if tok == tok else 0.0)
                                    + difficulty_slope * (ERRORS.get(first, 25.0) - 25.0))
                        value = float(np.clip(base + gain + rng.normal(0, noise), 1.0, 99.0))
                        rows += _metric_rows(t, value, run_id=f"{m}__{inter}__{t}__s{s}", phase=phase, model=m,
                                             intermediate=inter, target_task=t, language=lg, seed=s)
    for r in rows[:: max(1, len(rows) // 50)]:                 # schema check on a sample (validate_row is per row)
        results.validate_row(r)
    return results.to_frame(rows)


def write_csv(path, **kw) -> pd.DataFrame:
    df = make_results(**kw)
    df.to_csv(path, index=False)
    return df


def shuffle_within(frame: pd.DataFrame, column: str, by, seed: int = 0) -> pd.DataFrame:
    """A copy of `frame` whose `column` is permuted independently inside each group of `by`: every comparison of
    that column with another one becomes a true null. (Shuffling raw scores instead would not: a model's baseline
    and intermediate scores share its size effect, so mixing models plants a spurious size relation.)"""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for _, idx in out.groupby(by, sort=False).groups.items():
        out.loc[idx, column] = rng.permutation(out.loc[idx, column].to_numpy())
    return out
