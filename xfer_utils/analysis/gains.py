"""Gains over the no-intermediate baseline with their uncertainty: a paired bootstrap over test examples (and seeds).

A baseline run and an intermediate run of the same (model, target, language, split) are scored on the same test
examples, and each keeps its per-example predictions (``<run_dir>/predictions``, XTREME's formats) and the gold
labels (``<run_dir>/labels``, same layout; written by `evaluation.zero_shot` and `runs.retrieval`). The gain's
uncertainty is estimated by resampling *examples* with replacement, the same resample for both runs (paired), and
rescoring both with the task's official metric:

* ``mean`` tasks (accuracy: XNLI, PAWS-X, XCOPA, Tatoeba; QA: (EM + F1) / 2): the metric is a mean over examples, so
  each example's score is taken once from the official scorer (`metrics.accuracy`, `metrics.squad_scores` /
  `metrics.mlqa_scores` on that one question) and a resample's metric is the mean of its examples' scores;
* ``f1`` tasks (PAN-X / UD-POS chunk F1 over sentences, BUCC F1 over pairs grouped by source sentence): the
  official chunker / pair sets give per-unit counts (correct, predicted, gold); a resample's F1 comes from the summed
  counts, which is what the official scorer computes on the resampled sentences (tests/test_gains.py checks both
  against the scorers on explicit resamples);
* ``corr`` tasks (STS multi-MT): Pearson / Spearman recomputed on each resample of pairs.

Resamples are drawn as a (resamples x examples) count matrix, so 1,000 resamples cost one matrix product per run.

**Seeds.** Runs that share (model, intermediate, target, language, split) and differ by seed are replicates. The
reported score is their mean, with the seed standard deviation and n. The interval of a gain is a two-level
(hierarchical) bootstrap: in each resample the test examples are resampled once (shared by every run of that
target and language: the pairing), then each arm's seeds are resampled with replacement and averaged, and the gain
is the difference of the two arms' means. With one seed per arm this is the plain paired example bootstrap, which
cannot see seed variance. Measured coverage of the 95 % interval on simulated studies (400 items, true gain 5
points, 200 studies each; tests/test_gains.py): one seed, no seed variance 0.96; one seed, a seed sd of 2 points
0.835 (too narrow: one seed says nothing about seeds); 3 seeds with that seed sd 0.96, 5 seeds 0.985; several seeds
without seed variance 0.99-1.0 (conservative: resampling both levels counts each seed's prediction noise twice).
``method`` says which cells include seeds.

**Averages.** The language-averaged gain of a target resamples examples within each language independently (test
sets of different languages are different examples) and averages the per-language gains of each resample.

The interval is the percentile interval of the resampled gains (`LEVEL` = 95 %); ``excludes_zero`` marks gains
larger than this noise. Intervals are not corrected for the number of cells in a table.
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import files, metrics, results, scoring, tasks
from . import stats

N_BOOT = 1000
LEVEL = 0.95
AVG = "avg"                      # the `language` of language-averaged rows
SPLIT_PREFERENCE = ("test", "validation")
KINDS = ("mean", "f1", "corr")


# ---------------------------------------------------------------- per-example units

@dataclass
class Units:
    """Per-example statistics of several runs on the same examples: ``values[r, i]`` for run r, unit i.

    kind ``mean``: values (R, n) = the example's score (0-100); ``f1``: (R, n, 3) = (correct, predicted, gold)
    counts; ``corr``: (R, n, 2) = (prediction, gold) with ``metric`` "pearson" or "spearman"."""
    kind: str
    keys: list
    values: np.ndarray
    metric: str = ""

    @property
    def n(self) -> int:
        return len(self.keys)


def score_kind(task: str) -> str:
    t = tasks.get(task)
    if t.type == "tagging" or task == "bucc2018":
        return "f1"
    if t.type == "regression":
        return "corr"
    return "mean"


def _qa_unit(task: str, lang: str, qid, answers, preds: dict) -> float:
    one = {qid: answers}
    p = {qid: preds[qid]} if qid in preds else {}
    return metrics.task_score(task, metrics.score(task, one, p, lang))


def _tag_counts(gold: list, predictions: list, scheme: str) -> np.ndarray:
    """(runs, sentences, 3) chunk counts from the official chunker run once over all sentences, as
    `metrics.tagging_scores` runs it (sentences joined with an "O" after each, which closes every chunk, so each
    chunk lies in the sentence where it starts)."""
    n = len(gold)
    for p in predictions:
        for i, (g, s) in enumerate(zip(gold, p)):
            if len(g) != len(s):
                raise ValueError(f"tagging: sentence {i} has {len(g)} gold tags but {len(s)} predicted tags")
    starts = np.cumsum([0] + [len(s) + 1 for s in gold])[:-1]

    def sentence_of(chunks):
        return np.searchsorted(starts, np.array([c[1] for c in chunks], dtype=np.int64), side="right") - 1

    g_chunks = metrics.get_chunks(gold, scheme)
    g_set = set(g_chunks)
    n_gold = np.bincount(sentence_of(g_chunks), minlength=n)
    out = np.zeros((len(predictions), n, 3))
    for r, p in enumerate(predictions):
        p_chunks = list(dict.fromkeys(metrics.get_chunks(p, scheme)))       # a set, as the scorer takes it
        sent = sentence_of(p_chunks)
        hit = np.array([c in g_set for c in p_chunks], dtype=bool)
        out[r, :, 0] = np.bincount(sent[hit], minlength=n)
        out[r, :, 1] = np.bincount(sent, minlength=n)
        out[r, :, 2] = n_gold
    return out


def units(task: str, lang: str, gold, predictions: list) -> Units:
    """Per-example statistics of each prediction set in `predictions` against `gold` (objects as `read_gold` /
    `read_predictions` return them). All runs must cover the same examples."""
    t = tasks.get(task)
    kind = score_kind(task)
    if t.type == "span_qa":
        keys = list(gold)
        vals = np.array([[_qa_unit(task, lang, q, gold[q], p) for q in keys] for p in predictions], dtype=float)
        return Units(kind, keys, vals)
    if task == "bucc2018":
        gold_pairs = metrics._pair_set(gold, "gold")
        preds = [metrics._pair_set(p, "predicted") for p in predictions]
        keys = sorted({s for s, _ in gold_pairs}.union(*({s for s, _ in p} for p in preds)))
        pos = {k: i for i, k in enumerate(keys)}
        vals = np.zeros((len(preds), len(keys), 3))
        for s, _ in gold_pairs:
            vals[:, pos[s], 2] += 1
        for r, p in enumerate(preds):
            for pair in p:
                vals[r, pos[pair[0]], 1] += 1
                vals[r, pos[pair[0]], 0] += pair in gold_pairs
        return Units(kind, keys, vals)
    n = len(gold)
    for p in predictions:
        if len(p) != n:
            raise ValueError(f"{task}/{lang}: {len(p)} predictions but {n} gold labels; runs must be scored on "
                             "the same examples")
    keys = list(range(n))
    if t.type == "tagging":
        return Units(kind, keys, _tag_counts(gold, predictions, metrics.TAGGING_SCHEME.get(task, "lenient")))
    if t.type == "regression":
        vals = np.array([[(float(a), float(g)) for a, g in zip(p, gold)] for p in predictions], dtype=float)
        return Units(kind, keys, vals.reshape(len(predictions), n, 2), metric=t.primary_metric)
    score = metrics.tatoeba_accuracy if task == "tatoeba" else metrics.accuracy
    vals = np.array([[score([a], [g]) for a, g in zip(p, gold)] for p in predictions], dtype=float)
    return Units(kind, keys, vals.reshape(len(predictions), n))


# ---------------------------------------------------------------- resampling

def resample_indices(n: int, n_boot: int, rng) -> np.ndarray:
    """(n_boot, n) example indices drawn with replacement."""
    return rng.integers(0, n, size=(n_boot, n))


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each example occurs in each resample: (n_boot, n) counts from an index matrix."""
    b = idx.shape[0]
    flat = (idx + np.arange(b)[:, None] * n).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def _corr_rows(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    if metric == "spearman":
        from scipy.stats import rankdata
        x, y = rankdata(x, axis=-1), rankdata(y, axis=-1)
    return stats._pearson_rows(x, y) * 100


def metric_rows(u: Units, idx: np.ndarray) -> np.ndarray:
    """(runs, resamples) metric of each run on each resample of examples (``idx``: (resamples, n) indices)."""
    if u.kind == "corr":
        return np.stack([_corr_rows(v[idx, 0], v[idx, 1], u.metric) for v in u.values])
    w = _weights(idx, u.n)
    if u.kind == "mean":
        return (w @ u.values.T).T / u.n
    out = []
    for v in u.values:
        c, p, g = (w @ v).T
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(c > 0, 200.0 * c / (p + g), 0.0))   # F1 = 2PR/(P+R) = 2c/(p+g); 0 when nothing right
    return np.stack(out)


