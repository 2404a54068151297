"""Gains with paired bootstrap intervals (xfer_utils/analysis/gains.py): a hand-computed resample, the official scorers on
explicit resamples, coverage on simulated studies, seeds, real tiny runs end to end and `xfer gains`."""
import json

import numpy as np
import pytest

from xfer_utils import cli, metrics
from xfer_utils.analysis import gains, stats
from xfer_utils.runner import plans
from xfer_utils.phases import runs

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def test_paired_bootstrap_equals_hand_computed_resamples():
    """Four fixed resamples of four XNLI items: each resample's gain is computed by hand below."""
    gold = ["entailment", "neutral", "contradiction", "neutral"]
    base = ["entailment", "entailment", "contradiction", "entailment"]     # right: 1 0 1 0
    inter = ["entailment", "neutral", "contradiction", "entailment"]       # right: 1 1 1 0
    u = gains.units("xnli", "de", gold, [base, inter])
    idx = np.array([[0, 1, 2, 3], [1, 1, 1, 1], [0, 0, 3, 3], [3, 2, 1, 0]])
    g = gains.paired_bootstrap(u, [0], [1], idx=idx)
    # resample 1 and 4 are the sample (50 vs 75); resample 2 = item 1 four times (0 vs 100); resample 3 = items
    # 0, 0, 3, 3 (50 vs 50)
    assert g.gain == 25.0 and list(g.reps) == [25.0, 100.0, 0.0, 25.0]
    # percentile interval, linear interpolation on the sorted gains 0, 25, 25, 100: 0 + 0.075 * 25, 25 + 0.925 * 75
    assert (g.lo, g.hi) == pytest.approx((1.875, 94.375))
    assert list(g.base) == [metrics.accuracy(base, gold)] and list(g.inter) == [metrics.accuracy(inter, gold)]


def _random_tags(rng, n_sent):
    gold, pred = [], []
    for _ in range(n_sent):
        k = int(rng.integers(1, 9))
        g = [TAGS[i] for i in rng.integers(0, len(TAGS), k)]
        pred.append([t if rng.random() < 0.7 else TAGS[int(rng.integers(0, len(TAGS)))] for t in g])
        gold.append(g)
    return gold, pred


@pytest.mark.parametrize("task", ["panx", "udpos"])
def test_tagging_resamples_equal_the_official_chunk_f1(task):
    """F1 from summed sentence counts = seqeval-style chunk F1 (metrics.tagging_scores) on the resampled sentences
    (UD-POS with the seqeval 0.0.12 chunk types XTREME's published numbers used)."""
    rng = np.random.default_rng(3)
    gold, pred = _random_tags(rng, 30)
    if task == "udpos":
        pos = ["NOUN", "VERB", "ADJ", "SCONJ", "CCONJ", "PUNCT"]
        gold = [[pos[len(t) % 6] for t in s] for s in gold]
        pred = [[pos[(len(t) + (i % 3 == 0)) % 6] for i, t in enumerate(s)] for s in pred]
    u = gains.units(task, "de", gold, [pred])
    idx = gains.resample_indices(u.n, 5, rng)
    got = gains.metric_rows(u, idx)[0]
    scheme = "pos0012" if task == "udpos" else "lenient"
    want = [metrics.tagging_scores([gold[i] for i in row], [pred[i] for i in row], scheme)["f1"] for row in idx]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert gains.full_scores(u)[0] == pytest.approx(metrics.tagging_scores(gold, pred, scheme)["f1"])


