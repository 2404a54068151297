"""Shared helpers of the benchmarks (not part of the package): where the real text is, the benchmark tokenizer,
small XLM-R-shaped random models, machine facts, peak-memory sampling and JSON output.

Real text comes from ``../shared/data`` beside the repo (or ``$XFER_SHARED_DATA``); it is read in place and never
copied into the repo. Without it every benchmark falls back to a synthetic corpus whose lengths follow lognormal
distributions fitted to that real text (see SYNTHETIC) - the JSON says which one was used (``data``).
"""
from __future__ import annotations

import contextlib
import csv
import glob
import json
import math
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XFER_BENCH_CACHE") or REPO / ".cache" / "benchmarks")   # git-ignored: tokenizers

# Lognormal fits (mu, sigma of ln(tokens)) and caps of the real text's token lengths under the benchmark tokenizer
# (vocab 32k, trained on the same text; measured on all of ../shared/data: XQuAD 14,280 question+context pairs,
# STS 37,418 pairs, UD 8,106 sentences, Tatoeba 73,384 lines); used only when ../shared/data is missing, where a
# synthetic word counts as one token.
SYNTHETIC = {
    "qa": {"mu": 5.55, "sigma": 0.42, "max": 1300},      # question + context (windows of 384 cut longer ones)
    "pair": {"mu": 3.58, "sigma": 0.50, "max": 170},      # sentence1 + sentence2
    "tagging": {"mu": 3.21, "sigma": 0.76, "max": 365},   # one UD sentence
    "sentence": {"mu": 2.48, "sigma": 0.40, "max": 217},  # one Tatoeba line
}


def shared_data() -> Path | None:
    env = os.environ.get("XFER_SHARED_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if p.is_dir() and any(p.iterdir()) else None


# ------------------------------------------------------------------ real text readers
def read_xquad(root: Path, per_lang: int | None = None) -> dict[str, list[dict]]:
    """{lang: [{question, context, answers: {text, answer_start}}]} from xquad.<lang>.json."""
    out = {}
    for f in sorted(glob.glob(str(root / "xquad" / "xquad.*.json"))):
        lang = Path(f).name.split(".")[1]
        rows = []
        for art in json.loads(Path(f).read_text(encoding="utf-8"))["data"]:
            for para in art["paragraphs"]:
                for qa in para["qas"]:
                    rows.append({"question": qa["question"], "context": para["context"],
                                 "answers": {"text": [a["text"] for a in qa["answers"]],
                                             "answer_start": [a["answer_start"] for a in qa["answers"]]}})
        out[lang] = rows[:per_lang] if per_lang else rows
    return out


def read_stsb(root: Path, per_lang: int | None = None) -> dict[str, list[tuple[str, str, float]]]:
    out = {}
    for f in sorted(glob.glob(str(root / "stsb_multi_mt" / "stsb-*-*.csv"))):
        lang = Path(f).name.split("-")[1]
        with open(f, encoding="utf-8", newline="") as fh:
            rows = [(r[0], r[1], float(r[2])) for r in csv.reader(fh) if len(r) >= 3]
        out.setdefault(lang, []).extend(rows)
    return {k: (v[:per_lang] if per_lang else v) for k, v in out.items()}


def read_conllu(root: Path, per_lang: int | None = None) -> dict[str, list[tuple[list[str], list[str]]]]:
    """{lang: [(words, UPOS tags)]}; multiword-token range lines and empty nodes are skipped."""
    out = {}
    for f in sorted(glob.glob(str(root / "udpos" / "*" / "*.conllu"))):
        lang = Path(f).name.split("_")[0]
        sents, words, tags = [], [], []
        for line in open(f, encoding="utf-8"):
            line = line.rstrip("\n")
            if not line:
                if words:
                    sents.append((words, tags))
                words, tags = [], []
            elif not line.startswith("#"):
                cols = line.split("\t")
                if len(cols) >= 4 and cols[0].isdigit():
                    words.append(cols[1])
                    tags.append(cols[3])
        if words:
            sents.append((words, tags))
        out.setdefault(lang, []).extend(sents)
    return {k: (v[:per_lang] if per_lang else v) for k, v in out.items()}


def read_tatoeba(root: Path, per_lang: int | None = None) -> dict[str, list[str]]:
    """{lang: lines} for every non-English side, plus 'eng' = all English sides concatenated."""
    out: dict[str, list[str]] = {}
    for f in sorted(glob.glob(str(root / "tatoeba" / "tatoeba.*-eng.*"))):
        name = Path(f).name                      # tatoeba.<xxx>-eng.<side>
        side = name.rsplit(".", 1)[1]
        lines = [s.strip() for s in open(f, encoding="utf-8") if s.strip()]
        if per_lang:
            lines = lines[:per_lang]
        out.setdefault(side, []).extend(lines)
    return out


def corpus_texts(root: Path) -> list[str]:
    """Every text of the four sources (the tokenizer's training text)."""
    texts = []
    for rows in read_xquad(root).values():
        seen = set()
        for r in rows:
            if r["context"] not in seen:
                seen.add(r["context"])
                texts.append(r["context"])
            texts.append(r["question"])
    for rows in read_stsb(root).values():
        for a, b, _ in rows:
            texts += [a, b]
    for rows in read_conllu(root).values():
        texts += [" ".join(w) for w, _ in rows]
    for lines in read_tatoeba(root).values():
        texts += lines
    return texts


# ------------------------------------------------------------------ synthetic text (no shared data)
def _words(rng: random.Random, n_types: int = 1500) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 6))) for _ in range(n_types)]


