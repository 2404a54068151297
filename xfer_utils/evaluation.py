"""Batched prediction (length-sorted batches, dynamic padding) and scoring with the official-scorer metrics; the
zero-shot loop over every language of a target task writes XTREME-format prediction files and results rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data, features, metrics, postprocess, results, tasks


def device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model, head: str, task_type: str, feats: list[dict], pad_id: int, batch_size: int = 64,
            progress: bool = False, pad_to: int | None = None) -> list:
    """Raw outputs per feature, in the order of `feats`. Batches are formed over length-sorted features so that
    padding stays minimal; results are put back in the original order."""
    was_training = model.training
    model.eval()
    dev = device_of(model)
    order = sorted(range(len(feats)), key=lambda i: feats[i]["length"])
    out: list = [None] * len(feats)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" and \
        torch.cuda.is_bf16_supported() else torch.autocast("cpu", enabled=False)
    for b in tqdm(range(0, len(order), batch_size), disable=not progress, desc=f"predict {head}", leave=False):
        idx = order[b:b + batch_size]
        batch = features.collate([{k: feats[i][k] for k in ("input_ids", "length", "token_type_ids") if k in feats[i]}
                                  for i in idx],
                                 pad_id, pad_to=pad_to, multiple_of=features.pad_multiple(dev))
        with autocast:
            logits = model(head, {k: v.to(dev) for k, v in batch.items()})["logits"].float().cpu()
        for j, i in enumerate(idx):
            n = len(feats[i]["input_ids"]) if task_type in ("tagging", "span_qa") else None
            if task_type == "span_qa":
                out[i] = (logits[j, 0, :n].numpy(), logits[j, 1, :n].numpy())
            elif task_type == "tagging":
                out[i] = logits[j, :n].argmax(-1).numpy()
            elif task_type == "regression":
                out[i] = float(logits[j])
            else:
                out[i] = int(logits[j].argmax(-1))
    model.train(was_training)
    return out


def predictions(model, head: str, task: str, ds, tokenizer, max_length: int, batch_size: int = 64,
                label_names: list[str] | None = None, progress: bool = False, doc_stride: int = 128,
                pad_to: int | None = None):
    """Predictions for a normalized dataset: labels (ints), floats, word-level tag strings or {id: answer}."""
    t = tasks.get(task)
    feats = features.build(t.type, ds, tokenizer, max_length, train=False, doc_stride=doc_stride)
    raw = predict(model, head, t.type, feats, tokenizer.pad_token_id, batch_size, progress, pad_to)
    if t.type == "span_qa":
        return postprocess.decode_qa(ds, feats, [r[0] for r in raw], [r[1] for r in raw],
                                     allow_null=task == "squad_v2")
    if t.type == "tagging":
        return postprocess.word_tags(feats, raw, label_names or list(t.label_names))
    return raw


def score(task: str, ds, preds, language: str = "en", label_names: list[str] | None = None) -> dict[str, float]:
    """Metrics of `task` on the 0-100 scale: the one scorer (metrics.score) on the dataset's gold side."""
    return metrics.score(task, gold_labels(task, ds, label_names), preds, language)


def gold_labels(task: str, ds, label_names: list[str] | None = None):
    """The gold side of `score`, as `scoring.write_labels` takes it."""
    t = tasks.get(task)
    if t.type == "span_qa":
        return {i: list(a["text"]) for i, a in zip(list(ds["id"]), list(ds["answers"]))}
    if t.type == "tagging":
        names = label_names or list(t.label_names)
        return [[names[x] for x in tags] for tags in list(ds["tags"])]
    return list(ds["label"])


def primary(task: str, scores: dict[str, float]) -> float:
    """The number model selection uses: XTREME's task score (metrics.task_score: (EM + F1) / 2 for QA)."""
    s = metrics.task_score(task, scores)
    if s is None:
        raise KeyError(f"{task}: no task score from metrics {sorted(scores)}")
    return s


def zero_shot(model, head: str, task: str, tokenizer, languages: list[str], *, run: dict, data_dir=None,
              split: str | None = None, max_examples: int | None = None, batch_size: int = 64,
              predictions_dir: str | Path | None = None, metrics_path: str | Path | None = None,
              label_names: list[str] | None = None, splits=None) -> list[dict]:
    """Evaluate one trained head on every language (one shared head, as jiant/XTREME). Writes each language's
    predictions in XTREME's format and its rows (results schema) as soon as that language is done, so a crash
    loses at most the language in progress. `run` holds the row fields common to the run (run_id, plan, model...).

    `splits` (e.g. ["validation", "test"], 'dev' accepted): every one a language has is evaluated (tasks.eval_splits;
    a hub split that serves two names, TyDiQA-GoldP's dev = XTREME's test, is evaluated once and written under
    both). Test predictions go to `predictions_dir` (XTREME's submission layout), the others to
    `predictions_dir/<split>/`. Without `splits`: the one split `split`, else the task's `eval_split`."""
    from . import scoring
    t = tasks.get(task)
    rows = []
    for lg in tqdm(languages, desc=f"zero-shot {task}"):
        if splits:
            todo = tasks.eval_splits(task, lg, splits)
        else:
            sp = split or (t.eval_split if t.eval_split in tasks.splits(task, lg) else tasks.splits(task, lg)[-1])
            todo = [(sp, [sp])]
        for sp, names in todo:
            ds = data.load(task, sp, lg, data_dir=data_dir, max_examples=max_examples)
            preds = predictions(model, head, task, ds, tokenizer, t.max_length, batch_size, label_names)
            sc = score(task, ds, preds, lg, label_names)
            lang_rows = []
            for name in names:
                if predictions_dir:
                    out = Path(predictions_dir) if name == "test" else Path(predictions_dir) / name
                    scoring.write_predictions(task, lg, preds, out)
                    # gold beside them, so `xfer gains` can rescore resampled examples without reloading the data
                    labels = Path(predictions_dir).parent / "labels"
                    scoring.write_labels(task, lg, gold_labels(task, ds, label_names),
                                         labels if name == "test" else labels / name)
                lang_rows += [results.make_row(**run, target_task=task, language=lg, split=name, metric=m,
                                               value=float(v), is_primary=(m == t.primary_metric), n_examples=len(ds))
                              for m, v in sc.items()]
            if metrics_path:
                results.append_rows(metrics_path, lang_rows)
            rows += lang_rows
    return rows


def mean_primary(rows: list[dict]) -> float:
    vals = [r["value"] for r in rows if r["is_primary"]]
    return float(np.mean(vals)) if vals else float("nan")