def full_scores(u: Units) -> np.ndarray:
    """Each run's metric on all its examples (what the official scorer gives)."""
    return metric_rows(u, np.arange(u.n)[None, :])[:, 0]


def _seed_mean_rows(m: np.ndarray, rng, hierarchical: bool = True) -> np.ndarray:
    """(resamples,) mean over seeds, the seeds resampled with replacement in each resample (two-level bootstrap)."""
    k, b = m.shape
    if k == 1 or not hierarchical:
        return m.mean(axis=0)
    pick = rng.integers(0, k, size=(b, k))
    return m[pick, np.arange(b)[:, None]].mean(axis=1)


@dataclass
class Gain:
    gain: float
    lo: float
    hi: float
    reps: np.ndarray = field(repr=False)
    base: np.ndarray = field(repr=False)         # full-sample score of each baseline run
    inter: np.ndarray = field(repr=False)        # full-sample score of each intermediate run

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)


def interval(reps: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return math.nan, math.nan
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def paired_bootstrap(u: Units, base: list[int], inter: list[int], n_boot: int = N_BOOT, seed: int = 0,
                     level: float = LEVEL, idx: np.ndarray | None = None) -> Gain:
    """Gain of the runs `inter` (rows of ``u.values``) over the runs `base`: seed means of the full-sample scores,
    and the percentile interval of the two-level paired bootstrap (examples shared, seeds resampled per arm).
    ``idx`` fixes the example resamples (for a hand-computed check)."""
    rng = np.random.default_rng(seed)
    idx = resample_indices(u.n, n_boot, rng) if idx is None else np.asarray(idx)
    sub = Units(u.kind, u.keys, u.values[list(base) + list(inter)], u.metric)
    m = metric_rows(sub, idx)
    full = full_scores(sub)
    kb = len(base)
    reps = _seed_mean_rows(m[kb:], rng) - _seed_mean_rows(m[:kb], rng)
    lo, hi = interval(reps, level)
    return Gain(float(full[kb:].mean() - full[:kb].mean()), lo, hi, reps, full[:kb], full[kb:])


# ---------------------------------------------------------------- reading a plan's runs

def _score_of(task: str, rows: pd.DataFrame) -> float:
    """The XTREME language score a run recorded: (EM + F1) / 2 for QA, else the primary metric."""
    if task in tasks.REGISTRY and tasks.get(task).type == "span_qa":
        s = metrics.task_score(task, rows.set_index("metric")["value"].to_dict())
        return math.nan if s is None else float(s)
    p = rows[rows["is_primary"]]
    return float(p["value"].iloc[0]) if len(p) else math.nan


def run_index(plan_dir) -> pd.DataFrame:
    """One row per (run, target, language, split) of the target and retrieval phases under `plan_dir`, with the
    run folder and the score the run recorded."""
    plan_dir = Path(plan_dir)
    recs = []
    for p in sorted(plan_dir.rglob("metrics.jsonl")):
        if "_failed" in p.relative_to(plan_dir).parts:
            continue
        rows = [r for r in results.read_rows(p) if r["phase"] in ("target", "retrieval")]
        if not rows:
            continue
        d = results.to_frame(rows)
        for (rid, task, lang, split), g in d.groupby(["run_id", "target_task", "language", "split"], sort=False):
            first = g.iloc[0]
            recs.append({"run_dir": str(p.parent), "run_id": rid, "phase": first["phase"], "model": first["model"],
                         "intermediate": first["intermediate"], "target": task, "language": lang, "split": split,
                         "seed": int(first["seed"]), "n_examples": int(first["n_examples"]),
                         "recorded": _score_of(task, g)})
    cols = ["run_dir", "run_id", "phase", "model", "intermediate", "target", "language", "split", "seed",
            "n_examples", "recorded"]
    return pd.DataFrame(recs, columns=cols)


def _files(run_dir, task: str, lang: str, split: str) -> tuple[Path, Path]:
    # evaluation.zero_shot's layout: test in `predictions/` and `labels/` (XTREME's submission layout), any
    # other split in `predictions/<split>/` and `labels/<split>/`
    sub = Path() if split == "test" else Path(split)
    return (scoring.file_path(task, lang, Path(run_dir) / "predictions" / sub),
            scoring.file_path(task, lang, Path(run_dir) / "labels" / sub))


def read_gold(task: str, path) -> object:
    """Gold labels from a label file, as `units` takes them."""
    t = tasks.get(task)
    path = Path(path)
    if t.type == "span_qa":
        return metrics.squad_gold(json.loads(path.read_text(encoding="utf-8")))
    if task == "bucc2018":
        return [tuple(x.split("\t")) for x in scoring._read_label(path) if x]
    if t.type == "multiple_choice":
        return scoring._read_jsonl(path)
    if t.type == "tagging":
        return scoring._read_tag(path)
    return scoring._read_label(path)


def read_predictions(task: str, path, gold=None) -> object:
    """Predictions from a prediction file, as `units` takes them (multiple choice: aligned to `gold` by idx)."""
    t = tasks.get(task)
    path = Path(path)
    if t.type == "span_qa":
        return json.loads(path.read_text(encoding="utf-8"))
    if t.type == "multiple_choice":
        return scoring._mc_labels(scoring._read_jsonl(path), gold, path)[0]
    return read_gold(task, path)


def _gold_values(task: str, gold):
    if tasks.get(task).type == "multiple_choice":
        return [r["label"] for r in gold]
    if task == "tatoeba":
        return [int(g) for g in gold]
    return gold


def _pred_values(task: str, pred):
    if task == "tatoeba":
        return [int(p) for p in pred]
    return pred


def _rng(seed: int, *key) -> np.random.Generator:
    # one stream per (target, language, split): a cell's interval does not depend on which other cells are present
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


@dataclass
class GainResult:
    """`table`: one row per (model, intermediate, target, split, language), plus ``language == "avg"`` rows;
    `reps`: the bootstrap gains of each row, keyed like the table's key columns; `missing`: what could not be
    rescored and why (and runs counted as replicates although they share a seed)."""
    table: pd.DataFrame
    reps: dict
    n_boot: int
    missing: list
    seconds: float = 0.0

    KEY = ("model", "intermediate", "target", "split", "language")

    def replicates(self, model: str, intermediate: str, target: str, language: str, split: str = "") -> np.ndarray:
        """Bootstrap gains of one cell (split: the table's, test preferred); NaNs when the cell has none."""
        splits = [split] if split else list(SPLIT_PREFERENCE) + sorted({k[3] for k in self.reps})
        for sp in splits:
            r = self.reps.get((model, intermediate, target, sp, language))
            if r is not None:
                return r
        return np.full(self.n_boot, np.nan)

    def average(self, model: str, intermediate: str, targets, languages=None, benchmark: str | None = None,
                exclude_english: bool = False, split: str = "", skip_missing: bool = False) -> np.ndarray:
        """Bootstrap gains of the mean over `targets` of each target's mean over languages (the languages
        present, restricted to `languages` / the benchmark's list / non-English as asked). A target without
        gains makes the result NaN, or is left out with ``skip_missing`` (as `analysis.difficulty_table` averages
        only the targets both runs have)."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        per_target = []
        for t in targets:
            langs = {k[4] for k in self.reps if k[:3] == (model, intermediate, t) and k[4] != AVG}
            if languages is not None:
                langs &= set(languages)
            if benchmark:
                try:
                    langs &= set(tasks.languages(t, benchmark))
                except ValueError:
                    pass
            if exclude_english:
                langs.discard("en")
            if not langs:
                if skip_missing:
                    continue
                return np.full(self.n_boot, np.nan)
            per_target.append(np.mean([self.replicates(model, intermediate, t, lg, split) for lg in sorted(langs)],
                                      axis=0))
        return np.mean(per_target, axis=0) if per_target else np.full(self.n_boot, np.nan)


def _sd(x) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else math.nan


def _avg_sd(per_seed: dict, key: tuple, languages) -> float:
    """Seed standard deviation of the language-averaged score (seeds that cover every language)."""
    langs = list(languages)
    means = [np.mean([by[lg] for lg in langs]) for by in per_seed.get(key, {}).values() if set(langs) <= set(by)]
    return _sd(means)


def seed_table(table: pd.DataFrame) -> pd.DataFrame:
    """The language averages with seed statistics: baseline and intermediate score (mean over seeds), seed
    standard deviation (NaN with one seed) and n seeds, and the gain with its interval."""
    cols = ["model", "target", "split", "intermediate", "score_base", "sd_base", "n_base", "score", "sd", "n", "gain",
            "gain_lo", "gain_hi", "excludes_zero", "method"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    return table[table["language"] == AVG][cols].reset_index(drop=True)


def compute(plan_dir, targets=None, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
            exclude_english: bool = False, model: str = "") -> GainResult:
    """Every (model, intermediate, target, split, language) gain over the same model's baseline under
    `plan_dir` (``outputs/<plan>``), with paired bootstrap intervals, and per target the language average."""
    import time
    t0 = time.perf_counter()
    idx_all = _selected_runs(plan_dir, targets, model, exclude_english)
    rows, reps, missing = [], {}, []
    per_seed: dict = {}          # (model, label, target, split) -> seed -> language -> score, for the averages' sd
    for (mdl, task, split, lang), cell in idx_all.groupby(["model", "target", "split", "language"], sort=True):
        base = cell[cell["intermediate"] == results.NO_INTERMEDIATE]
        others = [i for i in cell["intermediate"].unique() if i != results.NO_INTERMEDIATE]
        if base.empty or not others:
            continue
        if task not in tasks.REGISTRY or tasks.get(task).family != "target":
            missing.append(f"{task}/{lang}/{split}: not a target task with prediction files")
            continue
        runs, golds = _read_cell(cell, task, lang, split, missing)
        if not runs:
            continue
        gold = golds[0]
        if any(g != gold for g in golds[1:]):
            missing.append(f"{task}/{lang}/{split}: runs of {mdl} were scored on different gold labels; not paired")
            continue
        try:
            u = units(task, lang, _gold_values(task, gold), [p for _, p in runs])
        except ValueError as e:          # files that do not pair up (lengths, formats): say so, keep the rest
            missing.append(f"{task}/{lang}/{split}: {e}")
            continue
        order = pd.DataFrame([r for r, _ in runs]).reset_index(drop=True)
        dup = order[order.duplicated(["intermediate", "seed"], keep=False)]
        if len(dup):         # e.g. the same setup in two plan phases: counted as replicates, which may be wrong
            missing.append(f"{task}/{lang}/{split}: runs {', '.join(dup['run_id'])} share model, intermediate and "
                           "seed; they are treated as replicates")
        rng = _rng(seed, mdl, task, split, lang)
        ex = resample_indices(u.n, n_boot, rng)
        m = metric_rows(u, ex)
        full = full_scores(u)
        is_base = (order["intermediate"] == results.NO_INTERMEDIATE).to_numpy()
        if not is_base.any():
            continue
        base_rep = _seed_mean_rows(m[is_base], rng)
        for label, seed_, score in zip(order["intermediate"], order["seed"], full):
            per_seed.setdefault((mdl, label, task, split), {}).setdefault(int(seed_), {})[lang] = float(score)
        for inter in sorted(set(order["intermediate"]) - {results.NO_INTERMEDIATE}):
            sel = (order["intermediate"] == inter).to_numpy()
            rep = _seed_mean_rows(m[sel], rng) - base_rep
            lo, hi = interval(rep, level)
            both = sel | is_base
            gap = np.abs(full[both] - order["recorded"].to_numpy(float)[both])   # rescored vs what the run wrote
            diff = float(np.nanmax(gap)) if np.isfinite(gap).any() else math.nan
            gain = float(full[sel].mean() - full[is_base].mean())
            rows.append({"model": mdl, "intermediate": inter, "target": task, "split": split, "language": lang,
                         "n_examples": u.n, "score_base": float(full[is_base].mean()), "sd_base": _sd(full[is_base]),
                         "n_base": int(is_base.sum()), "score": float(full[sel].mean()), "sd": _sd(full[sel]),
                         "n": int(sel.sum()), "gain": gain, "gain_lo": lo, "gain_hi": hi,
                         "excludes_zero": bool(lo > 0 or hi < 0),
                         "method": "examples" if is_base.sum() == 1 and sel.sum() == 1 else "examples+seeds",
                         "rescore_diff": diff})
            reps[(mdl, inter, task, split, lang)] = rep
    table = pd.DataFrame(rows, columns=list(GainResult.KEY) + [
        "n_examples", "score_base", "sd_base", "n_base", "score", "sd", "n", "gain", "gain_lo", "gain_hi",
        "excludes_zero", "method", "rescore_diff"])
    table = _with_language_averages(table, reps, per_seed, level)
    return GainResult(table, reps, n_boot, missing, time.perf_counter() - t0)


def _selected_runs(plan_dir, targets, model: str, exclude_english: bool) -> pd.DataFrame:
    """The run index of `plan_dir` restricted to the asked targets (unknown ones named), model and languages."""
    idx_all = run_index(plan_dir)
    if targets:
        targets = [targets] if isinstance(targets, str) else list(targets)
        unknown = sorted(set(targets) - set(idx_all["target"]))
        if unknown:
            raise ValueError(f"no runs of target(s) {', '.join(unknown)} under {plan_dir}; targets there: "
                             f"{', '.join(sorted(set(idx_all['target']))) or 'none'}")
        idx_all = idx_all[idx_all["target"].isin(targets)]
    if model:
        idx_all = idx_all[idx_all["model"] == model]
    if exclude_english:
        idx_all = idx_all[idx_all["language"] != "en"]
    # a proxy split (BUCC's gold-pairs-only stand-in) never passes for the real task, here as in the tables
    return idx_all[~idx_all["split"].astype(str).str.startswith("proxy")]


def _read_cell(cell: pd.DataFrame, task: str, lang: str, split: str, missing: list) -> tuple[list, list]:
    """([(index row, prediction values)], [gold]) of one (model, target, split, language) cell's runs; a file
    that is absent or unreadable is reported in `missing`, and the rest goes on."""
    runs, golds = [], []
    for _, r in cell.iterrows():
        try:
            pf, lf = _files(r["run_dir"], task, lang, split)
            if not pf.exists() or not lf.exists():
                raise FileNotFoundError(f"{r['run_id']}: no {'predictions' if not pf.exists() else 'labels'} "
                                        f"file {pf if not pf.exists() else lf}")
            gold = read_gold(task, lf)
            runs.append((r, _pred_values(task, read_predictions(task, pf, gold))))
            golds.append(gold)
        except (FileNotFoundError, ValueError) as e:
            missing.append(f"{task}/{lang}/{split}: {e}")
    return runs, golds


def _with_language_averages(table: pd.DataFrame, reps: dict, per_seed: dict, level: float) -> pd.DataFrame:
    """`table` plus one language-average row per (model, intermediate, target, split); their resamples go to
    `reps` under language AVG."""
    avg_rows = []
    for (mdl, inter, task, split), g in table.groupby(["model", "intermediate", "target", "split"], sort=True):
        rep = np.mean([reps[(mdl, inter, task, split, lg)] for lg in g["language"]], axis=0)
        lo, hi = interval(rep, level)
        avg_rows.append({"model": mdl, "intermediate": inter, "target": task, "split": split, "language": AVG,
                         "n_examples": int(g["n_examples"].sum()), "score_base": g["score_base"].mean(),
                         "sd_base": _avg_sd(per_seed, (mdl, results.NO_INTERMEDIATE, task, split), g["language"]),
                         "n_base": int(g["n_base"].min()), "score": g["score"].mean(),
                         "sd": _avg_sd(per_seed, (mdl, inter, task, split), g["language"]), "n": int(g["n"].min()),
                         "gain": g["gain"].mean(), "gain_lo": lo, "gain_hi": hi, "excludes_zero": bool(lo > 0 or hi < 0),
                         "method": "/".join(sorted(set(g["method"]))), "rescore_diff": g["rescore_diff"].max(),
                         "n_languages": len(g)})
        reps[(mdl, inter, task, split, AVG)] = rep
    if avg_rows:
        table = pd.concat([table.assign(n_languages=1), pd.DataFrame(avg_rows)], ignore_index=True)
        table = table.sort_values(["model", "target", "intermediate", "split", "language"],
                                  key=lambda c: c.map(lambda v: (v == AVG, v)) if c.name == "language" else c,
                                  kind="stable").reset_index(drop=True)
    return table


def summary(result: GainResult, level: float = LEVEL) -> str:
    """A few lines: what was rescored, how many gains exclude 0, what is missing."""
    t = result.table
    if t.empty:
        head = ("No gains with intervals: no baseline/intermediate pair of runs with per-example predictions and "
                "labels was found.")
        return "\n".join([head] + [f"- {m}" for m in result.missing[:10]])
    per = t[t["language"] != AVG]
    avg = t[t["language"] == AVG]
    lines = [f"{len(per)} gains (model x intermediate x target x language) with paired bootstrap {level:.0%} "
             f"intervals over test examples ({result.n_boot} resamples, {result.seconds:.1f} s); "
             f"{int(per['excludes_zero'].sum())} exclude 0.",
             f"Language averages: {int(avg['excludes_zero'].sum())} of {len(avg)} exclude 0. Intervals are not "
             f"corrected for multiple comparisons: about {0.05 * len(per):.1f} of {len(per)} would exclude 0 by "
             "chance alone."]
    if (t["method"].str.contains("seeds")).any():
        lines.append("Cells with several seeds combine example and seed variation (two-level bootstrap; somewhat "
                     "conservative).")
    if (t["method"] == "examples").any():
        lines.append("Cells with one seed per arm show example noise only; seed variance would widen them.")
    bad = t[t["rescore_diff"] > 1e-6]
    if len(bad):
        lines.append(f"Warning: {len(bad)} cells rescore differently from the recorded metric (max "
                     f"{bad['rescore_diff'].max():.3g} points): their prediction files may not match their rows.")
    if result.missing:
        lines.append(f"{len(result.missing)} run/language pairs could not be rescored, e.g. {result.missing[0]}")
    return "\n".join(lines)


def formatted(table: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Wide view: rows (model, target, intermediate), one column per language + avg, cells "gain [lo, hi]" with a
    ``*`` when the interval excludes 0."""
    if table.empty:
        return pd.DataFrame()
    f = f"{{:+.{decimals}f}}"
    cell = [f"{f.format(g)} [{f.format(lo)}, {f.format(hi)}]{'*' if z else ''}" for g, lo, hi, z in
            zip(table["gain"], table["gain_lo"], table["gain_hi"], table["excludes_zero"])]
    wide = table.assign(cell=cell).pivot_table(index=["model", "target", "split", "intermediate"],
                                               columns="language", values="cell", aggfunc="first")
    cols = [c for c in wide.columns if c != AVG] + ([AVG] if AVG in wide.columns else [])
    wide = wide[cols]
    wide.columns.name = None
    return wide


# ---------------------------------------------------------------- correlations of noisy points (RQ notebooks)

def point_intervals(frame: pd.DataFrame, result: GainResult | None, *, target_col: str = "target",
                    language_col: str | None = None, targets_of=None, benchmark: str | None = None,
                    exclude_english: bool = False, skip_missing: bool = False,
                    level: float = LEVEL) -> tuple[pd.DataFrame, np.ndarray]:
    """`frame` (rows with model, intermediate, a target and optionally a language) with ``gain_lo``/``gain_hi``
    from the bootstrap, and the (rows, resamples) matrix of each point's bootstrap gains (NaN rows where no
    predictions exist). `targets_of` maps a pseudo-target (e.g. a group) to its member targets; with
    ``target_col=None`` every row averages over the targets in ``targets_of[None]``."""
    targets_of = targets_of or {}
    n_boot = result.n_boot if result is not None else 1
    reps = np.full((len(frame), n_boot), np.nan)
    for i, (_, r) in enumerate(frame.iterrows()):
        if result is None:
            break
        tgt = r[target_col] if target_col else None
        members = targets_of.get(tgt, [tgt] if tgt is not None else [])
        langs = [r[language_col]] if language_col else None
        reps[i] = result.average(r["model"], r["intermediate"], members, langs, benchmark, exclude_english,
                                 skip_missing=skip_missing)
    out = frame.copy()
    lohi = np.array([interval(x, level) for x in reps]) if len(reps) else np.empty((0, 2))
    out["gain_lo"] = lohi[:, 0] if len(lohi) else []
    out["gain_hi"] = lohi[:, 1] if len(lohi) else []
    return out, reps


def _noisy(name: str, x, y, reps, *, log_x: bool, n_boot: int, seed: int, level: float) -> dict:
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0 if log_x else True)
    keep &= np.isfinite(reps).all(axis=1)
    x, y, reps = x[keep], y[keep], reps[keep]
    xs = np.log10(x) if log_x else x
    if stats._problem(xs, y):
        return {}
    stat = stats._STAT[name]
    value = float(stat(xs, y))
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, xs.size, size=(n_boot, xs.size))       # resample points (languages / models) ...
    col = rng.integers(0, reps.shape[1], size=n_boot)              # ... and each point's examples (its bootstrap)
    boot = stat(xs[pts], reps[pts, col[:, None]])
    alpha = stats._expanded_alpha(xs.size, level)
    lo, hi = (float(v) for v in np.nanquantile(boot, [alpha, 1 - alpha]))
    noise = reps - reps.mean(axis=1, keepdims=True)                # each point's noise alone, no true differences
    null = stat(np.broadcast_to(xs, (reps.shape[1], xs.size)), noise.T)
    p = float((1 + np.sum(np.abs(null) >= abs(value) - 1e-12)) / (null.size + 1))
    return {f"{name}_lo_noisy": lo, f"{name}_hi_noisy": hi, f"{name}_noise_p": p}