def synthetic_lengths(kind: str, n: int, rng: random.Random) -> list[int]:
    s = SYNTHETIC[kind]
    return [max(1, min(s["max"], int(round(math.exp(rng.gauss(s["mu"], s["sigma"]))))))
            for _ in range(n)]


def synthetic_sentence(rng: random.Random, vocab: list[str], n_tokens: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(max(1, n_tokens)))


# ------------------------------------------------------------------ tokenizer and models
def tokenizer_for(texts: list[str], vocab_size: int, name: str):
    """The project's tiny-world tokenizer builder (Unigram + Metaspace, XLM-R's special-token order) trained on
    `texts`; cached under .cache/benchmarks/<name>-<vocab>."""
    from transformers import AutoTokenizer
    from xfer_utils.world import tiny
    path = CACHE / f"{name}-{vocab_size}"
    if (path / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(path)
    tok = tiny.train_tokenizer(texts, vocab_size=vocab_size)
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def xlmr_encoder(tokenizer, layers: int = 4, hidden: int = 256, heads: int = 4, intermediate: int = 1024,
                 seed: int = 0, vocab_size: int | None = None, attn: str = "sdpa"):
    """A randomly initialised XLM-R-shaped encoder (no pooler), SDPA attention as the project loads encoders."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=514,
                           type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    cfg._attn_implementation = attn
    return XLMRobertaModel(cfg, add_pooling_layer=False)


def word_tokenizer(words: list[str]):
    """The synthetic text's tokenizer: the project's XLM-R-style Unigram tokenizer class with one piece per
    synthetic word (so a synthetic word is exactly one token), XLM-R's special-token order, <mask> last."""
    import string
    from transformers import XLMRobertaTokenizer
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + w, -5.0) for w in dict.fromkeys(words)] + [("▁", -20.0)]
    vocab += [(ch, -30.0) for ch in string.ascii_letters + string.digits + string.punctuation] + [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=vocab)