@pytest.mark.parametrize("task", ["xquad", "mlqa"])
def test_qa_resamples_equal_the_official_em_f1(task):
    """(EM + F1) / 2 of a resample = the SQuAD v1.1 / MLQA scorer on the resampled questions (duplicates renamed,
    since a resample can hold a question twice); unanswered questions score 0 as in the official scripts."""
    gold = {"q1": ["Denver Broncos"], "q2": ["1912", "in 1912"], "q3": ["Paris"], "q4": ["the red fox"],
            "q5": ["Berlin"]}
    pred = {"q1": "the Denver Broncos", "q2": "1912 or 1913", "q4": "red", "q5": "Berlin!"}
    u = gains.units(task, "de", gold, [pred])
    rng = np.random.default_rng(0)
    idx = gains.resample_indices(u.n, 6, rng)
    keys = u.keys
    scorer = (lambda g, p: metrics.mlqa_scores(g, p, "de")) if task == "mlqa" else metrics.squad_scores
    want = []
    for row in idx:
        g = {f"{keys[i]}#{j}": gold[keys[i]] for j, i in enumerate(row)}
        p = {f"{keys[i]}#{j}": pred[keys[i]] for j, i in enumerate(row) if keys[i] in pred}
        s = scorer(g, p)
        want.append((s["exact_match"] + s["f1"]) / 2)
    np.testing.assert_allclose(gains.metric_rows(u, idx)[0], want, atol=1e-9)


def test_bucc_resamples_source_sentences_and_equal_the_official_f1():
    """BUCC F1 over pair sets (metrics.bucc_scores) on resampled source sentences, false positives included."""
    gold = [("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-3"), ("de-4", "en-4")]
    pred = [("de-1", "en-1"), ("de-2", "en-9"), ("de-5", "en-5"), ("de-3", "en-3")]
    u = gains.units("bucc2018", "de", gold, [pred])
    assert u.keys == ["de-1", "de-2", "de-3", "de-4", "de-5"]
    idx = gains.resample_indices(u.n, 8, np.random.default_rng(1))
    want = []
    for row in idx:
        ren = {}
        for j, i in enumerate(row):
            ren.setdefault(u.keys[i], []).append(j)
        g = [(f"{s}#{j}", t) for s, t in gold for j in ren.get(s, [])]
        p = [(f"{s}#{j}", t) for s, t in pred for j in ren.get(s, [])]
        want.append(metrics.bucc_scores(p, g)["f1"] if g else 0.0)
    np.testing.assert_allclose(gains.metric_rows(u, idx)[0], want, atol=1e-9)
    assert gains.full_scores(u)[0] == pytest.approx(metrics.bucc_scores(pred, gold)["f1"])


def test_sts_resamples_equal_the_official_correlation():
    rng = np.random.default_rng(2)
    gold = rng.uniform(0, 5, 40).round(1)
    pred = gold + rng.normal(0, 1.5, 40)
    u = gains.units("stsb_multi_mt", "de", [str(g) for g in gold], [[str(p) for p in pred]])
    idx = gains.resample_indices(u.n, 4, rng)
    want = [metrics.correlation_scores(pred[row], gold[row])["spearman"] for row in idx]   # primary: Spearman
    np.testing.assert_allclose(gains.metric_rows(u, idx)[0], want, atol=1e-9)


def test_identical_runs_give_an_interval_containing_zero():
    rng = np.random.default_rng(4)
    gold = [str(x) for x in rng.integers(0, 2, 300)]
    pred = [g if rng.random() < 0.7 else str(1 - int(g)) for g in gold]
    g = gains.paired_bootstrap(gains.units("pawsx", "de", gold, [pred, list(pred)]), [0], [1], n_boot=500)
    assert g.gain == 0 and g.lo <= 0 <= g.hi


def _simulated_study(rng, n, p_base, p_inter, shared=0.7):
    """Paired correctness of two systems on n items: the intermediate run copies the baseline's item difficulty
    with probability `shared` (correlated errors, as two fine-tunings of one encoder have)."""
    u = rng.random(n)
    v = np.where(rng.random(n) < shared, u, rng.random(n))
    return (u < p_base).astype(float) * 100, (v < p_inter).astype(float) * 100