def effects_with_noise(frame: pd.DataFrame, x: str, y: str, reps: np.ndarray, by=(), *, log_x: bool = True,
                       n_boot: int = stats.N_BOOT, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """`stats.effects` plus, per group, intervals that resample points and each point's examples together
    (``*_lo_noisy``/``*_hi_noisy``: in every resample the chosen points take one of their bootstrap gains) and
    ``*_noise_p``: the share of draws in which the points' example noise alone (each point's bootstrap deviation,
    no true differences between points) gives a statistic at least as far from 0 as the observed one. A large
    ``noise_p`` (>= 0.05) says the noise of the points alone could produce the observed correlation.
    These use the points that have bootstrap gains (``n_noisy`` of them); with fewer than `stats.MIN_POINTS` such
    points they are NaN."""
    eff = stats.effects(frame, x, y, by, log_x=log_x, n_boot=n_boot, seed=seed)
    by = [by] if isinstance(by, str) else list(by)
    extra = []
    groups = frame.reset_index(drop=True).groupby(by, sort=False, dropna=False) if by else \
        [((), frame.reset_index(drop=True))]
    for key, g in groups:
        row = {"n_noisy": int(np.isfinite(reps[g.index.to_numpy()]).all(axis=1).sum())}
        for name in ("pearson", "spearman", "slope"):
            row.update(_noisy(name, g[x], g[y], reps[g.index.to_numpy()], log_x=log_x, n_boot=n_boot, seed=seed,
                              level=level))
        extra.append(row)
    cols = ["n_noisy"] + [f"{n}_{s}" for n in ("pearson", "spearman", "slope") for s in ("lo_noisy", "hi_noisy",
                                                                                            "noise_p")]
    return pd.concat([eff.reset_index(drop=True), pd.DataFrame(extra, columns=cols)], axis=1)


def reading_noise(effects: pd.DataFrame, label_cols=(), y_label: str = "gain") -> str:
    """One sentence per comparison on whether the points' own noise could produce the observed association."""
    label_cols = [label_cols] if isinstance(label_cols, str) else list(label_cols)
    if "n_noisy" not in effects or not (effects["n_noisy"] > 0).any():
        return (f"The {y_label} points carry no per-example predictions here, so their own noise is not estimated: "
                "the intervals above treat each point as exact.")
    if effects["slope_noise_p"].isna().all():
        return (f"No comparison has at least {stats.MIN_POINTS} points with per-example predictions, so the noise "
                f"of the {y_label} points is not weighed against a correlation.")
    lines = [f"Accounting for the noise of each {y_label} (paired bootstrap over its test examples, resampled "
             "together with the points):"]
    for _, r in effects.iterrows():
        name = " / ".join(str(r[c]) for c in label_cols) or "all points"
        if not np.isfinite(r.get("slope_noise_p", np.nan)):
            continue
        s = (f"- {name}: slope {_f(r['slope'])} [{_f(r['slope_lo_noisy'])}, {_f(r['slope_hi_noisy'])}], Pearson r "
             f"[{_f(r['pearson_lo_noisy'])}, {_f(r['pearson_hi_noisy'])}]; ")
        if r["slope_noise_p"] >= 0.05:
            s += (f"the noise of the points alone produces a slope this far from 0 in {r['slope_noise_p']:.0%} of "
                  "draws, so it could produce the observed correlation.")
        else:
            s += (f"the noise of the points alone rarely produces a slope this large (p = {r['slope_noise_p']:.3f}), "
                  "so the association is not just measurement noise.")
        lines.append(s)
    return "\n".join(lines)


def _f(v) -> str:
    return f"{v:+.2f}" if np.isfinite(v) else "nan"


# ---------------------------------------------------------------- command line

def _cmd_gains(args) -> int:
    from ..runner import plans
    plan = plans.expand(args.plan, args.outputs)
    if not plan.dir.is_dir():
        raise FileNotFoundError(f"no outputs for plan {plan.name} at {plan.dir}; run `xfer run {args.plan}` first")
    res = compute(plan.dir, targets=args.target or None, n_boot=args.n_boot, seed=args.seed)
    print(summary(res))
    if not res.table.empty:
        with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 500):
            print(formatted(res.table).to_string())
            print("\nLanguage averages: mean over seeds, seed sd and n per arm")
            print(seed_table(res.table).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.csv:
        files.atomic_write_text(args.csv, res.table.to_csv(index=False))
        print(f"table written: {args.csv}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("gains", help="gains over the baseline with paired bootstrap intervals (examples, seeds)",
                       description="Per (model, intermediate, target, language, split): the gain over the same "
                                   "model's no-intermediate run, with a paired bootstrap 95%% interval over test "
                                   "examples (and seeds), and the language average per target. '*' marks "
                                   "intervals that exclude 0.")
    p.add_argument("plan", help="plan file, e.g. params/plans/smoke.yaml")
    p.add_argument("--target", action="append", metavar="T", help="only this target task (repeatable)")
    p.add_argument("--csv", metavar="FILE", help="also write the long table as CSV")
    p.add_argument("--outputs", default="outputs", metavar="DIR", help="outputs root (default: outputs)")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap resamples (default {N_BOOT})")
    p.add_argument("--seed", type=int, default=0, help="random seed of the resampling (default 0)")
    p.set_defaults(func=_cmd_gains)
