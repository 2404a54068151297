"""`xfer score`: score a folder of predictions against a folder of labels, laid out like XTREME's official scorer.

Layout (both folders): ``<task>/test-<lang>.<ext>`` with task = registry name (pawsx, xnli, udpos, panx, xquad,
mlqa, tydiqa, bucc2018, tatoeba, xcopa, stsb_multi_mt). Formats (what `write_predictions`/`write_labels` write):

| task type                         | ext   | predictions file              | labels file                         |
|-----------------------------------|-------|-------------------------------|-------------------------------------|
| classification (xnli, pawsx)      | tsv   | one label per line            | one label per line                  |
| tagging (udpos, panx)             | tsv   | one tag per line, a blank line after each sentence (both files)     |
| span QA (xquad, mlqa, tydiqa)     | json  | ``{question id: answer}``     | SQuAD v1.1 JSON (``{"data": [...]}``) |
| BUCC (bucc2018)                   | tsv   | ``src_id<TAB>tgt_id`` per line | the gold pairs, same format        |
| Tatoeba (tatoeba)                 | tsv   | retrieved index per line      | gold index per line                 |
| multiple choice (xcopa)           | jsonl | ``{"idx": i, "label": k}``    | ``{"idx": i, "label": k}`` (extra fields ignored) |
| regression (stsb_multi_mt)        | tsv   | one score per line            | one score per line                  |

Scoring follows `evaluate.py` (metrics.py says which official behaviour each metric reproduces; UD-POS uses the
seqeval 0.0.12 chunking of XTREME's published numbers). Unlike the official script, a task with only some of
its languages is scored language by language and marked ``"complete": false``; files of languages outside the
benchmark's list and folders of unknown tasks are ignored, as the official script ignores them.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> _ = write_labels("xnli", "de", ["entailment", "neutral"], d + "/labels")
>>> _ = write_predictions("xnli", "de", [0, 1], d + "/preds")    # ints are label ids (tasks.NLI_LABELS)
>>> score_folder(d + "/preds", d + "/labels")["tasks"]["xnli"]["languages"]
{'de': {'accuracy': 100.0}}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from xfer_utils import metrics, tasks

EXT = {"span_qa": "json", "multiple_choice": "jsonl"}        # every other type: tsv


def _task(task: str):
    t = tasks.get(task)
    if t.family != "target" or t.type == "mlm":
        raise ValueError(f"task {task!r} has no XTREME-style prediction files; use a target task")
    return t


def file_path(task: str, lang: str, root: str | os.PathLike) -> Path:
    """``root/<task>/test-<lang>.<ext>``."""
    return Path(root) / task / f"test-{lang}.{EXT.get(_task(task).type, 'tsv')}"


def _label_name(task, value) -> str:
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is a bool; give a label string or id")
    if isinstance(value, int):
        names = task.label_names
        if names:
            if not 0 <= value < len(names):
                raise ValueError(f"label id {value} out of range for {task.name} ({len(names)} labels)")
            return names[value]
        return str(value)
    value = str(value)
    if not value or "\n" in value or "\t" in value:
        raise ValueError(f"label {value!r} must be non-empty and contain no tab or newline")
    return value


def _write(path: Path, text: str) -> Path:
    from . import files
    return files.atomic_write_text(path, text)   # unique temp file: concurrent writers never share one


def _lines(items: Iterable[str]) -> str:
    return "".join(f"{x}\n" for x in items)


def _pairs_text(pairs) -> str:
    out = []
    for pair in pairs:
        a, b = (str(v) for v in pair)
        if not a or not b or any(c in a + b for c in "\t\n"):
            raise ValueError(f"BUCC ids must be non-empty, without tab or newline: {pair!r}")
        out.append(f"{a}\t{b}")
    return _lines(out)


def _tagging_text(task, sentences) -> str:
    if sentences and all(isinstance(s, str) for s in sentences):
        raise ValueError("tagging: give a list of sentences, each a list of tags")
    return "".join(_lines(_label_name(task, t) for t in sent) + "\n" for sent in sentences)


def _mc_text(values) -> str:
    rows = []
    for n, v in enumerate(values):
        rec = {"idx": v.get("idx", n), "label": v["label"]} if isinstance(v, Mapping) else {"idx": n, "label": v}
        if isinstance(rec["label"], bool) or not isinstance(rec["label"], int):
            raise ValueError(f"multiple choice labels must be ints (the chosen option), got {rec['label']!r}")
        rows.append(json.dumps(rec))
    return _lines(rows)


def _squad_json(labels) -> dict:
    if isinstance(labels, Mapping) and "data" in labels:
        return {"version": labels.get("version", "1.1"), "data": labels["data"]}
    if isinstance(labels, list) and labels and isinstance(labels[0], Mapping) and "paragraphs" in labels[0]:
        return {"version": "1.1", "data": labels}
    if isinstance(labels, Mapping):                                       # {id: [answer texts]}
        records = [{"id": k, "answers": {"text": list(v), "answer_start": [-1] * len(v)}} for k, v in labels.items()]
    else:                                                                 # hub rows
        records = list(labels)
    paragraphs = []
    for r in records:
        ans = r["answers"]
        texts, starts = (ans["text"], ans.get("answer_start", [-1] * len(ans["text"]))) if isinstance(ans, Mapping) \
            else ([a["text"] for a in ans], [a.get("answer_start", -1) for a in ans])
        if isinstance(texts, str) or not texts:
            raise ValueError(f"QA labels: question {r['id']!r} needs a non-empty list of answers")
        paragraphs.append({"context": r.get("context", ""), "qas": [{
            "id": r["id"], "question": r.get("question", ""),
            "answers": [{"text": t, "answer_start": int(s)} for t, s in zip(texts, starts)]}]})
    return {"version": "1.1", "data": [{"title": "", "paragraphs": paragraphs}]}


def write_predictions(task: str, lang: str, predictions, out_dir: str | os.PathLike) -> Path:
    """Write one language's predictions to ``out_dir/<task>/test-<lang>.<ext>``; returns the path.

    Per task type: classification = list of label strings or label ids (ints index ``tasks.get(task).label_names``);
    tagging = list of sentences, each a list of tag strings (or ids); span QA = ``{question id: answer string}``;
    bucc2018 = list of (src_id, tgt_id); tatoeba = list of ints (retrieved index per English sentence);
    xcopa = list of ints (chosen option per item, in item order) or dicts with "idx" and "label";
    regression = list of floats.
    """
    t = _task(task)
    tasks.check_language(task, lang)
    path = file_path(task, lang, out_dir)
    if t.type in ("classification", "pair_classification"):
        text = _lines(_label_name(t, p) for p in predictions)
    elif t.type == "tagging":
        text = _tagging_text(t, predictions)
    elif t.type == "span_qa":
        if not isinstance(predictions, Mapping) or not all(isinstance(v, str) for v in predictions.values()):
            raise ValueError("QA predictions must be a dict {question id: answer string}")
        text = json.dumps(dict(predictions), ensure_ascii=False)
    elif task == "bucc2018":
        text = _pairs_text(predictions)
    elif task == "tatoeba":
        text = _lines(str(int(p)) for p in predictions)
    elif t.type == "multiple_choice":
        text = _mc_text(predictions)
    elif t.type == "regression":
        text = _lines(repr(float(p)) for p in predictions)
    else:
        raise ValueError(f"task {task!r} ({t.type}) has no prediction file format")
    return _write(path, text)


def write_labels(task: str, lang: str, labels, out_dir: str | os.PathLike) -> Path:
    """Write one language's gold labels to ``out_dir/<task>/test-<lang>.<ext>``; returns the path.

    Same objects as `write_predictions`, except span QA: SQuAD JSON (``{"data": [...]}`` or its article list),
    ``{question id: [gold answer texts]}``, or hub rows with "id" and "answers" {"text": [...], ...};
    bucc2018 = the gold (src_id, tgt_id) pairs; tatoeba = gold index per English sentence; xcopa = ints or the
    dataset records (only "idx" and "label" are written).
    """
    t = _task(task)
    if t.type == "span_qa":
        tasks.check_language(task, lang)
        return _write(file_path(task, lang, out_dir), json.dumps(_squad_json(labels), ensure_ascii=False))
    return write_predictions(task, lang, labels, out_dir)


# ---------------------------------------------------------------- reading and scoring

def _read_label(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def _numbers(lines: list[str], path: Path, conv) -> list:
    out = []
    for n, x in enumerate(lines, 1):
        try:
            out.append(conv(x))
        except ValueError:
            raise ValueError(f"{path}:{n}: {x!r} is not {'a number' if conv is float else 'an integer'}") from None
    return out


def _read_tag(path: Path) -> list[list[str]]:
    # evaluate.py's read_tag: a blank line closes a sentence; a last sentence without one still counts
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            cur.append(line)
        else:
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    return sents


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{n}: not a JSON object") from None
            if not isinstance(rows[-1], dict) or "label" not in rows[-1]:
                raise ValueError(f"{path}:{n}: a JSON object with a \"label\" (and \"idx\") is expected, got {line[:80]}")
    return rows


def _mc_labels(pred: list[dict], gold: list[dict], path: Path) -> tuple[list, list]:
    if all("idx" in r for r in pred) and all("idx" in r for r in gold):
        by_idx = {r["idx"]: r["label"] for r in pred}
        return [by_idx.get(r["idx"]) for r in gold], [r["label"] for r in gold]
    if len(pred) != len(gold):
        raise ValueError(f"{path}: {len(pred)} predictions but {len(gold)} labels")
    return [r["label"] for r in pred], [r["label"] for r in gold]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def score_files(task: str, lang: str, prediction_file: str | os.PathLike, label_file: str | os.PathLike) -> dict:
    """{metric: value (0-100)} of one language's prediction file against its label file (read per the format
    table above, scored by metrics.score)."""
    t = _task(task)
    pf, lf = Path(prediction_file), Path(label_file)
    if t.type == "span_qa":
        pred, gold = _read_json(pf), _read_json(lf)
        if not isinstance(pred, dict):
            raise ValueError(f"{pf}: QA predictions must be a JSON object {{question id: answer}}")
        gold = metrics.squad_gold(gold)
    elif task == "bucc2018":                             # sets of pairs; the counts may differ
        pred = [p.split("\t") for p in _read_label(pf) if p]
        gold = [g.split("\t") for g in _read_label(lf) if g]
    elif t.type == "multiple_choice":
        pred, gold = _mc_labels(_read_jsonl(pf), _read_jsonl(lf), pf)
    else:
        pred, gold = (_read_tag(pf), _read_tag(lf)) if t.type == "tagging" else (_read_label(pf), _read_label(lf))
        if len(pred) != len(gold):
            raise ValueError(f"{task}/{lang}: {len(pred)} predictions in {pf} but {len(gold)} labels in {lf}")
        if t.type == "regression":
            pred, gold = _numbers(pred, pf, float), _numbers(gold, lf, float)
        elif task == "tatoeba":
            pred, gold = _numbers(pred, pf, int), _numbers(gold, lf, int)
    return metrics.score(task, gold, pred, lang)


def score_folder(predictions_dir: str | os.PathLike, labels_dir: str | os.PathLike,
                 benchmark: str = "xtreme") -> dict:
    """Score every task folder present in both trees; returns `metrics.xtreme_aggregate`'s JSON shape."""
    pred_root, label_root = Path(predictions_dir), Path(labels_dir)
    for root, what in ((pred_root, "predictions"), (label_root, "labels")):
        if not root.is_dir():
            raise FileNotFoundError(f"{what} folder {root} does not exist")
    if benchmark not in tasks.BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(tasks.BENCHMARKS)}")
    scorable = [n for n, t in tasks.REGISTRY.items() if t.family == "target"]
    found = [n for n in scorable if (pred_root / n).is_dir() and (label_root / n).is_dir()]
    if not found:
        raise ValueError(f"no task folder is in both {pred_root} and {label_root}; expected folders named after "
                         f"tasks ({', '.join(scorable)})")
    scores: dict[str, dict] = {}
    for task in found:
        scores[task] = {}
        for lang in tasks.languages(task, benchmark):
            pf, lf = file_path(task, lang, pred_root), file_path(task, lang, label_root)
            if pf.exists() and lf.exists():
                scores[task][lang] = score_files(task, lang, pf, lf)
    return metrics.xtreme_aggregate(scores, benchmark)


def _cmd_score(args) -> int:
    result = score_folder(args.predictions, args.labels, args.benchmark)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.output:
        _write(Path(args.output), text + "\n")
    print(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("score", help="score a folder of predictions against labels, like XTREME's evaluate.py",
                       description="Score <task>/test-<lang>.<ext> prediction files against label files laid out "
                                   "the same way; prints JSON with per-language, per-task, group and overall scores.")
    p.add_argument("--predictions", required=True, help="folder of <task>/test-<lang>.<ext> prediction files")
    p.add_argument("--labels", required=True, help="folder of label files in the same layout")
    p.add_argument("--benchmark", default="xtreme", choices=tasks.BENCHMARKS,
                   help="language lists and task groups to use (default: xtreme)")
    p.add_argument("--output", default=None, help="also write the JSON to this file")
    p.set_defaults(func=_cmd_score)