@pytest.mark.parametrize("true_gain", [0.0, 5.0])
def test_coverage_of_the_95_interval_on_simulated_studies(true_gain):
    """200 simulated studies of 400 items with a known true gain: the paired 95% interval covers it in about 95%
    of them (measured: 0.955 at gain 0, 0.945 at gain 5 with seed 11; asserted within a binomial band)."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(200):
        b, i = _simulated_study(rng, 400, 0.60, 0.60 + true_gain / 100)
        u = gains.Units("mean", list(range(400)), np.stack([b, i]))
        g = gains.paired_bootstrap(u, [0], [1], n_boot=400, seed=int(rng.integers(1 << 30)))
        hits += g.lo <= true_gain <= g.hi
    assert 0.90 <= hits / 200 <= 0.99, hits / 200


@pytest.mark.parametrize("k,band", [(1, (0.60, 0.92)), (3, (0.90, 1.0))])
def test_coverage_with_seed_variance(k, band):
    """Seeds shift each run's accuracy (sd 2 points): one seed per arm cannot see it, three seeds resampled at the
    second level restore the coverage (measured here over 100 studies: 0.73 and 0.97; over 200: 0.835 and 0.96)."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(100):
        u = rng.random(400)
        rows = [(np.where(rng.random(400) < 0.7, u, rng.random(400)) < p + rng.normal(0, 0.02)) * 100.0
                for p in (0.60, 0.65) for _ in range(k)]
        g = gains.paired_bootstrap(gains.Units("mean", list(range(400)), np.stack(rows)), list(range(k)),
                                   list(range(k, 2 * k)), n_boot=400, seed=int(rng.integers(1 << 30)))
        hits += g.lo <= 5.0 <= g.hi
    assert band[0] <= hits / 100 <= band[1], hits / 100


def test_seed_variation_widens_the_interval():
    """Two seeds per arm that disagree: the two-level bootstrap's interval is wider than one seed's alone."""
    rng = np.random.default_rng(5)
    b1, i1 = _simulated_study(rng, 500, 0.6, 0.65)
    b2 = np.roll(b1, 7)
    i2 = np.where(rng.random(500) < 0.15, 100 - i1, i1)
    u = gains.Units("mean", list(range(500)), np.stack([b1, b2, i1, i2]))
    one = gains.paired_bootstrap(u, [0], [2], n_boot=1000, seed=1)
    two = gains.paired_bootstrap(u, [0, 1], [2, 3], n_boot=1000, seed=1)
    assert two.gain == pytest.approx((i1.mean() + i2.mean()) / 2 - (b1.mean() + b2.mean()) / 2)
    assert (two.hi - two.lo) > (one.hi - one.lo)


def test_resamples_of_a_paper_sized_language_are_one_row_per_run():
    """One XNLI-sized language: 5,010 items x 11 runs (baseline + 10 setups), 1,000 resamples: one metric per run and
    resample, each the mean over a resample of the items (its speed is for a benchmark, not asserted here)."""
    rng = np.random.default_rng(0)
    u = gains.Units("mean", list(range(5010)), (rng.random((11, 5010)) < 0.7) * 100.0)
    idx = gains.resample_indices(u.n, 1000, rng)
    m = gains.metric_rows(u, idx)
    assert m.shape == (11, 1000)
    assert m[3, 7] == pytest.approx(u.values[3][idx[7]].mean())


def test_plans_expand_seed_lists(tmp_path):
    """`seed: [1, 2, 3]` in a grid gives one run per seed (replicates for the seed level)."""
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\nphases:\n  target:\n    notebook: notebooks/20_target.ipynb\n"
                    "    grid: {model: tiny-xlmr-s, intermediate: [none], target_task: xnli, seed: [1, 2, 3]}\n")
    runs_ = plans.expand(plan, tmp_path / "out").runs
    assert sorted(r.params["seed"] for r in runs_) == [1, 2, 3]


