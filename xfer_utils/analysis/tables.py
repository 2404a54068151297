"""Analysis of the results table (results.py schema): the paper's table, gains over the baseline, the published
side-by-side, and the three follow-up questions (README, Follow-up studies). Pure functions of the long DataFrame;
plots.py writes the tables and figures. Notebooks 40 and 51-53 only call these.

Scoring rules (XTREME's evaluate.py, docs/architecture.md): a language's score is metrics.task_score, the one
task-score rule (the primary metric; span QA (EM + F1) / 2, no score when either is missing); a task's score is the
mean over its languages (the benchmark's list; English excluded when asked, for zero-shot questions); seeds are averaged after.
One split per target task: ``split`` if given, else test when the table has it, else validation.

Intermediate labels are opaque strings; `kind_of` sorts them: ``none`` = baseline, ``a@xx`` = translated data,
``a+mlm`` = MLM co-training, ``a+b`` = multi-task, anything else a single task.

>>> [kind_of(x) for x in ("none", "mnli", "mnli+squad", "mnli+mlm", "mnli@tr")]
['baseline', 'single', 'multi-task', 'mlm', 'translated']
>>> round(chance_score("mnli"), 2), chance_score("hellaswag"), chance_score("squad"), chance_headroom("commonsenseqa")
(33.33, 25.0, 0.0, 80.0)
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from .. import ladder, metrics, results, tasks
from ..files import RESOURCES
from . import stats

KINDS = ("baseline", "single", "multi-task", "mlm", "translated")
QA_METRICS = ("exact_match", "f1")
SPLIT_PREFERENCE = ("test", "validation")
BENCHMARK_TARGETS = {"xtreme": tuple(tasks.XTREME_TARGETS), "xtreme-r": tuple(tasks.XTREME_R_TASKS)}
XTREME_R_CLASSIFICATION = "xtreme-r classification"          # XNLI + XCOPA (XTREME-R's classification group)
RQ_SIZE_GROUPS = {XTREME_R_CLASSIFICATION: ("xnli", "xcopa")}


def kind_of(label: str) -> str:
    if label == results.NO_INTERMEDIATE:
        return "baseline"
    if "@" in label:
        return "translated"
    parts = label.split("+")
    return "mlm" if "mlm" in parts else "multi-task" if len(parts) > 1 or parts[0] == "multitask" else "single"


def _task(name: str):
    try:
        return tasks.get(name)
    except ValueError:
        return None


def _benchmark_languages(task: str, benchmark: str | None) -> list[str] | None:
    if not benchmark or _task(task) is None:
        return None
    return tasks.languages(task, benchmark)


# ---------------------------------------------------------------- scores
def language_scores(df: pd.DataFrame, qa: str = "avg", phases=("target", "retrieval")) -> pd.DataFrame:
    """One XTREME score per run x target x language x split (columns: run keys, language, score, kind)."""
    if qa not in ("avg",) + QA_METRICS:
        raise ValueError(f"unknown QA basis {qa!r}; valid: avg, {', '.join(QA_METRICS)}")
    keys = ["run_id", "model", "intermediate", "target_task", "seed", "split", "language"]
    d = df[df["phase"].isin(phases)]
    d = d[~_is_proxy(d)]      # proxy rows (split "proxy-...") are not the task: never in tables or averages
    is_qa = d["target_task"].map(lambda t: getattr(_task(t), "type", "") == "span_qa").astype(bool)
    parts = [d[~is_qa & d["is_primary"]][keys + ["value"]].rename(columns={"value": "score"})]
    q = d[is_qa & d["metric"].isin(QA_METRICS)]
    if len(q):
        piv = q.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean")
        piv = piv.reindex(columns=list(QA_METRICS))
        if qa in QA_METRICS:
            score = piv[qa]
        else:
            at = keys.index("target_task")
            score = pd.Series([metrics.task_score(k[at], row.dropna().to_dict()) for k, row in piv.iterrows()],
                              index=piv.index, dtype=float)
        parts.append(score.rename("score").reset_index())
    out = pd.concat(parts, ignore_index=True).dropna(subset=["score"])
    out["kind"] = out["intermediate"].map(kind_of)
    return out


def _is_proxy(df: pd.DataFrame) -> pd.Series:
    return df["split"].astype(str).str.startswith(tasks.PROXY_SPLIT_PREFIX)


def proxy_note(df: pd.DataFrame) -> str:
    """One sentence naming the tasks whose proxy rows the tables leave out ('' when there are none)."""
    proxied = sorted(set(df.loc[_is_proxy(df), "target_task"])) if len(df) else []
    if not proxied:
        return ""
    return (f"left out of the table and its averages: {', '.join(proxied)} rows scored on a proxy (split "
            f"'{tasks.PROXY_SPLIT_PREFIX}...'), not on the task's real data")


def _pick_split(scores: pd.DataFrame, split: str = "", preference=SPLIT_PREFERENCE) -> pd.DataFrame:
    if split:
        return scores[scores["split"] == split]
    chosen = {}
    for task, g in scores.groupby("target_task"):
        present = set(g["split"])
        chosen[task] = next((s for s in preference if s in present), sorted(present)[0])
    return scores[scores["split"] == scores["target_task"].map(chosen)]


def _filter_languages(scores: pd.DataFrame, benchmark: str | None, exclude_english: bool) -> pd.DataFrame:
    allowed = {t: _benchmark_languages(t, benchmark) for t in scores["target_task"].unique()}
    keep = [allowed[t] is None or lg in allowed[t] for t, lg in zip(scores["target_task"], scores["language"])]
    keep = np.asarray(keep, dtype=bool)
    if exclude_english:
        keep &= (scores["language"] != "en").to_numpy()
    return scores[keep]


def zero_shot_language_scores(df, benchmark="xtreme", exclude_english=False, split="", qa="avg") -> pd.DataFrame:
    """Language scores on one split per task, restricted to the benchmark's languages (and non-English ones)."""
    return _filter_languages(_pick_split(language_scores(df, qa), split), benchmark, exclude_english)