# ------------------------------------------------------------------ machine, load, memory, output
def machine() -> dict:
    import torch
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = open("/proc/meminfo").readline().split()
        info["mem_gib"] = round(int(mem[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples the process's resident memory every `interval` s; `.peak_extra` = peak minus the RSS at entry
    (covers numpy, torch and faiss allocations alike, unlike tracemalloc)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())
        self.peak_extra = self.peak - self.start
        return False


@contextlib.contextmanager
def saves_timed_apart():
    """Times every checkpoint write of `xfer_utils.train` inside the block (yields [wall s, CPU s], summed), so
    that an arm's training time can leave out its final last.pt write: the Trainer arms save nothing."""
    from xfer_utils import train
    spent = [0.0, 0.0]
    orig = train._atomic_save

    def timed_save(obj, path):
        t, c = time.perf_counter(), time.process_time()
        orig(obj, path)
        spent[0] += time.perf_counter() - t
        spent[1] += time.process_time() - c
    train._atomic_save = timed_save
    try:
        yield spent
    finally:
        train._atomic_save = orig


def write_json(path: str | os.PathLike | None, obj: dict) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    print(f"wrote {p}")


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    """Plain-text table: cols = [(key, header, format)]."""
    cells = [[h for _, h, _ in cols]] + [[("-" if r.get(k) is None else format(r[k], f)) for k, _, f in cols]
                                         for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c[i].rjust(w[i]) if i else c[i].ljust(w[i]) for i in range(len(cols))) for c in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


# ------------------------------------------------------------------ task-shaped datasets (real or synthetic)
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"]
# kind -> (project task type, number of labels, the reference implementation's max length: jiant pads
# classification/tagging to 256 and QA to 384; docs/sources.md, Hyper-parameters)
KINDS = {
    "qa": ("span_qa", 0, 384),               # XQuAD question + context, SQuAD-style windows (doc stride 128)
    "pair": ("pair_classification", 6, 256),  # STS pairs, label = round(similarity) (XNLI/PAWS-X-shaped)
    "tagging": ("tagging", len(UPOS), 256),   # UD sentences with UPOS tags (UDPOS-shaped)
    "sentence": ("classification", 2, 256),   # Tatoeba lines, random labels (PAN-X/SST-2-length sentences)
}


def _ds(cols: dict):
    import datasets
    return datasets.Dataset.from_dict(cols)


def _real_rows(kind: str, root: Path, per_lang: int | None, rng: random.Random) -> dict[str, dict]:
    if kind == "qa":
        src = read_xquad(root, per_lang)
        return {lg: {"id": [f"{lg}-{i}" for i in range(len(r))], "question": [x["question"] for x in r],
                     "context": [x["context"] for x in r], "answers": [x["answers"] for x in r]}
                for lg, r in src.items()}
    if kind == "pair":
        src = read_stsb(root, per_lang)
        return {lg: {"text_a": [a for a, _, _ in r], "text_b": [b for _, b, _ in r],
                     "label": [int(round(s)) for _, _, s in r]} for lg, r in src.items()}
    if kind == "tagging":
        src = read_conllu(root, per_lang)
        ix = {t: i for i, t in enumerate(UPOS)}
        return {lg: {"tokens": [w for w, _ in r], "tags": [[ix.get(t, ix["X"]) for t in g] for _, g in r]}
                for lg, r in src.items()}
    if kind == "sentence":
        src = read_tatoeba(root, per_lang)
        return {lg: {"text_a": r, "label": [rng.randint(0, 1) for _ in r]} for lg, r in src.items()}
    raise ValueError(kind)


def _synthetic_rows(kind: str, n_langs: int, per_lang: int, rng: random.Random, vocab: list[str]) -> dict[str, dict]:
    out = {}
    for k in range(n_langs):
        lens = synthetic_lengths(kind, per_lang, rng)
        if kind == "qa":
            qs = [synthetic_sentence(rng, vocab, 10) + "?" for _ in lens]
            cs = [synthetic_sentence(rng, vocab, max(4, n - 14)) for n in lens]
            out[f"s{k}"] = {"id": [f"s{k}-{i}" for i in range(per_lang)], "question": qs, "context": cs,
                            "answers": [{"text": [c.split()[0]], "answer_start": [0]} for c in cs]}
        elif kind == "pair":
            a = [synthetic_sentence(rng, vocab, max(1, (n - 4) // 2)) for n in lens]
            b = [synthetic_sentence(rng, vocab, max(1, n - 4 - (n - 4) // 2)) for n in lens]
            out[f"s{k}"] = {"text_a": a, "text_b": b, "label": [rng.randint(0, 5) for _ in lens]}
        elif kind == "tagging":
            toks = [synthetic_sentence(rng, vocab, max(1, n - 2)).split() for n in lens]
            out[f"s{k}"] = {"tokens": toks, "tags": [[rng.randrange(len(UPOS)) for _ in t] for t in toks]}
        else:
            out[f"s{k}"] = {"text_a": [synthetic_sentence(rng, vocab, max(1, n - 2)) for n in lens],
                            "label": [rng.randint(0, 1) for _ in lens]}
    return out


def load_world(tiny: bool = False, synthetic: bool = False, per_lang: int | None = None, seed: int = 0,
               kinds=tuple(KINDS)) -> dict:
    """{'source', 'tokenizer', 'rows': {kind: {lang: column dict}}} from ../shared/data (or synthetic text).

    The tokenizer is the project's tiny-world builder trained on the benchmark text itself (32k pieces on the real
    text; 2k on the --tiny subset; synthetic words are single pieces)."""
    rng = random.Random(seed)
    root = None if synthetic else shared_data()
    if root is not None:
        rows = {k: _real_rows(k, root, per_lang, rng) for k in kinds}
        if tiny:
            texts = [t for k in rows.values() for cols in k.values() for c in ("question", "context", "text_a",
                                                                                "text_b")
                     for t in cols.get(c, [])]
            texts += [" ".join(w) for cols in rows.get("tagging", {}).values() for w in cols["tokens"]]
            tok = tokenizer_for(texts, 2000, "tiny-shared")
        else:
            tok = tokenizer_for(corpus_texts(root), 32000, "shared")
        source = f"real text from {root}"
    else:
        vocab = _words(random.Random(1234))
        n_langs, n = (2, per_lang or 40) if tiny else (8, per_lang or 1000)
        rows = {k: _synthetic_rows(k, n_langs, n, rng, vocab) for k in kinds}
        tok = word_tokenizer(vocab)
        source = "synthetic (lognormal lengths fitted to ../shared/data, see benchmarks/_common.py SYNTHETIC)"
    return {"source": source, "tokenizer": tok, "rows": rows}


def features_for(kind: str, cols: dict, tokenizer, train: bool = True) -> list[dict]:
    """The project's features (xfer_utils.features.build) for one kind's column dict."""
    from xfer_utils import features
    task_type, _, max_length = KINDS[kind]
    return features.build(task_type, _ds(cols), tokenizer, max_length, train=train)


def merge_langs(rows_by_lang: dict[str, dict], n: int | None, seed: int = 0) -> dict:
    """All languages' rows in one column dict, shuffled (seeded) and cut to `n` rows (training data)."""
    keys = list(next(iter(rows_by_lang.values())))
    allrows = [tuple(cols[k][i] for k in keys) for cols in rows_by_lang.values()
               for i in range(len(cols[keys[0]]))]
    random.Random(seed).shuffle(allrows)
    if n:
        allrows = allrows[:n]
    return {k: [r[j] for r in allrows] for j, k in enumerate(keys)}


def command_line(script: str, argv=None) -> str:
    """The command that produced a result, with the thread-count environment it ran under."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "XFER_SHARED_DATA") if os.environ.get(k))
    args = " ".join(argv if argv is not None else sys.argv[1:])
    return f"{env + ' ' if env else ''}python benchmarks/{script}.py {args}".strip()


# ------------------------------------------------------------------ the HF Trainer, run the careful way
TRAINER_KEYS = ("input_ids", "labels", "token_type_ids", "start_positions", "end_positions")


def trainer_run(net, task: str, feats: list[dict], pad_id: int, batch: int, steps: int, seed: int, out_dir: str,
                lr: float = 1e-5, bf16: bool = False, use_cpu: bool = False, order: list[int] | None = None) -> dict:
    """`net` (a models.MultiTaskModel) trained on `feats` by transformers' Trainer as a careful user would run it:
    dynamic padding (pad to the batch's longest: the same `features.collate` the project's loop uses, rounded to a
    multiple of 8 on a GPU), length-grouped sampling (train_sampling_strategy="group_by_length"), fused AdamW and
    the protocol's optimizer settings, no saving, no evaluation, no logging. Timed from the first to the last
    optimizer step's end (a TrainerCallback; Trainer's own setup left out, as TrainResult.seconds leaves out the
    project's). `order`: example indices to draw in this order instead of Trainer's length-grouped sampler (the
    project loop's batches, `project_order`: both loops then compute the same batches). Returns seconds, steps,
    real and computed tokens of the timed steps (wall and CPU seconds)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from xfer_utils import features

    cuda = torch.cuda.is_available() and not use_cpu
    counts = {"tokens": 0, "computed": 0, "batches": 0}

    def collate(fs):
        return features.collate(fs, pad_id, multiple_of=8 if cuda else 1)

    class Wrapped(torch.nn.Module):       # Trainer calls model(**batch) and reads outputs["loss"]
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **b):
            # counted here, not in collate: the dataloader may collate a batch that no step trains on
            counts["tokens"] += int(b["attention_mask"].sum())
            counts["computed"] += b["attention_mask"].numel()
            counts["batches"] += 1
            return self.inner(task, b)

    class Clock(TrainerCallback):         # wall and CPU time from the first step's start to the last step's end
        t0 = t1 = c0 = c1 = None

        def on_step_begin(self, args, state, control, **kw):
            if Clock.t0 is None:
                Clock.t0, Clock.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            Clock.t1, Clock.c1 = time.perf_counter(), time.process_time()

    ds = [{k: f[k] for k in TRAINER_KEYS if k in f} for f in feats]
    args = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=batch, max_steps=steps, learning_rate=lr,
        weight_decay=0.01, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear", max_grad_norm=1.0,
        optim="adamw_torch_fused", adam_epsilon=1e-8, train_sampling_strategy="group_by_length", seed=seed,
        bf16=bf16, use_cpu=not cuda, save_strategy="no", eval_strategy="no", logging_strategy="no",
        report_to="none", disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0,
        dataloader_pin_memory=cuda)
    class Ordered(Trainer):
        def _get_train_sampler(self, *a, **k):
            return list(order)

    trainer = (Trainer if order is None else Ordered)(model=Wrapped(net), args=args, train_dataset=ds,
                                                      data_collator=collate, callbacks=[Clock()])
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)      # it prints the final metrics dict to stdout
    trainer.train()
    return {"seconds": Clock.t1 - Clock.t0, "cpu_seconds": Clock.c1 - Clock.c0,
            "steps": trainer.state.global_step, "tokens": counts["tokens"],
            "computed_tokens": counts["computed"], "batches": counts["batches"]}


def project_order(feats: list[dict], batch: int, steps: int, seed: int) -> list[int]:
    """The example order of the project loop's first `steps` batches (train.schedule with the loop's settings: one
    process, no accumulation, length grouping), for `trainer_run(order=...)`."""
    from xfer_utils import train
    sched = train.schedule({"t": [f["length"] for f in feats]}, batch, 1, 1.0, seed, True, max_steps=steps)
    return [i for _, mbs in sched for mb in mbs for i in mb]