def test_noisy_points_widen_the_correlation_and_flag_noise():
    """Five points whose gains are pure noise around a line of slope 0: the points' own noise can produce the
    observed slope (noise p large); with tight points on a real slope it cannot."""
    import pandas as pd
    rng = np.random.default_rng(0)
    x = np.array([1e8, 3e8, 1e9, 3e9, 1e10, 3e10])
    for slope, sd, noisy in ((0.0, 3.0, True), (-2.0, 0.05, False)):
        truth = slope * np.log10(x)
        y = truth + rng.normal(0, sd, x.size)
        reps = y[:, None] + rng.normal(0, sd, (x.size, 500))
        frame = pd.DataFrame({"x": x, "gain": y, "g": "a"})
        eff = gains.effects_with_noise(frame, "x", "gain", reps, by="g", n_boot=500)
        r = eff.iloc[0]
        assert (r["slope_noise_p"] >= 0.05) == noisy
        plain = stats.slope_log10(x, y, n_boot=500)
        assert r["slope_hi_noisy"] - r["slope_lo_noisy"] >= 0.9 * (plain.hi - plain.lo)
        text = gains.reading_noise(eff, "g")
        assert ("could produce the observed correlation" in text) == noisy


# ---------------------------------------------------------------- real tiny runs, end to end

@pytest.fixture(scope="module")
def plan_outputs(world, tmp_path_factory):
    """A small plan's outputs from the real phase functions on the tiny world: an MNLI intermediate run, baseline
    and MNLI target runs on XNLI (two seeds), PAN-X and XQuAD, and Tatoeba and BUCC retrieval from both encoders."""
    root = tmp_path_factory.mktemp("gains_outputs")
    plan_dir = root / "smoke"
    model = str(world["tiny-xlmr-s"])
    data = str(world["data"])
    quiet = dict(log=lambda *a: None)
    hp = dict(lr=3e-3, batch_size=16, max_steps=4, eval_every=4, checkpoint_every=4, eval_examples=16,
              max_train_examples=64)
    inter_id = "tiny__mnli__s1"
    runs.intermediate(model, "mnli", run_id=inter_id, plan="smoke", run_dir=str(plan_dir / "intermediate" / inter_id),
                      checkpoint_dir=str(root / "ckpt" / inter_id), data_dir=data, **hp, **quiet)
    encoder = str(root / "ckpt" / inter_id / "encoder")
    todo = [("xnli", 1), ("xnli", 2), ("panx", 1), ("xquad", 1)]
    for task, seed in todo:
        for label, init in (("none", ""), ("mnli", encoder)):
            rid = f"tiny__{label}__{task}__s{seed}"
            runs.target(model, task, run_id=rid, plan="smoke", run_dir=str(plan_dir / "target" / rid),
                        checkpoint_dir=str(root / "ckpt" / rid), init_from=init, intermediate=label,
                        languages=["en", "de", "es"], seed=seed, data_dir=data, max_eval_examples=24,
                        model_label="tiny-xlmr-s", **hp, **quiet)
    for task in ("tatoeba", "bucc2018"):
        for label, init in (("none", ""), ("mnli", encoder)):
            rid = f"tiny__{label}__{task}"
            runs.retrieval(model, task, run_id=rid, plan="smoke", run_dir=str(plan_dir / "retrieval" / rid),
                           init_from=init, intermediate=label, languages=["de", "fr"] if task == "bucc2018" else
                           ["de", "es"], data_dir=data, max_examples=24, model_label="tiny-xlmr-s", **quiet)
    return root