def task_scores(df: pd.DataFrame, benchmark: str | None = "xtreme", exclude_english: bool = False, split: str = "",
                qa: str = "avg") -> pd.DataFrame:
    """Per model x intermediate x target x seed: the task score = mean over languages of the language scores."""
    ls = zero_shot_language_scores(df, benchmark, exclude_english, split, qa)
    keys = ["model", "kind", "intermediate", "target_task", "seed", "split"]
    per_lang = ls.groupby(keys + ["language"], as_index=False)["score"].mean()
    out = per_lang.groupby(keys, as_index=False).agg(score=("score", "mean"), n_languages=("language", "nunique"))
    expected = {t: _benchmark_languages(t, benchmark) for t in out["target_task"].unique()}
    # the languages that have the split: UD-POS kk, th, tl, yo are test-only, so a dev cell expects 29 of 33
    out["n_expected"] = [len([x for x in expected[t] if not (exclude_english and x == "en") and
                              (_task(t) is None or sp in tasks.splits(t, x))]) if expected[t] else n
                         for t, sp, n in zip(out["target_task"], out["split"], out["n_languages"])]
    return out


def _seed_mean(ts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    agg = {"score": ("score", "mean"), "n_seeds": ("seed", "nunique")}
    if "n_languages" in ts:
        agg["n_languages"] = ("n_languages", "min")
    if "n_expected" in ts:
        agg["n_expected"] = ("n_expected", "max")
    return ts.groupby(keys, as_index=False).agg(**agg)


def _with_gain(frame: pd.DataFrame, match: list[str]) -> pd.DataFrame:
    """Intermediate rows joined with the baseline row that agrees on `match`; gain = score - score_base."""
    base = frame[frame["kind"] == "baseline"][match + ["score"]].rename(columns={"score": "score_base"})
    out = frame[frame["kind"] != "baseline"].merge(base, on=match, how="inner")
    out["gain"] = out["score"] - out["score_base"]
    return out


def _check_model(df: pd.DataFrame, model: str) -> None:
    if model and len(df) and model not in set(df["model"]):
        raise ValueError(f"model {model!r} is not in the results table; models: {', '.join(sorted(set(df['model'])))}")


def _sorted(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Rows in reading order: intermediate setups as in the paper's table, other columns ascending."""
    def key(col):
        return col.map(_row_order) if col.name == "intermediate" else col
    return frame.sort_values(cols, key=key, kind="stable").reset_index(drop=True)


def _row_order(label: str) -> tuple:
    kind = kind_of(label)
    first = label.split("+")[0].split("@")[0]
    pos = tasks.PAPER_INTERMEDIATE.index(first) if first in tasks.PAPER_INTERMEDIATE else 99
    return KINDS.index(kind), pos, label


# ---------------------------------------------------------------- the paper's table
def paper_table(df: pd.DataFrame, benchmark: str = "xtreme", model: str = "", split: str = "",
                qa: str = "avg") -> pd.DataFrame:
    """Rows (model, kind, intermediate): baseline, single tasks, multi-task, MLM, translated; columns: the
    benchmark's targets present in the table + ``avg`` (mean over those targets; NaN when a row lacks one)."""
    if benchmark not in BENCHMARK_TARGETS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(BENCHMARK_TARGETS)}")
    _check_model(df, model)
    ts = task_scores(df[df["model"] == model] if model else df, benchmark, split=split, qa=qa)
    targets = [t for t in BENCHMARK_TARGETS[benchmark] if t in set(ts["target_task"])]
    ts = ts[ts["target_task"].isin(targets)]
    idx = ["model", "kind", "intermediate"]
    cells = _seed_mean(ts, idx + ["target_task"])
    # A cell over fewer languages than its column has elsewhere in the table is no task score: shown incomplete.
    # A column the whole table scores on fewer languages than the benchmark lists (a plan's `languages`) is
    # comparable within the table but is not XTREME's task score: `partial_targets` says so.
    ls = zero_shot_language_scores(df[df["model"] == model] if model else df, benchmark, False, split, qa)
    in_table = ls[ls["target_task"].isin(targets)].groupby("target_task")["language"].nunique()
    cells["n_in_table"] = cells["target_task"].map(in_table).fillna(0).astype(int)
    partial = {t: (int(in_table[t]), int(n)) for t, n in cells.groupby("target_task")["n_expected"].max().items()
               if in_table.get(t, 0) < n}
    short = cells[cells["n_languages"] < cells["n_in_table"]]
    incomplete = {(m, k, i, t): (int(a), int(b)) for m, k, i, t, a, b in
                  short[idx + ["target_task", "n_languages", "n_in_table"]].itertuples(index=False)}
    table = cells.pivot_table(index=idx, columns="target_task", values="score")
    table = table.reindex(columns=targets)
    table.columns.name = None
    for (m, k, i, t) in incomplete:
        table.loc[(m, k, i), t] = np.nan
    table["avg"] = table[targets].mean(axis=1, skipna=False) if targets else np.nan
    order = sorted(table.index, key=lambda i: (i[0], _row_order(i[2])))
    table = table.loc[order] if order else table
    missing = [t for t in BENCHMARK_TARGETS[benchmark] if t not in targets]
    splits = ts.groupby("target_task")["split"].first().to_dict()
    table.attrs = {"benchmark": benchmark, "targets": targets, "missing_targets": missing, "splits": splits,
                   "qa": qa, "incomplete": incomplete, "partial_targets": partial,
                   "note": proxy_note(df)}
    return table


def show_incomplete(table: pd.DataFrame) -> pd.DataFrame:
    """`paper_table` for display: a cell scored on fewer languages than its task has reads 'incomplete (k/n)'
    instead of a number (its value is NaN in the table itself, and so is its row's average)."""
    out = table.astype(object)
    for (m, k, i, t), (a, b) in table.attrs.get("incomplete", {}).items():
        if (m, k, i) in out.index and t in out.columns:
            out.loc[(m, k, i), t] = f"incomplete ({a}/{b})"
    out.attrs = dict(table.attrs)
    return out


def paper_tables(df: pd.DataFrame, benchmark: str = "xtreme", model: str = "", splits=tasks.EVAL_SPLITS,
                 qa: str = "avg") -> dict[str, pd.DataFrame]:
    """`paper_table` for each evaluation split the table has (the paper's table is on dev, the leaderboard on
    test: docs/sources.md, Test vs dev), in the order of `splits`."""
    present = set(df["split"]) if len(df) else set()
    return {sp: paper_table(df, benchmark, model=model, split=sp, qa=qa) for sp in splits if sp in present}


def best_per_target(df: pd.DataFrame, benchmark: str = "xtreme", model: str = "", select_on: str = "validation",
                    report_on: str = "test", qa: str = "avg") -> pd.DataFrame:
    """Per model x target: the intermediate setup with the best `select_on` (dev) task score, reported with its
    `report_on` (test) score and the baseline's (XTREME's best-intermediate-per-task, without choosing on the
    numbers it reports). A target without a dev split (XQuAD, Tatoeba) is selected on `report_on` itself, and
    ``selected_on`` says so (optimistic for that target). Incomplete cells (missing languages) take no part."""
    _check_model(df, model)
    sel = paper_table(df, benchmark, model=model, split=select_on, qa=qa) if select_on in set(df["split"]) \
        else None
    rep = paper_table(df, benchmark, model=model, split=report_on, qa=qa)
    rows = []
    for m, sub in rep.groupby(level="model", sort=False):
        kinds = sub.index.get_level_values("kind")
        base = sub[kinds == "baseline"]
        for t in rep.attrs["targets"]:
            on, pool = report_on, sub[kinds != "baseline"][t]
            if sel is not None and t in sel.columns and m in sel.index.get_level_values("model"):
                s = sel.xs(m, level="model", drop_level=False)
                s = s[s.index.get_level_values("kind") != "baseline"][t]
                if s.notna().any():
                    on, pool = select_on, s
            pool = pool.dropna()
            if pool.empty:
                continue
            best = pool.idxmax()
            test = rep[t].get(best, np.nan)
            b = float(base[t].iloc[0]) if len(base) else np.nan
            rows.append({"model": m, "target": t, "best_intermediate": best[2], "selected_on": on,
                         "selection_score": float(pool[best]), report_on: float(test), f"baseline_{report_on}": b,
                         "gain": float(test) - b})
    cols = ["model", "target", "best_intermediate", "selected_on", "selection_score", report_on,
            f"baseline_{report_on}", "gain"]
    return pd.DataFrame(rows, columns=cols)


def gain_table(table: pd.DataFrame) -> pd.DataFrame:
    """`paper_table` minus each model's baseline row (rows without a baseline for their model are dropped)."""
    parts = []
    for _, sub in table.groupby(level="model", sort=False):
        base = sub[sub.index.get_level_values("kind") == "baseline"]
        rest = sub[sub.index.get_level_values("kind") != "baseline"]
        if len(base) and len(rest):
            parts.append(rest - base.iloc[0])
    out = pd.concat(parts) if parts else table.iloc[0:0]
    out.attrs = dict(table.attrs)
    return out


@lru_cache(maxsize=None)
def _published() -> dict:
    import yaml
    return yaml.safe_load((RESOURCES / "published.yaml").read_text(encoding="utf-8"))


def published() -> dict:
    """The published numbers (resources/published.yaml): sources, entries, categories, claims."""
    return _published()


def _published_score(scores: dict, task: str, qa: str) -> float:
    if getattr(_task(task), "type", "") != "span_qa":
        return float(next(iter(scores.values())))
    if qa in QA_METRICS:
        return float(scores.get(qa, math.nan))
    s = metrics.task_score(task, scores)
    return math.nan if s is None else float(s)


def published_comparison(table: pd.DataFrame, benchmark: str | None = None, qa: str | None = None) -> pd.DataFrame:
    """Our baseline and best-intermediate-per-task rows beside the published ones, on the same scoring basis
    (``qa`` = "avg": QA as (EM+F1)/2, so sources that give only F1 show NaN there; "f1": F1 everywhere).
    ``avg_non_retrieval`` = mean over the benchmark's non-retrieval targets (RemBERT's Avg_task for XTREME)."""
    benchmark = benchmark or table.attrs.get("benchmark", "xtreme")
    qa = qa or table.attrs.get("qa", "avg")
    cols = [t for t in BENCHMARK_TARGETS[benchmark] if t in table.columns
            or any(t in e["scores"] for e in published()["entries"])]
    rows = []
    for model, sub in table.groupby(level="model", sort=False):
        kinds = sub.index.get_level_values("kind")
        split = "/".join(sorted(set(table.attrs.get("splits", {}).values()))) or "?"
        if (kinds == "baseline").any():
            rows.append({"row": f"ours: {model}, no intermediate", **sub[kinds == "baseline"].iloc[0].to_dict(),
                         "source": "this study", "split": split})
        if (kinds != "baseline").any():
            rows.append({"row": f"ours: {model}, best intermediate per task",
                         **sub[kinds != "baseline"].max().to_dict(), "source": "this study", "split": split})
    for e in published()["entries"]:
        src = published()["sources"][e["source"]]
        rows.append({"row": f"{e['label']} [{e['source']}]", "source": src["cite"], "split": src["split"],
                     **{t: _published_score(m, t, qa) for t, m in e["scores"].items()}})
    out = pd.DataFrame(rows).set_index("row").reindex(columns=cols + ["source", "split"])
    nonret = [t for t in cols if t not in tasks.RETRIEVAL_TASKS]
    out.insert(len(cols), "avg_non_retrieval", out[nonret].astype(float).mean(axis=1, skipna=False))
    out.attrs = {"benchmark": benchmark, "qa": qa,
                 "note": "ours: the best intermediate per task is chosen on the split it is reported on (optimistic); "
                         "published rows are XTREME test sets with XLM-R large, ours may be dev sets or tiny models, "
                         "so the numbers are side by side, not comparable. QA basis: "
                         + ("(EM + F1) / 2" if qa == "avg" else qa)}
    return out


# ---------------------------------------------------------------- RQ-size
FULL_PARAMETER = ("full", "grad_checkpointing", "adam8bit", "fsdp")   # same update, memory spent differently
OTHER_TRAINING = ("mark", "exclude")


def training_of(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x intermediate: how its point of a size plot was trained, from the ``strategy``/``lr`` columns of
    the runs behind it (the intermediate run, its target runs and the model's baseline target runs). ``training``:
    'full-parameter' (full, gradient checkpointing, 8-bit AdamW, FSDP), 'lora', 'mixed', or 'unknown' when a run did
    not record it (tables written before the columns existed); ``lr``: the target phase's lr when all agree (else
    NaN)."""
    d = df[df["phase"].isin(("intermediate", "target"))]
    strat = d["strategy"] if "strategy" in d else pd.Series("", index=d.index)
    lrs = d["lr"] if "lr" in d else pd.Series(0.0, index=d.index)
    d = d.assign(strategy=strat.fillna(""), lr=lrs.where(lrs > 0))   # 0 = not recorded
    out = []
    for (m, inter), g in d.groupby(["model", "intermediate"]):
        base = d[(d["model"] == m) & (d["intermediate"] == results.NO_INTERMEDIATE) & (d["phase"] == "target")]
        used = set(g["strategy"]) | set(base["strategy"])
        label = "unknown" if "" in used else "full-parameter" if used <= set(FULL_PARAMETER) else \
            "lora" if used == {"lora"} else "mixed"
        t_lr = g.loc[g["phase"] == "target", "lr"].dropna().unique()
        out.append({"model": m, "intermediate": inter, "training": label,
                    "lr": float(t_lr[0]) if len(t_lr) == 1 else np.nan})
    return pd.DataFrame(out, columns=["model", "intermediate", "training", "lr"])


def gains_by_model(df: pd.DataFrame, targets=("stsb_multi_mt", "xnli", "xcopa"), benchmark: str = "xtreme-r",
                   exclude_english: bool = True, split: str = "", groups=None, params: pd.DataFrame | None = None,
                   other_training: str = "mark"):
    """Per model x intermediate x target: zero-shot score, baseline score and gain, with the model's parameter
    counts (ladder; or `params`, a frame with ``model`` + count columns). ``groups`` adds mean-gain pseudo-targets
    (default: ``xtreme-r classification`` = XNLI + XCOPA, where both are present).

    Like with like: ``training`` (`training_of`) and ``lr`` say how each point was trained; ``same_training`` is
    False for points trained otherwise than full-parameter fine-tuning (LoRA, with its own lr; or a mix).
    ``other_training`` = "exclude" drops those points ('unknown' ones, from tables without the columns, stay)."""
    if other_training not in OTHER_TRAINING:
        raise ValueError(f"unknown other_training {other_training!r}; valid: {', '.join(OTHER_TRAINING)}")
    groups = RQ_SIZE_GROUPS if groups is None else groups
    ts = task_scores(df, benchmark, exclude_english, split)
    ts = ts[ts["target_task"].isin(list(targets))]
    g = _with_gain(_seed_mean(ts, ["model", "kind", "intermediate", "target_task"]), ["model", "target_task"])
    for name, members in groups.items():
        sub = g[g["target_task"].isin(members)]
        full = sub.groupby(["model", "kind", "intermediate"])["target_task"].transform("nunique") == len(members)
        agg = sub[full].groupby(["model", "kind", "intermediate"], as_index=False)[
            ["score", "score_base", "gain"]].mean()
        g = pd.concat([g, agg.assign(target_task=name)], ignore_index=True)
    if params is None:
        params = ladder.params_table()
        g["ladder_name"] = g["model"].map(lambda m: getattr(ladder.lookup(m), "name", ""))
        g = g.merge(params.drop(columns=["hub_id", "family"]), on="ladder_name", how="left")
    else:
        g = g.merge(params, on="model", how="left")
    g = g.merge(training_of(df), on=["model", "intermediate"], how="left")
    g["training"] = g["training"].fillna("unknown")
    g["same_training"] = g["training"].isin(["full-parameter", "unknown"])
    if other_training == "exclude":
        g = g[g["same_training"]]
    return _sorted(g.rename(columns={"target_task": "target"}), ["intermediate", "target", "model"])


# ---------------------------------------------------------------- RQ-data
@lru_cache(maxsize=None)
def _cc100() -> pd.DataFrame:
    return pd.read_csv(RESOURCES / "cc100.csv", comment="#", dtype={"iso639_1": str, "iso639_3": str},
                       keep_default_na=False, na_values=[""])


def cc100() -> pd.DataFrame:
    """CC-100 tokens (millions) and GiB per language, with codes and Wikipedia sizes (resources/cc100.csv)."""
    return _cc100().copy()


def gains_by_language(df: pd.DataFrame, targets=None, benchmark: str = "xtreme", exclude_english: bool = True,
                      split: str = "", model: str = "") -> pd.DataFrame:
    """Per model x intermediate x target x language: zero-shot gain over the baseline, with the language's CC-100
    volume (``cc100_tokens_m``, ``cc100_gib``; NaN for languages XLM-R never saw, ``in_cc100`` False).
    ``model``: keep one model (empty = all)."""
    _check_model(df, model)
    ls = zero_shot_language_scores(df[df["model"] == model] if model else df, benchmark, exclude_english, split)
    if targets:
        ls = ls[ls["target_task"].isin(list(targets))]
    keys = ["model", "kind", "intermediate", "target_task", "language"]
    g = _with_gain(_seed_mean(ls, keys), ["model", "target_task", "language"])
    cc = cc100()[["iso639_1", "language", "cc100_tokens_m", "cc100_gib", "in_cc100", "wiki_tokens", "in_mbert"]]
    g = g.merge(cc.rename(columns={"iso639_1": "language", "language": "language_name"}), on="language", how="left")
    g["in_cc100"] = g["cc100_tokens_m"].notna()
    return _sorted(g.rename(columns={"target_task": "target"}), ["model", "intermediate", "target", "language"])


# ---------------------------------------------------------------- RQ-difficulty
def chance_score(task: str, majority: dict | None = None) -> float:
    """Score (0-100) of a trivial predictor on the English dev set: the majority-class share when given in
    `majority` (task -> fraction), else chance: 100/K for K labels or K choices; 0 for span QA (no span) and
    regression (a constant has no correlation); NaN for tagging and MLM (no data-free baseline)."""
    if majority and task in majority:
        return 100.0 * majority[task]
    t = _task(task)
    if t is None:
        return math.nan
    if t.type in ("classification", "pair_classification") and t.label_names:
        return 100.0 / len(t.label_names)
    if t.type == "multiple_choice" and t.n_choices:
        return 100.0 / t.n_choices
    return 0.0 if t.type in ("span_qa", "regression") else math.nan


def chance_headroom(task: str, majority: dict | None = None) -> float:
    """Model-free difficulty: 100 - the trivial predictor's score = the room a model has above it."""
    return 100.0 - chance_score(task, majority)


def difficulty_table(df: pd.DataFrame, targets=None, benchmark: str = "xtreme-r", exclude_english: bool = True,
                     split: str = "", majority: dict | None = None) -> pd.DataFrame:
    """Per model x single intermediate task: two difficulty measures and the zero-shot outcome.

    * ``own_error`` = 100 - the model's own English dev score on the intermediate task (phase-intermediate rows);
    * ``chance_headroom`` = 100 - chance (or majority) score: model-free;
    * ``normalized_error`` = 100 * own_error / chance_headroom: the share of the above-chance room left unsolved;
    * ``zs_score`` / ``zs_gain``: mean over the benchmark's targets (non-English languages by default) of the
      target score and of its gain over the baseline (only targets both runs have), with ``n_targets``.
    """
    inter = df[(df["phase"] == "intermediate") & (df["language"] == "en") & (df["target_task"] == df["intermediate"])]
    own = _pick_split(language_scores(inter, phases=("intermediate",)), "", ("validation", "test"))
    own = own[own["target_task"].map(lambda t: getattr(_task(t), "primary_metric", "") != "loss").astype(bool)]
    own = own.groupby(["model", "intermediate"], as_index=False)["score"].mean().rename(
        columns={"score": "en_dev_score"})
    ts = task_scores(df, benchmark, exclude_english, split)
    targets = list(targets) if targets else [t for t in BENCHMARK_TARGETS.get(benchmark, ()) if t in
                                              set(ts["target_task"])]
    ts = ts[ts["target_task"].isin(targets)]
    g = _with_gain(_seed_mean(ts, ["model", "kind", "intermediate", "target_task"]), ["model", "target_task"])
    out = g[g["kind"] == "single"].groupby(["model", "intermediate"], as_index=False).agg(
        zs_score=("score", "mean"), zs_gain=("gain", "mean"), n_targets=("target_task", "nunique"))
    keys = ["model", "intermediate"]
    if out.empty or own.empty:           # pandas cannot outer-merge an empty frame with arrow-string keys
        out = pd.concat([out, own], ignore_index=True)
    else:
        out = out.merge(own, on=keys, how="outer")
    for c in ("en_dev_score", "zs_score", "zs_gain", "n_targets"):
        out[c] = out[c].astype(float)
    out["own_error"] = 100.0 - out["en_dev_score"]
    out["chance_headroom"] = out["intermediate"].map(lambda t: chance_headroom(t, majority)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["normalized_error"] = 100.0 * out["own_error"] / out["chance_headroom"].where(out["chance_headroom"] > 0)
    cols = ["model", "intermediate", "en_dev_score", "own_error", "chance_headroom", "normalized_error",
            "zs_score", "zs_gain", "n_targets"]
    return out[cols].sort_values(["model", "own_error"]).reset_index(drop=True)


DIFFICULTY_MEASURES = ("own_error", "chance_headroom", "normalized_error")


def difficulty_long(table: pd.DataFrame, measures=DIFFICULTY_MEASURES) -> pd.DataFrame:
    """`difficulty_table` with one row per measure (columns ``measure`` and ``difficulty``), for effects/plots."""
    keep = [c for c in table.columns if c not in measures]
    return table.melt(id_vars=keep, value_vars=list(measures), var_name="measure", value_name="difficulty")


# ---------------------------------------------------------------- written readings
def _fmt(v: float) -> str:
    return f"{v:+.2f}"


def reading(effects: pd.DataFrame, x_label: str, y_label: str, label_cols=(), unit: str = "points",
            max_items: int = 12, per: str = "") -> str:
    """A short written interpretation of a `stats.effects` table, generated from its numbers (a summary, then
    one sentence per comparison, at most `max_items` of them)."""
    label_cols = [label_cols] if isinstance(label_cols, str) else list(label_cols)
    if effects.empty:
        return f"No comparisons could be formed for {y_label} versus {x_label}: the table has no matching rows."
    ok = effects[effects["note"] == ""]
    neg = int((ok["slope_hi"] < 0).sum())
    pos = int((ok["slope_lo"] > 0).sum())
    lines = []
    if ok.empty:
        lines.append(f"None of the {len(effects)} comparisons of {y_label} versus {x_label} has enough points for a "
                     f"correlation (at least {stats.MIN_POINTS} are needed), so no association is claimed.")
    else:
        lines.append(f"{len(ok)} of {len(effects)} comparisons of {y_label} versus {x_label} have enough points; in "
                     f"{neg + pos} of them the 95% interval of the slope excludes zero ({neg} negative, {pos} "
                     "positive).")
        if len(ok) > 1:
            lines.append(f"The intervals are not corrected for multiple comparisons: about {0.05 * len(ok):.1f} of "
                         f"{len(ok)} would exclude zero by chance alone.")
    per = per or (f"per tenfold increase in {x_label}" if effects["log_x"].all() else f"per unit of {x_label}")
    for i, (_, r) in enumerate(effects.iterrows()):
        if i == max_items:
            lines.append(f"- ... and {len(effects) - max_items} more comparisons (see the effects table).")
            break
        name = " / ".join(str(r[c]) for c in label_cols) or "all points"
        if r["note"]:
            lines.append(f"- {name}: {r['note']}; no correlation is reported.")
            continue
        s = (f"- {name} (n = {int(r['n'])}): {y_label} changes by {_fmt(r['slope'])} {unit} {per} "
             f"(95% CI {_fmt(r['slope_lo'])} to {_fmt(r['slope_hi'])}); Pearson r = {_fmt(r['pearson'])} "
             f"[{_fmt(r['pearson_lo'])}, {_fmt(r['pearson_hi'])}], Spearman rho = {_fmt(r['spearman'])} "
             f"[{_fmt(r['spearman_lo'])}, {_fmt(r['spearman_hi'])}].")
        if r["slope_hi"] < 0 or r["slope_lo"] > 0:
            s += (f" The interval excludes zero: the larger the {x_label}, the "
                  f"{'smaller' if r['slope_hi'] < 0 else 'larger'} the {y_label}.")
            if r["spearman_lo"] <= 0 <= r["spearman_hi"]:
                s += " The rank correlation's interval includes zero, so the pattern may rest on a few points."
        else:
            s += " The interval includes zero: no reliable association at this n."
        lines.append(s)
    return "\n".join(lines)


def reading_paper(gains: pd.DataFrame) -> str:
    """Which intermediate setup helps most per target and on average, from a `gain_table`."""
    if gains.empty:
        return "No gains to report: the table has no baseline row or no intermediate rows for the same model."
    lines = []
    targets = [c for c in gains.columns if c != "avg"]
    for model, sub in gains.groupby(level="model", sort=False):
        sub = sub.droplevel(["model", "kind"])
        mean_gain = sub[targets].mean(axis=1).dropna()
        if mean_gain.empty:   # every cell incomplete (missing languages)
            lines.append(f"{model}: no complete setup x target cell, so no gain is reported.")
            continue
        best = mean_gain.idxmax()
        lines.append(f"{model}: {len(sub)} intermediate setups over {len(targets)} targets; the largest mean gain is "
                     f"{best} ({_fmt(mean_gain[best])} points), the smallest {mean_gain.idxmin()} "
                     f"({_fmt(mean_gain.min())}); {int((sub[targets] > 0).to_numpy().sum())} of "
                     f"{int(sub[targets].notna().to_numpy().sum())} setup x target cells are above the baseline.")
        for t in targets:
            col = sub[t].dropna()
            if len(col):
                lines.append(f"  - {t}: best {col.idxmax()} ({_fmt(col.max())}), worst {col.idxmin()} "
                             f"({_fmt(col.min())})")
    return "\n".join(lines)
