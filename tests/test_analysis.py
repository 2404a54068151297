"""analysis.py on synthetic results tables with planted effects (tests/synthetic_results.py): XTREME scoring, the
paper's table and gains, the published side-by-side, and recovery of each research question's planted effect."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_results as sr  # noqa: E402

from xfer_utils.analysis import tables as analysis, plots, stats  # noqa: E402
from xfer_utils import results, tasks

SINGLE = ("mnli", "squad", "hellaswag", "qqp", "sst2", "cosmosqa", "commonsenseqa")


@pytest.fixture(scope="module")
def df():
    return sr.make_results(seed=0)


def rows(**kw):
    return results.to_frame([sr._row(**kw)])


# ---------------------------------------------------------------- scoring
def test_qa_language_score_is_mean_of_em_and_f1():
    d = pd.concat([
        *(results.to_frame(sr._metric_rows("xquad", v, run_id="r", model="m", intermediate="none",
                                           target_task="xquad", language=lg))
          for lg, v in (("de", 60.0), ("es", 70.0))),
        rows(run_id="r2", model="m", target_task="xnli", language="de", metric="accuracy", value=80.0, is_primary=True),
        rows(run_id="r2", model="m", target_task="xnli", language="de", metric="loss", value=0.3),
    ])
    ls = analysis.language_scores(d).set_index(["target_task", "language"])["score"]
    assert ls[("xquad", "de")] == pytest.approx(60.0) and ls[("xnli", "de")] == 80.0
    f1 = analysis.language_scores(d, qa="f1").set_index(["target_task", "language"])["score"]
    assert f1[("xquad", "de")] == pytest.approx(66.0)
    ts = analysis.task_scores(d).set_index("target_task")
    assert ts.loc["xquad", "score"] == pytest.approx(65.0) and ts.loc["xquad", "n_languages"] == 2
    assert ts.loc["xquad", "n_expected"] == len(tasks.languages("xquad"))


def test_qa_language_without_exact_match_has_no_score():
    """The table scores a language with metrics.task_score, the one task-score rule: a QA language whose rows lack
    EM gets no (EM + F1) / 2 score (evaluate.py averages both), rather than its F1 passed off as the average."""
    d = pd.concat([rows(run_id="r", model="m", target_task="xquad", language="de", metric="f1", value=70.0,
                        is_primary=True),
                   rows(run_id="r", model="m", target_task="xquad", language="es", metric="f1", value=70.0,
                        is_primary=True),
                   rows(run_id="r", model="m", target_task="xquad", language="es", metric="exact_match", value=50.0)])
    ls = analysis.language_scores(d).set_index("language")["score"]
    assert list(ls.index) == ["es"] and ls["es"] == pytest.approx(60.0)


def test_split_preference_and_language_filters():
    d = pd.concat([rows(run_id="a", model="m", target_task="xnli", language=lg, split=sp, metric="accuracy",
                        value=v, is_primary=True)
                   for lg, sp, v in (("de", "validation", 10.0), ("de", "test", 50.0), ("en", "test", 90.0),
                                     ("pl", "test", 0.0))])
    ts = analysis.task_scores(d, "xtreme")                      # test preferred; pl is not an XNLI language
    assert ts["score"].tolist() == [70.0] and ts["split"].tolist() == ["test"]
    assert analysis.task_scores(d, "xtreme", exclude_english=True)["score"].tolist() == [50.0]
    assert analysis.task_scores(d, "xtreme", split="validation")["score"].tolist() == [10.0]


def test_kinds_and_row_order(df):
    table = analysis.paper_table(df, "xtreme")
    assert list(table.columns) == list(tasks.XTREME_TARGETS) + ["avg"]
    sub = table.xs("xlmr-large", level="model")
    kinds = list(sub.index.get_level_values("kind"))
    assert kinds == sorted(kinds, key=analysis.KINDS.index) and kinds[0] == "baseline"
    inter = list(sub.index.get_level_values("intermediate"))
    assert inter[:2] == ["none", "mnli"] and inter[-3:] == ["mnli+squad", "mnli+mlm", "mnli@tr"]
    assert table["avg"].to_numpy() == pytest.approx(table[list(tasks.XTREME_TARGETS)].mean(axis=1).to_numpy())
    assert table.attrs["missing_targets"] == [] and set(table.attrs["splits"].values()) == {"test"}


def test_gain_table_recovers_the_planted_gain(df):
    gains = analysis.gain_table(analysis.paper_table(df, "xtreme", model="xlmr-large"))
    assert "baseline" not in gains.index.get_level_values("kind")
    cc = analysis.cc100().set_index("iso639_1")["cc100_tokens_m"]
    lp = np.log10(560e6)
    for t in ("xnli", "panx"):
        langs = tasks.languages(t)
        data = np.mean([np.log10(cc[lg]) - 3 if lg in cc and cc[lg] == cc[lg] else 0.0 for lg in langs])
        for inter in ("mnli", "hellaswag"):
            expected = 15.0 - 1.5 * lp + data + 0.1 * (sr.ERRORS[inter] - 25)
            assert gains.loc[("xlmr-large", "single", inter), t] == pytest.approx(expected, abs=0.3)


def test_paper_table_incomplete_rows_have_no_average(df):
    d = df[~((df["intermediate"] == "mnli") & (df["target_task"] == "xnli"))]
    table = analysis.paper_table(d, "xtreme", model="mbert" if "mbert" in set(d["model"]) else "xlmr-base")
    row = table.xs("mnli", level="intermediate").iloc[0]
    assert np.isnan(row["xnli"]) and np.isnan(row["avg"])
    with pytest.raises(ValueError, match="valid benchmarks"):
        analysis.paper_table(df, "xtremer")
    with pytest.raises(ValueError, match="not in the results table; models: "):
        analysis.paper_table(df, model="xlmr-larg")


def test_published_comparison_uses_the_same_basis(df):
    table = analysis.paper_table(df, "xtreme", model="xlmr-large")
    comp = analysis.published_comparison(table)
    stilts = comp.loc["X-STILTs (Phang et al. 2020) [rembert_t16]"]
    assert stilts["xnli"] == 80.0 and stilts["xquad"] == pytest.approx((63.3 + 78.7) / 2)
    assert stilts["avg_non_retrieval"] == pytest.approx(72.7, abs=0.05)          # RemBERT's Avg_task
    xlmr = comp.loc["XLM-R large (Conneau et al. 2020) [rembert_t16]"]
    assert xlmr["avg_non_retrieval"] == pytest.approx(70.1, abs=0.05)
    assert np.isnan(comp.loc["X-STILTs (Phang et al. 2020) [mt5_readme]", "xquad"])   # F1 only there
    f1 = analysis.published_comparison(analysis.paper_table(df, "xtreme", model="xlmr-large", qa="f1"), qa="f1")
    assert f1.loc["X-STILTs (Phang et al. 2020) [mt5_readme]", "xquad"] == 77.2
    ours = comp.loc["ours: xlmr-large, best intermediate per task"]
    assert ours["xnli"] == table["xnli"].drop(index="baseline", level="kind").max()
    assert "not comparable" in comp.attrs["note"]
    for e in analysis.published()["entries"]:
        assert e["source"] in analysis.published()["sources"]


# ---------------------------------------------------------------- RQ-size
def test_rq_size_recovers_the_planted_slope(df):
    gains = analysis.gains_by_model(df)
    assert set(gains["target"]) == {"stsb_multi_mt", "xnli", "xcopa", analysis.XTREME_R_CLASSIFICATION}
    assert gains["params_total"].notna().all() and gains["model"].nunique() == len(sr.MODELS)
    eff = stats.effects(gains[gains["intermediate"].isin(SINGLE)], "params_total", "gain",
                        by=["intermediate", "target"], n_boot=1000)
    assert (eff["n"] == len(sr.MODELS)).all() and (eff["note"] == "").all()
    assert (eff["slope_hi"] < 0).all() and (eff["pearson_hi"] < 0).all()
    covered = ((eff["slope_lo"] <= -1.5) & (-1.5 <= eff["slope_hi"])).mean()
    assert covered >= 0.85, eff[["intermediate", "target", "slope", "slope_lo", "slope_hi"]]
    text = analysis.reading(eff, "parameters", "gain", label_cols=["intermediate", "target"], max_items=3)
    assert f"{len(eff)} of {len(eff)} comparisons" in text and "the smaller the gain" in text
    assert "more comparisons" in text


def test_rq_size_null_shows_no_effect():
    d = sr.make_results(intermediates=("none", "mnli", "hellaswag"), targets=("xnli", "xcopa"), size_slope=0.0)
    eff = stats.effects(analysis.gains_by_model(d, targets=("xnli", "xcopa")), "params_total", "gain",
                        by=["intermediate", "target"], n_boot=1000)
    assert ((eff["slope_lo"] <= 0) & (0 <= eff["slope_hi"])).mean() >= 0.8, eff


def test_rq_size_shuffled_shows_no_effect(df):
    gains = analysis.gains_by_model(df)
    shuffled = sr.shuffle_within(gains, "gain", ["intermediate", "target"], seed=1)
    eff = stats.effects(shuffled, "params_total", "gain", by=["intermediate", "target"], n_boot=1000)
    planted = stats.effects(gains, "params_total", "gain", by=["intermediate", "target"], n_boot=1000)
    assert ((eff["slope_lo"] <= 0) & (0 <= eff["slope_hi"])).mean() >= 0.85
    assert ((planted["slope_lo"] <= 0) & (0 <= planted["slope_hi"])).mean() == 0


def test_rq_size_too_few_models():
    d = sr.make_results(models=("xlmr-base", "xlmr-large"), intermediates=("none", "mnli"), targets=("xnli",))
    gains = analysis.gains_by_model(d, targets=("xnli",))
    eff = stats.effects(gains, "params_total", "gain", by=["intermediate", "target"])
    assert eff["note"].str.contains("too few points").all() and eff["pearson"].isna().all()
    text = analysis.reading(eff, "parameters", "gain", label_cols=["intermediate", "target"])
    assert "too few points" in text and "no association is claimed" in text and "r =" not in text


def test_unknown_models_get_no_params():
    d = sr.make_results(models=("xlmr-base",), intermediates=("none", "mnli"), targets=("xnli",))
    d["model"] = "my-own-model"
    gains = analysis.gains_by_model(d, targets=("xnli",))
    assert gains["params_total"].isna().all() and (gains["ladder_name"] == "").all()
    custom = pd.DataFrame({"model": ["my-own-model"], "params_total": [1e9]})
    assert analysis.gains_by_model(d, targets=("xnli",), params=custom)["params_total"].tolist() == [1e9]


# ---------------------------------------------------------------- RQ-data
def test_rq_data_recovers_the_planted_slope(df):
    gains = analysis.gains_by_language(df, targets=["panx", "udpos", "tatoeba"], model="xlmr-large")
    assert "en" not in set(gains["language"]) and set(gains["model"]) == {"xlmr-large"}
    assert not gains.loc[gains["language"] == "yo", "in_cc100"].any()
    eff = stats.effects(gains, "cc100_tokens_m", "gain", by=["intermediate", "target"], n_boot=1000)
    assert (eff["slope_lo"] > 0).all()
    assert ((eff["slope_lo"] <= 1.0) & (1.0 <= eff["slope_hi"])).mean() >= 0.85
    assert (eff["n"] >= 30).all()         # languages with a CC-100 volume


def test_rq_data_shuffled_shows_no_effect(df):
    gains = analysis.gains_by_language(df, targets=["panx", "udpos"], model="xlmr-base")
    shuffled = sr.shuffle_within(gains, "gain", ["intermediate", "target"], seed=2)
    eff = stats.effects(shuffled, "cc100_tokens_m", "gain", by=["intermediate", "target"], n_boot=1000)
    assert ((eff["slope_lo"] <= 0) & (0 <= eff["slope_hi"])).mean() >= 0.85, eff


def test_rq_data_null_shows_no_effect():
    d = sr.make_results(models=("xlmr-large",), intermediates=("none", "mnli", "squad"), targets=("panx",),
                        data_slope=0.0, seed=5)
    eff = stats.effects(analysis.gains_by_language(d), "cc100_tokens_m", "gain", by=["intermediate", "target"],
                        n_boot=1000)
    assert ((eff["slope_lo"] <= 0) & (0 <= eff["slope_hi"])).all(), eff


# ---------------------------------------------------------------- RQ-difficulty
def test_difficulty_measures():
    assert analysis.chance_headroom("mnli") == pytest.approx(200 / 3)
    assert analysis.chance_headroom("squad") == 100.0 and analysis.chance_headroom("stsb") == 100.0
    assert np.isnan(analysis.chance_headroom("ccg")) and np.isnan(analysis.chance_headroom("not-a-task"))
    assert analysis.chance_score("qqp", majority={"qqp": 0.63}) == pytest.approx(63.0)


def test_rq_difficulty_recovers_the_planted_slope(df):
    table = analysis.difficulty_table(df)
    assert set(table["intermediate"]) == set(SINGLE)           # multi-task / MLM / translated left out
    assert (table["n_targets"] == len(tasks.XTREME_R_TASKS)).all()
    row = table[(table["model"] == "xlmr-large") & (table["intermediate"] == "squad")].iloc[0]
    assert row["own_error"] == pytest.approx(sr.ERRORS["squad"] - 2.0 * (np.log10(560e6) - 8), abs=1.5)
    assert row["normalized_error"] == pytest.approx(row["own_error"])          # squad headroom = 100
    long = analysis.difficulty_long(table)
    assert set(long["measure"]) == set(analysis.DIFFICULTY_MEASURES)
    eff = stats.effects(long[long["measure"] == "own_error"], "difficulty", "zs_gain", by="model", log_x=False,
                        n_boot=1000)
    assert (eff["slope_lo"] <= 0.1).all() and (0.1 <= eff["slope_hi"]).all() and (eff["slope_lo"] > 0).all()
    text = analysis.reading(eff, "difficulty", "zero-shot gain", label_cols="model", per="per point of difficulty")
    assert "per point of difficulty" in text and "the larger the zero-shot gain" in text


def test_rq_difficulty_shuffled_shows_no_effect(df):
    table = sr.shuffle_within(analysis.difficulty_table(df), "zs_gain", "model", seed=4)
    eff = stats.effects(table, "own_error", "zs_gain", by="model", log_x=False, n_boot=1000)
    assert ((eff["slope_lo"] <= 0) & (0 <= eff["slope_hi"])).mean() >= 0.85, eff


def test_rq_difficulty_null_shows_no_effect():
    d = sr.make_results(models=("xlmr-base", "xlmr-large"), targets=("xnli", "xcopa", "panx"),
                        difficulty_slope=0.0, seed=11)
    table = analysis.difficulty_table(d)
    eff = stats.effects(table, "own_error", "zs_gain", by="model", log_x=False, n_boot=1000)
    assert ((eff["slope_lo"] <= 0) & (0 <= eff["slope_hi"])).all(), eff


# ---------------------------------------------------------------- resources, text, figures
def test_cc100_resource_is_consistent_with_the_registry():
    cc = analysis.cc100()
    assert cc["iso639_1"].is_unique and len(cc) == 50
    for task in tasks.PUBLIC:
        if tasks.get(task).family == "target":
            # a cross-lingual pair (stsb_cross 'en-de') needs both of its languages in the table
            langs = {part for lg in tasks.all_languages(task) for part in lg.split("-")}
            assert langs <= set(cc["iso639_1"]), task
    for _, r in cc.iterrows():
        assert r["tatoeba_code"] == tasks.TATOEBA_CODES.get(r["iso639_1"], "") or (
            pd.isna(r["tatoeba_code"]) and r["iso639_1"] not in tasks.TATOEBA_CODES)
        assert r["in_cc100"] == pd.notna(r["cc100_tokens_m"]) == pd.notna(r["cc100_gib"])
    assert set(cc.loc[~cc["in_cc100"], "iso639_1"]) == {"yo", "qu", "wo", "ht"}
    assert cc.set_index("iso639_1").loc["en", "cc100_tokens_m"] == 55608


def test_reading_is_generated_from_the_numbers():
    eff = pd.DataFrame([dict(g="a", n=9, pearson=0.1, pearson_lo=-0.5, pearson_hi=0.6, spearman=0.05,
                             spearman_lo=-0.6, spearman_hi=0.7, slope=0.37, slope_lo=-0.9, slope_hi=1.4, log_x=True,
                             note="")])
    text = analysis.reading(eff, "tokens", "gain", label_cols="g")
    assert "+0.37" in text and "-0.90 to +1.40" in text and "includes zero" in text and "n = 9" in text
    assert "no matching rows" in analysis.reading(eff.iloc[0:0], "tokens", "gain")
    assert "No gains" in analysis.reading_paper(pd.DataFrame())


def test_figures_are_written(df, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    table = analysis.paper_table(df, "xtreme", model="xlmr-base")
    paths = [plots.plot_heatmap(table, tmp_path, "scores.png", title="t"),
             plots.plot_heatmap(analysis.gain_table(table), tmp_path, "gains.png", center=0.0),
             plots.plot_scatter(analysis.gains_by_model(df), "params_total", "gain", tmp_path, "size.png",
                                   hue="intermediate", col="target"),
             plots.plot_scatter(pd.DataFrame({"x": [], "y": []}), "x", "y", tmp_path, "empty.png"),
             plots.save_table(table, tmp_path / "t", "table.csv")]
    plt.close("all")
    for p in paths:
        assert p.exists() and p.stat().st_size > 0, p


@pytest.mark.parametrize("case", ["empty", "no_baseline", "only_baseline", "only_intermediate_phase"])
def test_partial_tables_do_not_break_the_notebook_calls(case, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    full = sr.make_results(models=("xlmr-base", "xlmr-large"), intermediates=("none", "mnli", "squad"),
                           targets=("xnli", "xquad", "xcopa"), languages_per_task=3)
    d = {"empty": full.iloc[0:0], "no_baseline": full[full["intermediate"] != "none"],
         "only_baseline": full[full["intermediate"] == "none"],
         "only_intermediate_phase": full[full["phase"] == "intermediate"]}[case]
    table = analysis.paper_table(d)
    gains = analysis.gain_table(table)
    assert gains.empty
    analysis.published_comparison(table)
    assert analysis.reading_paper(gains).startswith("No gains")
    cases = [(analysis.gains_by_model(d), "params_total", "gain", ["intermediate", "target"], True),
             (analysis.gains_by_language(d), "cc100_tokens_m", "gain", ["model", "target"], True),
             (analysis.difficulty_long(analysis.difficulty_table(d)), "difficulty", "zs_gain", ["measure", "model"],
              False)]
    for frame, x, y, by, log_x in cases:
        eff = stats.effects(frame, x, y, by=by, log_x=log_x)
        assert isinstance(analysis.reading(eff, x, y, label_cols=by), str)
        assert plots.plot_scatter(frame, x, y, tmp_path, f"{x}.png", hue=by[0], col=by[-1], log_x=log_x).exists()
    assert plots.plot_heatmap(gains, tmp_path, "g.png", center=0.0).exists()
    plt.close("all")