def test_plan_outputs_give_a_gain_table_with_intervals(plan_outputs):
    res = gains.compute(plan_outputs / "smoke", n_boot=300)
    t = res.table
    assert not res.missing
    assert set(t["target"]) == {"xnli", "panx", "xquad", "tatoeba", "bucc2018"}
    per = t[t["language"] != gains.AVG]
    assert set(per["intermediate"]) == {"mnli"}
    # runs.target evaluates dev and test (protocol: the table on dev, the leaderboard on test); each split's
    # gain is paired from its own prediction folder. XQuAD has one split (the test), retrieval too.
    assert len(per[per["split"] == "test"]) == 3 * 3 + 2 + 2
    dev = per[per["split"] != "test"]
    assert sorted(dev["target"]) == ["panx"] * 3 + ["xnli"] * 3
    # rescoring every run from its files with the official metric reproduces the number the run recorded
    assert (t["rescore_diff"] < 1e-6).all()
    assert (t["gain_lo"] <= t["gain"] + 1e-9).all() and (t["gain"] <= t["gain_hi"] + 1e-9).all()
    assert np.allclose(t["gain"], t["score"] - t["score_base"])
    xnli = per[(per["target"] == "xnli") & (per["split"] == "test")]
    assert (xnli["n"] == 2).all() and (xnli["n_base"] == 2).all() and (xnli["method"] == "examples+seeds").all()
    assert xnli["sd"].notna().all()
    avg = t[(t["language"] == gains.AVG) & (t["split"] == "test")].set_index("target")
    assert avg.loc["xnli", "n_languages"] == 3
    assert avg.loc["xnli", "gain"] == pytest.approx(xnli["gain"].mean())
    seeds = gains.seed_table(t[t["split"] == "test"]).set_index("target")
    assert seeds.loc["xnli", "n"] == 2 and np.isfinite(seeds.loc["xnli", "sd"])      # sd of the 2 seeds' averages
    assert np.isnan(seeds.loc["panx", "sd"]) and seeds.loc["panx", "n"] == 1
    wide = gains.formatted(t)
    assert gains.AVG in wide.columns and wide.notna().any().all()
    assert "exclude 0" in gains.summary(res)
    reps = res.average("tiny-xlmr-s", "mnli", ["xnli", "panx"], exclude_english=True)
    assert reps.shape == (300,) and np.isfinite(reps).all()


def test_xfer_gains_command_prints_and_writes_csv(plan_outputs, capsys):
    csv = plan_outputs / "gains.csv"
    rc = cli.main(["gains", "params/plans/smoke.yaml", "--outputs", str(plan_outputs), "--target", "xnli",
                   "--csv", str(csv), "--n-boot", "200"])
    out = capsys.readouterr().out
    assert rc == 0 and "paired bootstrap" in out and "xnli" in out
    import pandas as pd
    t = pd.read_csv(csv)
    assert set(t["target"]) == {"xnli"} and {"gain", "gain_lo", "gain_hi", "excludes_zero"} <= set(t.columns)
    assert cli.main(["gains", "params/plans/smoke.yaml", "--outputs", str(plan_outputs), "--target", "nope"]) == 2
    assert "no runs of target(s) nope" in capsys.readouterr().err


def test_labels_written_beside_predictions(plan_outputs):
    """Gold labels in XTREME's label layout, so `xfer score` can score a run's predictions too."""
    from xfer_utils import scoring
    rd = plan_outputs / "smoke" / "target" / "tiny__mnli__xquad__s1"
    out = scoring.score_folder(rd / "predictions", rd / "labels")
    recorded = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    f1 = {r["language"]: r["value"] for r in recorded if r["metric"] == "f1"}
    assert {lg: s["f1"] for lg, s in out["tasks"]["xquad"]["languages"].items()} == pytest.approx(f1)


@pytest.mark.slow
def test_results_and_rq_notebooks_show_intervals_on_real_runs(plan_outputs):
    """40_results prints the gain table with intervals and writes a forest plot per target; 51-53 give each point
    an interval and draw the error-bar figures (one model, 3 languages: too few points for a correlation)."""
    import nbformat
    import papermill

    from xfer_utils import results
    plan_dir = plan_outputs / "smoke"
    results.collect(plan_dir, plan_dir / "results.csv")
    figures = plan_dir / "figures"
    texts = {}
    for name in ("40_results", "51_rq_size", "52_rq_data", "53_rq_difficulty"):
        out = plan_outputs / f"{name}.ipynb"
        papermill.execute_notebook(f"notebooks/{name}.ipynb", str(out), kernel_name="python3", progress_bar=False,
                                   parameters=dict(results_csv=str(plan_dir / "results.csv"),
                                                   figures_dir=str(figures), plan="gains-test"))
        nb = nbformat.read(out, as_version=4)
        texts[name] = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                              for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "paired bootstrap 95% intervals over test examples" in texts["40_results"]
    for target in ("xnli", "panx", "xquad", "tatoeba", "bucc2018"):
        assert (figures / f"40_forest_{target}.png").stat().st_size > 1000
    table = __import__("pandas").read_csv(figures / "40_gains_intervals.csv")
    assert table["gain_lo"].notna().all()
    assert (figures / "52_gain_vs_cc100_ci.png").stat().st_size > 1000
    for name in ("51_rq_size", "52_rq_data", "53_rq_difficulty"):     # one model, 3 languages, 1 task: few points
        assert "No comparison has at least 5 points with per-example predictions" in texts[name], name
    assert (figures / "51_gain_vs_size_ci.png").exists() and (figures / "53_gain_vs_difficulty_ci.png").exists()


