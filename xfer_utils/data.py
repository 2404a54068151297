"""Load one split of one task in one language as a `datasets.Dataset` with the normalized fields of its type.

One code path for two sources: the hub by name, or a local mirror with the hub's layout (`data_dir`, or the
environment variable XFER_DATA_DIR; `xfer tiny` builds one). Script-only hub repos are read from their
`refs/convert/parquet` branch with explicit per-split data files (docs/sources.md, Hub loading); data not on the hub
(CCGbank, LASER Tatoeba extras, MLM text) comes from a user path. Bad task, language or split fails before any I/O.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from . import files, tasks

NORMALIZED_FIELDS = {
    "classification": ("text_a", "label"),
    "pair_classification": ("text_a", "text_b", "label"),
    "regression": ("text_a", "text_b", "label"),
    "multiple_choice": ("context", "question", "choices", "label"),
    "span_qa": ("id", "context", "question", "answers"),
    "tagging": ("tokens", "tags"),
    "retrieval": ("source", "target", "source_id", "target_id"),
}
_PARQUET_REV = "refs/convert/parquet"


def data_dir_from(data_dir: str | os.PathLike | None) -> Path | None:
    d = data_dir if data_dir not in (None, "") else files.env("XFER_DATA_DIR") or None
    return Path(d) if d else None


def load(task: str, split: str, language: str = "en", *, data_dir: str | os.PathLike | None = None,
         max_examples: int | None = None, seed: int = 0):
    """The normalized `split` of `task` in `language`. `max_examples` keeps a seeded random subset."""
    t = tasks.get(task)
    tasks.check_language(task, language)
    tasks.check_split(task, split, language)
    root = data_dir_from(data_dir)
    if task in tasks.EMBEDDING_DATA:   # scored from embeddings, on the data of another task
        return load(tasks.EMBEDDING_DATA[task], split, language, data_dir=root, max_examples=max_examples, seed=seed)
    if t.components:
        from datasets import concatenate_datasets
        ds = concatenate_datasets([load(c, split, language, data_dir=root) for c in t.components])
    else:
        src = t.source_for(language)
        if src is None or src.hub_id == "user":
            ds = _load_user(t, split, language, root)
        elif src.treebanks:
            ds = _load_treebanks(t, src, split, root)
        elif src.filter == "language_pair":
            ds = _normalize(t, src, _language_pair(t, src, split, language, root))
        else:
            raw = _load_raw(src, tasks.config_name(task, language), src.splits[split], root)
            if task == "xcopa":
                raw = _reconcile_xcopa(raw, split, root)
            ds = _normalize(t, src, _filter_language(src, raw, language))
    if t.type in ("classification", "pair_classification", "multiple_choice"):
        # -1 / "" rows go from every split, SNLI's test too (the registry lists only labelled test splits;
        # docs/sources.md, Label encodings)
        ds = ds.filter(lambda lab: [x >= 0 for x in lab], input_columns="label", batched=True)
    if len(ds) == 0:
        raise ValueError(f"{task} {split} ({language}) is empty after loading; check the data source")
    if max_examples is not None and 0 <= max_examples < len(ds):
        ds = ds.shuffle(seed=seed).select(range(max_examples))
    return ds


def _load_raw(src: tasks.Source, config: str | None, hub_split: str, root: Path | None):
    import datasets
    datasets.disable_progress_bars()
    if root is not None:
        # A mirror is read file by file with explicit data files, the way the hub's refs/convert/parquet branch is
        # (parsing a big repo README per load costs ~0.3 s; the mirror's README still lets `load_dataset(dir, cfg)`
        # work for users). Its own arrow cache lives inside it: the shared cache keys local folders by path, so a
        # mirror rebuilt in place would otherwise be served stale (seen with datasets 5.2).
        d = root / src.hub_id / config
        pattern = str(d / hub_split / "*.parquet") if (d / hub_split).is_dir() else str(d / f"{hub_split}-*.parquet")
        if not glob.glob(pattern):
            raise FileNotFoundError(f"{src.hub_id} config {config!r} split {hub_split!r} is not in the mirror {root} "
                                    f"(no {pattern}); build a mirror with `xfer tiny DIR` or point data_dir / "
                                    f"XFER_DATA_DIR at a complete copy")
        return _call(lambda: datasets.load_dataset("parquet", data_files={hub_split: pattern}, split=hub_split,
                                                   cache_dir=str(root / ".hf_cache")), src, config, root)
    if src.revision == _PARQUET_REV:
        # No YAML configs on that branch: name the files of the one split explicitly (docs/sources.md, Hub loading).
        files = f"hf://datasets/{src.hub_id}@{_PARQUET_REV.replace('/', '%2F')}/{config}/{hub_split}/*.parquet"
        return _call(lambda: datasets.load_dataset("parquet", data_files={hub_split: files}, split=hub_split),
                     src, config, root)
    kw = {"revision": src.revision} if src.revision else {}
    return _call(lambda: datasets.load_dataset(src.hub_id, config, split=hub_split, **kw), src, config, root)


def _call(fn, src, config, root):
    try:
        return fn()
    except FileNotFoundError as e:
        where = f"the mirror {root}" if root else "the hub"
        raise FileNotFoundError(f"{src.hub_id} config {config!r} not found in {where} ({e}); build a mirror with "
                                f"`xfer tiny DIR` or set XFER_DATA_DIR to a local copy") from e
    except (ConnectionError, OSError) as e:
        if root:
            raise
        raise ConnectionError(f"cannot reach the hub for {src.hub_id} ({type(e).__name__}); offline, set "
                              f"XFER_DATA_DIR (or the notebook's data_dir) to a local mirror, or HF_DATASETS_CACHE "
                              f"to a cache that holds it") from e


def _filter_language(src: tasks.Source, ds, language: str):
    if src.filter == "language":
        return ds.filter(lambda x: [v == language for v in x], input_columns="language", batched=True)
    if src.filter == "id_prefix":
        prefix = tasks.TYDIQA_PREFIX[language] + "-"
        return ds.filter(lambda x: [v.startswith(prefix) for v in x], input_columns="id", batched=True)
    return ds


def _load_treebanks(task: tasks.Task, src: tasks.Source, split: str, root: Path | None):
    """Every treebank of the language that has `split`, in registry order, as one dataset (UD v2.7 languages)."""
    from datasets import concatenate_datasets
    parts = [_normalize(task, src, _load_raw(src, config, src.splits[split], root))
             for config, have in src.treebanks if split in have]
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _language_pair(task: tasks.Task, src: tasks.Source, split: str, language: str, root: Path | None):
    """Cross-lingual pairs ("en-de"): text_a from the first language's config, text_b from the second's, row by row.
    Only sound when row i of both configs is the same pair (stsb_multi_mt's translations are): checked here on the
    labels, which must be equal row for row."""
    from datasets import Dataset
    a, b = language.split("-")
    f, hub_split = src.fields, src.splits[split]
    ra, rb = (_load_raw(src, src.config.format(lang=lg), hub_split, root) for lg in (a, b))
    la, lb = ra[f["label"]], rb[f["label"]]
    bad = sum(x != y for x, y in zip(la, lb))
    if len(ra) != len(rb) or bad:
        raise ValueError(f"{task.name} {language}: {src.hub_id} {a} and {b} ({hub_split}) are not row-aligned "
                         f"({len(ra)} vs {len(rb)} rows, {bad} rows with different labels); cross-lingual pairs need "
                         f"row i to be the same pair in both languages")
    cols = {f["text_a"]: ra[f["text_a"]], f["text_b"]: rb[f["text_b"]], f["label"]: la}
    return Dataset.from_dict(cols, features=ra.features)


# XCOPA's `question` (cause/effect) disagrees across languages for the same item in the released data (th 250 of 500
# test items, tr 51, sw 37; the labels agree: docs/sources.md, Hub dataset quirks): every language gets the value most
# XCOPA languages give the item (by `idx`). On a tie (possible only when fewer languages are present) each language
# keeps its own.
_XCOPA_MAJORITY: dict = {}


def xcopa_question_majority(split: str, root: Path | None = None) -> dict[int, str]:
    """idx -> the `question` a strict majority of the registry's XCOPA languages give that item (`split` normalized).
    Items without a strict majority are absent. Cached per mirror state."""
    from collections import Counter, defaultdict
    t = tasks.get("xcopa")
    langs = tasks.all_languages("xcopa")
    stamp = None
    if root is not None:
        stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in (root / "cambridgeltl/xcopa").rglob("*.parquet")))
    key = (split, str(root), stamp)
    if key not in _XCOPA_MAJORITY:
        votes: dict[int, Counter] = defaultdict(Counter)
        for lg in langs:
            src = t.source_for(lg)
            raw = _load_raw(src, tasks.config_name("xcopa", lg), src.splits[split], root)
            for q, i in zip(raw["question"], raw["idx"]):
                votes[int(i)][q] += 1
        out = {}
        for i, c in votes.items():
            ranked = c.most_common()
            if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
                out[i] = ranked[0][0]
        _XCOPA_MAJORITY[key] = out
    return _XCOPA_MAJORITY[key]


def _reconcile_xcopa(raw, split: str, root: Path | None):
    majority = xcopa_question_majority(split, root)
    return raw.map(lambda q, i: {"question": majority.get(int(i), q)}, input_columns=["question", "idx"])


def _get(row: dict, column: str):
    for part in column.split("."):
        row = row[part]
    return row


def _label_decoder(task: tasks.Task, src: tasks.Source, feature):
    """One function per label encoding (docs/sources.md, Label encodings); ClassLabels are mapped by *name* (UD
    v2.7's upos order differs from XTREME's)."""
    names = getattr(feature, "names", None)
    if names is not None and task.label_names and list(names) != list(task.label_names):
        index = {n: task.label_names.index(n) if n in task.label_names else -1 for n in names}
        return lambda v: -1 if v < 0 else index[names[v]]
    enc = src.labels
    if enc == "float":
        return float
    if enc == "names":
        return lambda v: task.label_names.index(v) if v in task.label_names else -1
    if enc == "str_int":
        return lambda v: int(v) if str(v).strip() != "" else -1
    if enc == "str_int_1based":
        return lambda v: int(v) - 1 if str(v).strip() != "" else -1
    if enc == "letter":
        return lambda v: "ABCDE".index(v) if v else -1
    return int


def _fix_answers(context: str, answers: dict) -> dict:
    """xtreme QA configs strip text but keep answer_start (docs/sources.md, Hub dataset quirks): re-anchor each
    answer on its text."""
    starts = []
    for s, a in zip(answers["answer_start"], answers["text"]):
        if context[s:s + len(a)] != a:
            cands = [i for i in range(len(context)) if context.startswith(a, i)]
            s = min(cands, key=lambda i: abs(i - s)) if cands else s
        starts.append(int(s))
    return {"text": list(answers["text"]), "answer_start": starts}


def _normalize(task: tasks.Task, src: tasks.Source, raw):
    from datasets import Features, List, Value
    f = src.fields
    typ = task.type
    feats = raw.features
    if typ == "tagging":
        tag_feat = feats[f["tags"]].feature
        dec = _label_decoder(task, src, tag_feat)
        names = getattr(tag_feat, "names", None)

        def fn(r):
            # UD v2.7 rows (hub universal_dependencies) also hold multiword-token ranges (`19-20 im`, UPOS `_`) and
            # empty nodes (`8.1`), neither with an integer head: they are dropped and the syntactic words kept.
            # XTREME's converter builds words from integer ids too but then fuses each range into one token; the hub
            # rows carry no ids, so a range's extent is unknown here (README design notes).
            keep = [str(h).isdigit() for h in r["head"]] if "head" in r else [True] * len(r[f["tokens"]])
            tags = [dec(v) for v, k in zip(r[f["tags"]], keep) if k]
            if tags and min(tags) < 0:   # never let an unknown tag become -1 (not the loss's ignore index; 'X' gold)
                raw_tag = next(v for v, k in zip(r[f["tags"]], keep) if k and dec(v) < 0)
                raise ValueError(f"{task.name}: tag {names[raw_tag] if names else raw_tag!r} of {src.hub_id} is not "
                                 f"one of the task's labels ({', '.join(task.label_names)})")
            return {"tokens": [w for w, k in zip(r[f["tokens"]], keep) if k], "tags": tags}
        out = Features({"tokens": List(Value("string")), "tags": List(Value("int64"))})
    elif typ == "span_qa":
        fn = lambda r: {"id": r[f["id"]], "context": r[f["context"]], "question": r[f["question"]],  # noqa: E731
                        "answers": _fix_answers(r[f["context"]], r[f["answers"]])}
        out = Features({"id": Value("string"), "context": Value("string"), "question": Value("string"),
                        "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))}})
    elif typ == "multiple_choice":
        dec = _label_decoder(task, src, feats.get(f["label"]))
        cols = f["choices"].split(",")

        def fn(r):
            choices = list(_get(r, cols[0])) if len(cols) == 1 else [r[c] for c in cols]
            return {"context": r.get(f.get("context", ""), "") or "", "question": r.get(f.get("question", ""), "")
                    or "", "choices": choices, "label": dec(r[f["label"]])}
        out = Features({"context": Value("string"), "question": Value("string"), "choices": List(Value("string")),
                        "label": Value("int64")})
    elif typ == "retrieval":
        def fn(r, i):
            # strip: hub Tatoeba sentences keep a trailing "\n" (docs/sources.md, Hub dataset quirks)
            return {"source": r[f["source"]].strip(), "target": r[f["target"]].strip(),
                    "source_id": r[f["source_id"]] if "source_id" in f else str(i),
                    "target_id": r[f["target_id"]] if "target_id" in f else str(i)}
        return raw.map(fn, with_indices=True, remove_columns=raw.column_names,
                       features=Features({k: Value("string") for k in NORMALIZED_FIELDS["retrieval"]}))
    else:   # classification, pair classification, regression
        dec = _label_decoder(task, src, feats.get(f["label"]))
        keys = [k for k in ("text_a", "text_b") if k in f]
        fn = lambda r: {**{k: r[f[k]] for k in keys}, "label": dec(r[f["label"]])}  # noqa: E731
        out = Features({**{k: Value("string") for k in keys},
                        "label": Value("float32") if typ == "regression" else Value("int64")})
    return raw.map(fn, remove_columns=raw.column_names, features=out)


# ---------------------------------------------------------------- data that is not on the hub
def user_path(task: tasks.Task, root: Path | None, required: bool = True) -> Path | None:
    """The folder of a task's user-path data: the mirror's own ``user/<task>`` when `root` (data_dir) holds one (the
    tiny world carries fixtures, so its runs never read the user's real corpora), else the folder the task's
    environment variable names (XFER_CCG_PATH, XFER_BUCC_PATH, XFER_TATOEBA_PATH). None or an error without one."""
    if root is not None and (root / "user" / task.name).exists():
        return root / "user" / task.name
    env = files.env(task.user_path) if task.user_path else ""
    if env:
        return Path(env)
    if not required:
        return None
    raise FileNotFoundError(f"{task.name} data is not on the hub: set {task.user_path} to its folder ({task.note})")


def _load_user(task: tasks.Task, split: str, language: str, root: Path | None):
    from datasets import Dataset, Features, List, Value
    path = user_path(task, root)
    if task.name == "ccg":
        fname = {"train": "train", "validation": "dev", "test": "test"}[split]
        sents = read_conll_tsv(path / f"{fname}.tsv")
        names = ccg_labels(path)
        return Dataset.from_dict({"tokens": [w for w, _ in sents],
                                  "tags": [[names.index(t) if t in names else names.index("<other>") for t in ts]
                                           for _, ts in sents]},
                                 features=Features({"tokens": List(Value("string")), "tags": List(Value("int64"))}))
    if task.name == "tatoeba":
        c3 = tasks.TATOEBA_CODES[language]
        src = (path / f"tatoeba.{c3}-eng.{c3}").read_text(encoding="utf-8").splitlines()
        tgt = (path / f"tatoeba.{c3}-eng.eng").read_text(encoding="utf-8").splitlines()
        if len(src) != len(tgt):
            raise ValueError(f"Tatoeba files for {c3} are not line-aligned ({len(src)} vs {len(tgt)} lines)")
        ids = [str(i) for i in range(len(src))]
        return Dataset.from_dict({"source": [s.strip() for s in src], "target": [t.strip() for t in tgt],
                                  "source_id": ids, "target_id": ids})
    raise ValueError(f"no user-path reader for task {task.name!r}")


def read_conll_tsv(path: Path) -> list[tuple[list[str], list[str]]]:
    """'word<TAB>tag' per line, blank line between sentences."""
    sents, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sents.append((words, tags))
            words, tags = [], []
            continue
        w, t = line.split("\t")[:2]
        words.append(w)
        tags.append(t)
    if words:
        sents.append((words, tags))
    return sents


def ccg_labels(path: Path, max_labels: int = 1000) -> list[str]:
    """Supertag inventory from the training file (most frequent first, as jiant caps it); the rest map to <other>."""
    from collections import Counter
    counts = Counter(t for _, ts in read_conll_tsv(Path(path) / "train.tsv") for t in ts)
    return [t for t, _ in counts.most_common(max_labels - 1)] + ["<other>"]


def label_names(task: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Label names of a classification/tagging task (CCG's come from its data)."""
    t = tasks.get(task)
    if task == "ccg":
        return ccg_labels(user_path(t, data_dir_from(data_dir)))
    return list(t.label_names)


def _wikipedia(lang: str, root: Path | None):
    """wikimedia/wikipedia 20231101.<lang> articles: streamed from the hub, or read from a mirror (data_dir) that
    has the dump in the hub's layout (the tiny world does), by the same file-by-file path as every mirror config."""
    if root is not None and (root / "wikimedia" / "wikipedia").is_dir():
        return _load_raw(tasks.Source("wikimedia/wikipedia", "20231101.{lang}", {"train": "train"}),
                         f"20231101.{lang}", "train", root)
    import datasets
    return datasets.load_dataset("wikimedia/wikipedia", f"20231101.{lang}", split="train", streaming=True)


def wikipedia_lines(articles, n_lines: int, per_article: int = 5) -> list[str]:
    """The first `n_lines` MLM lines of a stream of wikimedia/wikipedia rows (fields id, url, title, text): the
    paragraphs of more than three words, at most `per_article` from each article. Counts lines, not articles.

    >>> arts = [{"text": "Title\\n\\none two three four\\nfive six seven eight nine"}] * 3
    >>> wikipedia_lines(arts, 3)
    ['one two three four', 'five six seven eight nine', 'one two three four']
    """
    lines: list[str] = []
    for row in articles:
        lines += [p for p in row["text"].split("\n") if len(p.split()) > 3][:per_article]
        if len(lines) >= n_lines:
            break
    return lines[:n_lines]


def mlm_text(source: str, languages: list[str], max_lines: int = 10000, data_dir=None) -> list[str]:
    """Text for multilingual MLM co-training: a folder of <lang>.txt files, or `wikipedia` for the hub's
    wikimedia/wikipedia 20231101.<lang> (streamed). `max_lines` counts lines (one MLM example each) for every
    source, split evenly over the languages; a Wikipedia line is a paragraph of more than three words, at most five
    per article (so one long article does not fill a language's share)."""
    root = data_dir_from(data_dir)
    if source in ("", "tiny") and root is not None:
        source = str(root / "user" / "mlm")
    out: list[str] = []
    if source == "wikipedia":
        import datasets
        per = max(1, max_lines // max(1, len(languages)))
        for lg in languages:
            stream = _wikipedia(lg, root)
            out += wikipedia_lines(stream, per)
        return out
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"MLM text source {source!r} is neither 'wikipedia' nor a folder of <lang>.txt files")
    per = max(1, max_lines // max(1, len(languages)))
    for lg in languages:
        f = folder / f"{lg}.txt"
        if not f.exists():
            raise FileNotFoundError(f"no MLM text for language {lg!r}: {f} is missing")
        out += [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()][:per]
    return out
