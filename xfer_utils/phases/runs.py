"""The three phases as functions the notebooks call (docs/architecture.md, A phase). Each validates its inputs
before any compute, trains/evaluates, saves what the next phase needs and writes rows of the one results schema to
`<run_dir>/metrics.jsonl`.

Intermediate setups are labels: `mnli` (single task), `mnli+squad` (multi-task, one head per task), `multitask`
(the paper's nine tasks together),
`mnli+mlm` (multilingual MLM co-training as one more sampled task), `mnli@de` (machine-translated data),
`none` (no intermediate training: the raw pretrained encoder).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .. import data, evaluation, features, files, ladder, models, results, tasks, train
from ..runner import validate
from .. import identity as ident

MLM = "mlm"


def alias(model: str) -> str:
    """Readable, filesystem-safe short name of a model: 'FacebookAI/xlm-roberta-large' -> 'xlm-roberta-large'."""
    return ladder.normalize(model) or "model"


def overrides(**kw) -> dict:
    """Notebook hyper-parameters whose value means 'protocol default' (0, -1, '') are left out, so the task's
    defaults from the registry apply.

    >>> overrides(lr=0.0, epochs=2.0, max_steps=-1, batch_size=0)
    {'epochs': 2.0}
    """
    return {k: v for k, v in kw.items() if not (v is None or v == "" or (isinstance(v, (int, float)) and
                                                                          not isinstance(v, bool) and v <= 0))}


def parse_intermediate(label: str) -> list[tuple[str, str]]:
    """'mnli+squad' -> [('mnli', 'en'), ('squad', 'en')]; 'mnli@de' -> [('mnli_mt', 'de')].

    >>> parse_intermediate("mnli+mlm")
    [('mnli', 'en'), ('mlm', 'en')]
    >>> parse_intermediate("mnli@de")
    [('mnli_mt', 'de')]
    >>> len(parse_intermediate("multitask"))
    9
    >>> parse_intermediate("mnli+nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'nope'; valid tasks: anli_plus, ccg, commonsenseqa, copa, cosmosqa, hellaswag, mlm, mnli, qqp, siqa, snli, squad, squad_v2, sst2, stsb, bucc2018, mlqa, panx, pawsx, stsb_cross, stsb_cross_cosine, stsb_multi_mt, tatoeba, tydiqa, udpos, xcopa, xnli, xquad
    """
    return tasks.parse_intermediate(label)   # the grammar lives in tasks.py (cost.py and validate.py use it too)


def _task_data(name: str, lang: str, tokenizer, data_dir, max_train: int, eval_examples: int, seed: int,
               max_length: int | None = None, dev_task: str | None = None) -> train.TaskData:
    t = tasks.get(name)
    ml = max_length or t.max_length
    names = data.label_names(name, data_dir) if t.type == "tagging" else None
    train_ds = data.load(name, "train", lang, data_dir=data_dir, max_examples=max_train if max_train > 0 else None,
                         seed=seed)
    feats = features.build(t.type, train_ds, tokenizer, ml, train=True)
    dev_name = dev_task or name
    dev = parts = None
    if tasks.get(dev_name).components:   # ANLI+: each component's own dev subset, scored separately (train.dev_score)
        parts = {c: data.load(c, "validation", "en", data_dir=data_dir, max_examples=eval_examples, seed=seed)
                 for c in tasks.get(dev_name).components}
    elif "validation" in tasks.splits(dev_name, "en"):
        dev = data.load(dev_name, "validation", "en", data_dir=data_dir, max_examples=eval_examples, seed=seed)
    return train.TaskData(name=dev_name, type=t.type, train=feats, max_length=ml, dev=dev, label_names=names,
                          dev_parts=parts)


def _heads(tds: list[train.TaskData], tokenizer) -> dict[str, tuple[str, int]]:
    out = {}
    for td in tds:
        if td.is_mlm:
            out[td.name] = ("mlm", 0)
        elif td.type in ("classification", "pair_classification"):
            out[td.name] = (td.type, len(tasks.get(td.name).label_names))
        elif td.type == "tagging":
            out[td.name] = (td.type, len(td.label_names))
        else:
            out[td.name] = (td.type, 0)
    return out


def _tokenizer(name: str):
    from transformers import AutoTokenizer
    validate.check_model_available(name)          # offline and unknown: fail now, not after a minute of hub retries
    return AutoTokenizer.from_pretrained(name)


def train_config(**kw) -> train.TrainConfig:
    fields = set(train.TrainConfig.__dataclass_fields__)
    unknown = set(kw) - fields
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; valid: {', '.join(sorted(fields))}")
    return train.TrainConfig(**kw)


def _lora(net, rank: int) -> None:
    """The planner's LoRA strategy: adapters on the attention projections (peft), the rest frozen."""
    if rank > 0:
        from . import launch
        launch.add_lora(net, rank)


def _save_encoder(net, tokenizer, out, lora_rank: int, digest: str = "", save=None, **info):
    """LoRA adapters are merged before saving, so transfer to the next phase stays encoder-only. The encoder
    records the identity digest of the run that trained it (what a run initialised from it builds on). `save`:
    how the encoder is written (models.save_encoder; under `accelerate launch`, launch's once-by-the-main-process
    saver)."""
    if lora_rank > 0:
        from . import launch
        launch.merge_lora(net)
    out = (save or models.save_encoder)(net, tokenizer, out)
    ident.record_encoder(out, digest, **info)
    return out


def _strategy_lr(hp: dict, train_kw: dict, strategy: str, lora_rank: int) -> str:
    """The memory strategy of a training phase ('' -> derived from lora_rank) and its learning rate in `hp`: an
    explicit `lr` wins, else the strategy's default (ladder.strategy_lr: LoRA's own, the task's for the rest)."""
    strategy = strategy or ("lora" if lora_rank > 0 else "full")
    if "lr" not in train_kw:
        hp["lr"] = ladder.strategy_lr(strategy, hp["lr"])
    return strategy


def _write_summary(run_dir: Path, name: str, obj) -> None:
    files.atomic_write_text(run_dir / name, json.dumps(obj, indent=1, default=str))


def intermediate(model: str, intermediate: str, *, run_id: str, plan: str, run_dir: str, checkpoint_dir: str,
                 seed: int = 1, data_dir: str = "", max_train_examples: int = -1, mlm_text: str = "",
                 mlm_languages: list[str] | None = None, max_length: int = 0, lora_rank: int = 0,
                 model_label: str = "", strategy: str = "", save_encoder=None, log=print, **train_kw) -> dict:
    """Phase 1: train `model` on the intermediate setup; save the encoder to `<checkpoint_dir>/encoder` (with
    `save_encoder`, default models.save_encoder); write the English dev score of each intermediate task as rows
    (their own difficulty measure)."""
    validate.check_run("intermediate", {"model": model, "intermediate": intermediate, "data_dir": data_dir,
                                        "mlm_text": mlm_text})
    parts = parse_intermediate(intermediate)
    run_dir, ckpt = Path(run_dir), Path(checkpoint_dir)
    tokenizer = _tokenizer(model)
    labelled = sorted({n for n, _ in parts if n != MLM}) or [MLM]
    hp = {**tasks.multitask_hyperparameters(labelled), **train_kw}   # order-independent (tasks.MULTITASK_RULE)
    strategy = _strategy_lr(hp, train_kw, strategy, lora_rank)
    eval_examples = int(hp.pop("eval_examples", 500))
    hp.pop("max_length")            # each task brings its own (tasks registry), or the max_length argument
    tds = [_mlm_data(mlm_text, mlm_languages, tokenizer, data_dir, max_train_examples) if name == MLM else
           _task_data(name, lang, tokenizer, data_dir, max_train_examples, eval_examples, seed, max_length or None,
                      "mnli" if name == "mnli_mt" else None)    # translated data: select on English MNLI dev
           for name, lang in parts]
    net, report = models.build(model, _heads(tds, tokenizer), seed=seed)
    log(str(report))
    _lora(net, lora_rank)
    cfg = train_config(seed=seed, eval_examples=eval_examples, **{k: v for k, v in hp.items()
                                                                  if k in train.TrainConfig.__dataclass_fields__})
    res = train.train(net, tokenizer, tds, cfg, ckpt, log=log,
                      identity={**ident.model_identity(model_label or model), "lora_rank": lora_rank,
                                "max_train_examples": max_train_examples, "strategy": strategy},
                      on_prepared=getattr(save_encoder, "on_prepared", None))
    encoder_dir = _save_encoder(net, tokenizer, ckpt / "encoder", lora_rank, res.identity, save=save_encoder,
                                intermediate=intermediate, model=model_label or model)
    rows = _dev_rows(tds, res, dict(run_id=run_id, plan=plan, phase="intermediate", model=model_label or model,
                                    intermediate=intermediate, language="en", split="validation", seed=seed,
                                    init_from=model, weights_digest=res.identity, strategy=strategy,
                                    lr=float(cfg.lr)))
    if rows:
        results.append_rows(run_dir / "metrics.jsonl", rows)
    else:   # MLM-only: no dev metric; an empty metrics file still marks the run as producing its artefact
        (run_dir / "metrics.jsonl").touch()
    summary = {"encoder": str(encoder_dir), "train": {k: v for k, v in asdict(res).items() if k != "history"},
               "history": res.history, "load_report": asdict(report), "config": asdict(cfg)}
    _write_summary(run_dir, "train_summary.json", summary)
    log(f"encoder saved to {encoder_dir}; rows written to {run_dir / 'metrics.jsonl'}")
    return summary


def _mlm_data(mlm_text: str, mlm_languages, tokenizer, data_dir: str, max_train_examples: int) -> train.TaskData:
    """The `+mlm` task of an intermediate run: one example per line of the MLM text (XNLI's languages by default)."""
    langs = mlm_languages or tasks.languages("xnli")
    text = data.mlm_text(mlm_text, langs, max_lines=max(1000, max_train_examples if max_train_examples > 0
                                                        else 100000), data_dir=data_dir)
    return train.TaskData(name=MLM, type="mlm", train=features.mlm_features(text, tokenizer, 128), max_length=128,
                          is_mlm=True)


def _dev_rows(tds: list, res, base: dict) -> list[dict]:
    """One row per English dev metric of each intermediate task (their own difficulty measure); ANLI+ also gets a
    row per component ('<component>:<metric>'), each counting its own examples."""
    rows = []
    for td in tds:
        for metric, value in (res.dev.get(td.name) or {}).items():
            if metric == "primary":
                continue
            comp = metric.split(":")[0] if ":" in metric else None
            n = len(td.dev_parts[comp]) if comp else sum(map(len, td.dev_parts.values())) if td.dev_parts else \
                len(td.dev) if td.dev is not None else 0
            rows.append(results.make_row(**base, target_task=td.name, metric=metric, value=float(value),
                                         is_primary=metric == tasks.get(td.name).primary_metric, n_examples=n))
    return rows


def target(model: str, target_task: str, *, run_id: str, plan: str, run_dir: str, checkpoint_dir: str,
           init_from: str = "", intermediate: str = results.NO_INTERMEDIATE, languages: list[str] | None = None,
           benchmark: str = "xtreme", seed: int = 1, data_dir: str = "", max_train_examples: int = -1,
           max_eval_examples: int = -1, eval_batch_size: int = 64, lora_rank: int = 0, model_label: str = "",
           strategy: str = "", eval_splits=tasks.EVAL_SPLITS, save_encoder=None, log=print, **train_kw) -> dict:
    """Phase 2 + 3: a fresh head on the encoder `init_from` (or the raw `model`), trained on the target's English
    training task, then zero-shot evaluation in every language, on each of `eval_splits` (dev and test) the
    language has. Predictions in XTREME's formats go to `<run_dir>/predictions/` (test) and
    `<run_dir>/predictions/<split>/` (the others). Rows record the memory `strategy` and its lr."""
    langs = _check_target(model, target_task, init_from, intermediate, languages, benchmark, eval_splits)
    train_name, train_lang = tasks.get(target_task).train_task
    run_dir, ckpt = Path(run_dir), Path(checkpoint_dir)
    encoder = init_from or model
    start = ident.model_identity(model_label or model, init_from)
    caps = {"lora_rank": lora_rank, "max_train_examples": max_train_examples}
    tokenizer = _tokenizer(encoder)
    hp = {**tasks.hyperparameters(target_task), **train_kw}
    strategy = _strategy_lr(hp, train_kw, strategy, lora_rank)
    eval_examples = int(hp.pop("eval_examples", 500))
    max_length = hp.pop("max_length")
    chain = []   # XTREME-R's XCOPA recipe: SIQA, then COPA, each a fresh head on the previous encoder
    if target_task == "xcopa" and train_kw.pop("siqa_first", True):
        chain = ["siqa"]
    td = _task_data(train_name, train_lang, tokenizer, data_dir, max_train_examples, eval_examples, seed,
                    max_length, dev_task=train_name)
    for pre in chain:
        encoder = _train_first(pre, encoder, tokenizer, hp, ckpt, start={**start, **caps, "strategy": strategy},
                               seed=seed, data_dir=data_dir, max_train_examples=max_train_examples,
                               eval_examples=eval_examples, max_length=max_length, lora_rank=lora_rank,
                               save_encoder=save_encoder, intermediate=intermediate, label=model_label or model,
                               log=log)
        start = ident.model_identity(model_label or model, encoder)
    heads = {target_task: _heads([td], tokenizer)[td.name]}
    td.name, td.score_as = target_task, train_name   # head named for the target, selected on its train task's dev
    net, report = models.build(encoder, heads, seed=seed)
    log(str(report))
    _lora(net, lora_rank)
    cfg = train_config(seed=seed, eval_examples=eval_examples,
                       **{k: v for k, v in hp.items() if k in train.TrainConfig.__dataclass_fields__})
    res = train.train(net, tokenizer, [td], cfg, ckpt, log=log, identity={**start, **caps, "strategy": strategy})
    base = dict(run_id=run_id, plan=plan, phase="target", model=model_label or model, intermediate=intermediate,
                seed=seed, init_from=init_from, weights_digest=res.identity,
                strategy=strategy, lr=float(cfg.lr))
    rows = evaluation.zero_shot(net, target_task, target_task, tokenizer, langs, run=base, data_dir=data_dir or None,
                                splits=eval_splits, max_examples=max_eval_examples if max_eval_examples > 0 else None,
                                batch_size=eval_batch_size, predictions_dir=run_dir / "predictions",
                                metrics_path=run_dir / "metrics.jsonl", label_names=td.label_names)
    summary = {"train": {k: v for k, v in asdict(res).items() if k != "history"}, "history": res.history,
               "load_report": asdict(report), "config": asdict(cfg), "languages": langs,
               "averages": {sp: evaluation.mean_primary([r for r in rows if r["split"] == sp])
                            for sp in dict.fromkeys(r["split"] for r in rows)}}
    summary["average"] = summary["averages"].get("test", next(iter(summary["averages"].values()), float("nan")))
    _write_summary(run_dir, "train_summary.json", summary)
    log(f"{target_task}: mean primary over {len(langs)} languages: "
        + ", ".join(f"{sp} {v:.2f}" for sp, v in summary["averages"].items()) + "; "
        f"rows in {run_dir / 'metrics.jsonl'}, predictions in {run_dir / 'predictions'}")
    return summary


def _check_target(model: str, target_task: str, init_from: str, intermediate: str, languages, benchmark: str,
                  eval_splits) -> list[str]:
    """Everything a target run is given, checked before any compute; returns the languages to evaluate."""
    validate.check_run("target", {"model": model, "target_task": target_task, "intermediate": intermediate,
                                  "languages": languages, "benchmark": benchmark})
    if init_from:
        validate.check_model(init_from, "init_from")
    t = tasks.get(target_task)
    if t.family != "target" or t.train_task is None:
        trainable = [n for n in tasks.PUBLIC if tasks.get(n).family == "target" and tasks.get(n).train_task]
        raise ValueError(f"{target_task!r} is not a trainable target task; choose one of: {', '.join(trainable)}")
    langs = languages or tasks.languages(target_task, benchmark)
    for lg in langs:
        tasks.check_language(target_task, lg)
        tasks.eval_splits(target_task, lg, eval_splits)   # an unknown split name fails here, before any compute
    ident.check_init(init_from, intermediate, results.NO_INTERMEDIATE)   # a baseline never loads a trained encoder
    return langs


def _train_first(pre: str, encoder: str, tokenizer, hp: dict, ckpt: Path, *, start: dict, seed: int, data_dir,
                 max_train_examples: int, eval_examples: int, max_length, lora_rank: int, save_encoder,
                 intermediate: str, label: str, log) -> str:
    """One step of a target's training chain (XTREME-R's XCOPA: SIQA first): a fresh head on `encoder` trained on
    `pre`; returns the folder of the encoder it saved (under `<ckpt>/<pre>/encoder`)."""
    ptd = _task_data(pre, "en", tokenizer, data_dir, max_train_examples, eval_examples, seed, max_length)
    pnet, prep = models.build(encoder, _heads([ptd], tokenizer), seed=seed)
    log(f"[{pre} first] {prep}")
    _lora(pnet, lora_rank)
    pcfg = train_config(seed=seed, eval_examples=eval_examples,
                        **{k: v for k, v in hp.items() if k in train.TrainConfig.__dataclass_fields__})
    pres = train.train(pnet, tokenizer, [ptd], pcfg, ckpt / pre, log=log, identity=start,
                       on_prepared=getattr(save_encoder, "on_prepared", None))
    return str(_save_encoder(pnet, tokenizer, ckpt / pre / "encoder", lora_rank, pres.identity, save=save_encoder,
                             intermediate=f"{intermediate} then {pre}", model=label))


def retrieval(model: str, task: str, *, run_id: str, plan: str, run_dir: str, checkpoint_dir: str = "",
              init_from: str = "", intermediate: str = results.NO_INTERMEDIATE, languages: list[str] | None = None,
              benchmark: str = "xtreme", layer: int = -1, data_dir: str = "", bucc_path: str = "",
              max_examples: int = -1, batch_size: int = 64, seed: int = 1, model_label: str = "",
              bucc_proxy: bool = False, log=print) -> dict:
    """BUCC / Tatoeba straight from an encoder (no target training): embeddings of one layer, mean-pooled.
    Also the embedding tasks (tasks.EMBEDDING_TASKS: unsupervised cross-lingual STS, the cosine of the two
    sentences). BUCC reads the original corpora (`bucc_path`, the data_dir mirror's user/bucc2018, or XFER_BUCC_PATH);
    `bucc_proxy=True` opts in to the hub's gold-pairs-only proxy, whose rows get the split 'proxy-test'."""
    from .. import embeddings as E
    from .. import retrieval as R
    validate.check_run("retrieval", {"model": model, "task": task, "intermediate": intermediate, "languages": languages,
                                     "benchmark": benchmark, "bucc_path": bucc_path, "data_dir": data_dir,
                                     "bucc_proxy": bucc_proxy})
    if init_from:
        validate.check_model(init_from, "init_from")
    if task not in tasks.RETRIEVAL_TASKS + tasks.EMBEDDING_TASKS:
        raise ValueError(f"{task!r} is not a retrieval task; choose one of: "
                         f"{', '.join(tasks.RETRIEVAL_TASKS + tasks.EMBEDDING_TASKS)}")
    langs = languages or tasks.languages(task, benchmark)
    for lg in langs:
        tasks.check_language(task, lg)
    ident.check_init(init_from, intermediate, results.NO_INTERMEDIATE)
    encoder_name = init_from or model
    tokenizer = _tokenizer(encoder_name)
    enc, layer = _encoder_and_layer(encoder_name, model_label or model, layer, log)
    run_dir = Path(run_dir)
    base = dict(run_id=run_id, plan=plan, phase="retrieval", model=model_label or model, intermediate=intermediate,
                seed=seed, init_from=init_from, weights_digest=ident.weights_digest(model_label or model, init_from))
    rows = []
    cache = Path(checkpoint_dir) / "embeddings" if checkpoint_dir else None
    key = None   # the cache key hashes the encoder's weights: a retrained checkpoint at the same path never collides
    for lg in langs:
        if task == "tatoeba":
            sc, split, n = _tatoeba(R, E, enc, tokenizer, lg, layer, data_dir, batch_size, cache, key, run_dir,
                                    max_examples)
        elif task in tasks.EMBEDDING_TASKS:
            sc, split, n = _sts_cosine(R, E, enc, tokenizer, task, lg, layer, data_dir, batch_size, cache, key,
                                       run_dir, max_examples)
        else:
            sc, split, n = _bucc(R, enc, tokenizer, lg, layer, data_dir, bucc_path, batch_size, cache, key,
                                 run_dir, max_examples, bucc_proxy, log)
        lang_rows = [results.make_row(**base, target_task=task, language=lg, split=split, metric=m, value=float(v),
                                      is_primary=m == tasks.get(task).primary_metric, n_examples=n)
                     for m, v in sc.items()]
        results.append_rows(run_dir / "metrics.jsonl", lang_rows)
        rows += lang_rows
        log(f"{task} {lg}: " + ", ".join(f"{m} {v:.2f}" for m, v in sc.items()))
    return {"rows": rows, "layer": layer, "average": evaluation.mean_primary(rows)}


def _encoder_and_layer(encoder_name: str, label: str, layer: int, log):
    """The encoder in eval mode on the device, and the hidden-states index to embed from (-1: the model ladder's,
    XLM-R large hidden_states[14], which XTREME writes 13); a layer outside the model fails naming the range."""
    import torch
    enc = models.load_pretrained_encoder(encoder_name)
    n_layers = getattr(enc.config, "num_hidden_layers", None) or enc.config.num_layers
    if layer < 0:
        layer, rule = ladder.retrieval_layer(label, n_layers)
        log(f"retrieval layer {layer} ({rule})")
    if not 0 <= layer <= n_layers:
        raise ValueError(f"layer {layer} is out of range for {encoder_name} (0 = embeddings .. {n_layers})")
    enc.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return enc, layer


def _tatoeba(R, E, enc, tokenizer, lg, layer, data_dir, batch_size, cache, key, run_dir, max_examples):
    """Tatoeba 1-NN accuracy of one language; predictions and labels written in `xfer score`'s layout."""
    from .. import scoring
    ds = data.load("tatoeba", "test", lg, data_dir=data_dir or None,
                   max_examples=max_examples if max_examples > 0 else None)
    src = E.embed(enc, tokenizer, list(ds["source"]), layer, batch_size=batch_size, cache_dir=cache, cache_key=key)
    tgt = E.embed(enc, tokenizer, list(ds["target"]), layer, batch_size=batch_size, cache_dir=cache, cache_key=key)
    pred = R.tatoeba_search(src, tgt)
    scoring.write_predictions("tatoeba", lg, [int(p) for p in pred], run_dir / "predictions")
    scoring.write_labels("tatoeba", lg, list(range(len(pred))), run_dir / "labels")   # gold: i-th target
    return {"accuracy": _tatoeba_acc(pred)}, "test", len(ds)


def _tatoeba_acc(pred) -> float:
    from .. import metrics
    return metrics.tatoeba_accuracy([int(p) for p in pred], list(range(len(pred))))


def _sts_cosine(R, E, enc, tokenizer, task, lg, layer, data_dir, batch_size, cache, key, run_dir, max_examples):
    """Unsupervised STS on the pairs of tasks.EMBEDDING_DATA[task] (test split): cosine of the two sentences'
    embeddings, Spearman x 100 against the gold scores. Rows carry `task` (never the trained STS task's name)."""
    from .. import scoring
    split = "test"
    ds = data.load(task, split, lg, data_dir=data_dir or None, max_examples=max_examples if max_examples > 0 else None)
    a = E.embed(enc, tokenizer, list(ds["text_a"]), layer, batch_size=batch_size, cache_dir=cache, cache_key=key)
    b = E.embed(enc, tokenizer, list(ds["text_b"]), layer, batch_size=batch_size, cache_dir=cache, cache_key=key)
    scoring.write_predictions(task, lg, R.pair_cosines(a, b).tolist(), run_dir / "predictions")
    return R.sts_cosine_scores(a, b, list(ds["label"])), split, len(ds)


def _bucc(R, enc, tokenizer, lg, layer, data_dir, bucc_path, batch_size, cache, key, run_dir, max_examples,
          bucc_proxy=False, log=print):
    """XTREME's protocol (docs/sources.md, Retrieval): mine each split (distinct sentences; ambiguous duplicates
    dropped), choose the F1-optimal threshold on the dev gold (BUCC 'sample'), apply it to test (BUCC 'training'), on
    the original corpora (validate.bucc_corpus: `bucc_path`, the mirror's user/bucc2018, XFER_BUCC_PATH), whole
    (`max_examples` does not apply: the distractors are the task). Only with `bucc_proxy` and no corpus: the hub's
    gold-pairs-only configs, a proxy whose rows carry the split 'proxy-test' so that they never pass for BUCC."""
    from .. import embeddings as E
    from .. import scoring
    corpus_dir = validate.bucc_corpus(bucc_path, data_dir)
    if corpus_dir is None and not bucc_proxy:
        validate.check_bucc([lg], bucc_path, data_dir, bucc_proxy)   # raises: where to get the corpora
    cands = {}
    for split in ("validation", "test"):
        if corpus_dir is not None:
            corpus = R.read_bucc(corpus_dir, lg, R.XTREME_BUCC_SPLITS[split])
            if corpus.gold is None:
                raise FileNotFoundError(f"no gold file {lg}-en.{corpus.split}.gold in {corpus_dir}; the BUCC 2018 "
                                        f"sample and training parts come with gold ({validate.BUCC_SOURCE})")
        else:
            ds = data.load("bucc2018", split, lg, data_dir=data_dir or None,
                           max_examples=max_examples if max_examples > 0 else None)
            corpus = R.BuccCorpus(lg, split, list(ds["source_id"]), list(ds["source"]), list(ds["target_id"]),
                                  list(ds["target"]), set(zip(ds["source_id"], ds["target_id"])), proxy=True,
                                  note="PROXY: hub gold pairs only, no distractor sentences")
        s = E.embed(enc, tokenizer, corpus.src_sents, layer, batch_size=batch_size, cache_dir=cache, cache_key=key)
        t = E.embed(enc, tokenizer, corpus.tgt_sents, layer, batch_size=batch_size, cache_dir=cache, cache_key=key)
        cands[split] = (R.bucc_candidates(corpus, s, t), corpus)
    (dev, dev_corpus), (test, test_corpus) = cands["validation"], cands["test"]
    sc = R.bucc_evaluate(dev, dev_corpus.gold, test, test_corpus.gold)
    threshold = sc.pop("threshold")
    if test_corpus.proxy:
        log(f"bucc2018 {lg}: {test_corpus.note}; rows under split '{tasks.PROXY_SPLIT_PREFIX}test'")
        return sc, tasks.PROXY_SPLIT_PREFIX + "test", len(test_corpus.gold)
    scoring.write_predictions("bucc2018", lg, sorted(R.bucc_extract(test, threshold)), run_dir / "predictions")
    scoring.write_labels("bucc2018", lg, sorted(test_corpus.gold), run_dir / "labels")
    log(f"bucc2018 {lg}: {len(test_corpus.src_sents)} + {len(test_corpus.tgt_sents)} sentences, "
        f"{len(test_corpus.gold)} gold pairs, threshold {threshold:.4f} (chosen on the sample part)")
    return sc, "test", len(test_corpus.gold)


def history_frame(history: list[dict]):
    """Dev scores over training steps, one row per (step, task), for the training-curve plot."""
    import pandas as pd
    rows = [{"step": h["step"], "task": task, "score": v.get("primary", float("nan"))}
            for h in history for task, v in (h.get("dev") or {}).items()]
    return pd.DataFrame(rows, columns=["step", "task", "score"])


def scores_frame(run_dir: str | Path):
    """The rows a run wrote, as a DataFrame of the results schema."""
    return results.to_frame(results.read_rows(Path(run_dir) / "metrics.jsonl"))