def _random_files(task, lang, rng, root):
    """Random predictions and gold for one language of `task`, written with scoring.write_predictions/labels."""
    from xfer_utils import scoring, tasks
    t = tasks.get(task)
    n = 25
    if t.type == "span_qa":
        words = ["Berlin", "the city", "1912", "red fox", "Paris", "a river"]
        gold = {f"q{i}": [words[int(rng.integers(6))]] for i in range(n)}
        pred = {q: words[int(rng.integers(6))] for q in list(gold)[:-3]}          # 3 unanswered
    elif t.type == "tagging":
        gold, pred = _random_tags(rng, n)
        if task == "udpos":
            pos = list(t.label_names)
            gold = [[pos[len(x) % len(pos)] for x in s] for s in gold]
            pred = [[pos[(len(x) + (i % 2)) % len(pos)] for i, x in enumerate(s)] for s in pred]
    elif task == "bucc2018":
        gold = [(f"{lang}-{i}", f"en-{i}") for i in range(n)]
        pred = [(f"{lang}-{i}", f"en-{i if rng.random() < 0.6 else i + 1}") for i in range(0, n + 5)]
    elif task == "tatoeba":
        gold = list(range(n))
        pred = [i if rng.random() < 0.6 else int(rng.integers(n)) for i in range(n)]
    elif t.type == "regression":
        gold = list(rng.uniform(0, 5, n))
        pred = [g + rng.normal(0, 1) for g in gold]
    else:
        k = len(t.label_names) if t.label_names else 2
        gold = [int(x) for x in rng.integers(0, k, n)]
        pred = [g if rng.random() < 0.6 else int(rng.integers(k)) for g in gold]
    return (scoring.write_predictions(task, lang, pred, root / "predictions"),
            scoring.write_labels(task, lang, gold, root / "labels"))


@pytest.mark.parametrize("task,lang", [("xnli", "de"), ("pawsx", "de"), ("xcopa", "et"), ("stsb_multi_mt", "de"),
                                       ("udpos", "de"), ("panx", "de"), ("xquad", "de"), ("mlqa", "zh"),
                                       ("tydiqa", "fi"), ("tatoeba", "de"), ("bucc2018", "de")])
def test_files_of_every_target_rescore_like_xfer_score(task, lang, tmp_path):
    """Read back from XTREME-format files, the per-example units of every target type give the score the official
    scorer (`xfer score`'s score_files) gives the same files: the task score XTREME reports for that language."""
    from xfer_utils import scoring, tasks
    pf, lf = _random_files(task, lang, np.random.default_rng(7), tmp_path)
    gold = gains.read_gold(task, lf)
    pred = gains._pred_values(task, gains.read_predictions(task, pf, gold))
    u = gains.units(task, lang, gains._gold_values(task, gold), [pred])
    official = scoring.score_files(task, lang, pf, lf)
    want = (official["exact_match"] + official["f1"]) / 2 if tasks.get(task).type == "span_qa" else \
        official[tasks.get(task).primary_metric]
    assert gains.full_scores(u)[0] == pytest.approx(want, abs=1e-9)
