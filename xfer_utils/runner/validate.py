"""One plan-time validator of parameter *values* (plans.validate checks their types): task names, languages,
benchmark, intermediate labels, model names and the BUCC corpus. The runner calls `check_plan` before any notebook
starts (`xfer run`, and so `xfer rehearse`); the phase functions of runs.py call the same `check_run` at their
start, so a notebook run by hand fails the same way. Every failure is one sentence naming the valid choices.

Which checks apply depends on what the run does, read from its notebook (the phase function it calls):
``10_intermediate`` trains an intermediate label, ``20_target`` a target task, ``30_retrieval`` evaluates a
retrieval task; for any other notebook the values it declares are checked key by key (``benchmark``, ``targets``,
``model``). Phase cycles (``needs:``/``after:``) are caught earlier, when plans.expand orders the phases.

>>> check_run("target", {"target_task": "xnlii"})
Traceback (most recent call last):
...
ValueError: target_task 'xnlii' is not a trainable target task; valid target tasks: mlqa, panx, pawsx, stsb_cross, stsb_multi_mt, tydiqa, udpos, xcopa, xnli, xquad
>>> check_run("intermediate", {"intermediate": "mnli@xx"})
Traceback (most recent call last):
...
ValueError: intermediate 'mnli@xx': task 'mnli_mt' has no language 'xx'; valid languages: ar, bg, de, el, en, es, fr, hi, ru, sw, th, tr, ur, vi, zh
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .. import tasks

KINDS = ("intermediate", "target", "retrieval")
NOTEBOOK_KINDS = {"10_intermediate": "intermediate", "20_target": "target", "30_retrieval": "retrieval"}
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
BUCC_SOURCE = "https://comparable.limsi.fr/bucc2018/"
_GRAMMAR = ("a task name, 'a+b' (multi-task), 'multitask' (the paper's nine tasks), 'a+mlm' (MLM co-training), "
            "'mnli@<lang>' (translated data)")


def trainable_targets() -> list[str]:
    return sorted(n for n in tasks.PUBLIC if tasks.get(n).family == "target" and tasks.get(n).train_task)


def _intermediate_names() -> list[str]:
    return [n for n in tasks.PUBLIC if tasks.get(n).family == "intermediate"]


def check_intermediate(label, allow_none: bool = False) -> None:
    """An intermediate label of the grammar (tasks.parse_intermediate); `allow_none`: 'none' (the baseline) too."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"intermediate {label!r} is empty; give {_GRAMMAR}" + (", or 'none'" if allow_none else ""))
    if label == tasks.NO_INTERMEDIATE:
        if allow_none:
            return
        raise ValueError("intermediate 'none' has nothing to train; choose " + _GRAMMAR + " from: "
                         + ", ".join(_intermediate_names()))
    try:
        tasks.parse_intermediate(label)
    except ValueError as e:
        msg = str(e)
        if msg.startswith("unknown task"):     # name the intermediate tasks, not every task of the registry
            bad = msg.split("'")[1]
            msg = f"unknown intermediate task {bad!r}; valid tasks: {', '.join(_intermediate_names())}"
        raise ValueError(f"intermediate {label!r}: {msg}") from None


def check_benchmark(benchmark) -> None:
    if benchmark not in tasks.BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(tasks.BENCHMARKS)}")


def check_languages(task: str, languages) -> None:
    if languages in (None, "", []):
        return
    if not isinstance(languages, (list, tuple)):
        raise ValueError(f"languages must be a list of language codes, got {languages!r}; valid languages of "
                         f"{task}: {', '.join(tasks.all_languages(task))}")
    for lg in languages:
        tasks.check_language(task, lg)


def _tiny_names() -> set[str]:
    from ..world import tiny, tiny_families
    return set(tiny.MODEL_SIZES) | set(tiny_families.NAMES)


# Ladder families whose tokenizer has no mask token (pre-trained with span corruption): no MLM co-training.
NO_MASK_TOKEN_FAMILIES = ("mt5-encoder",)


def check_mlm_model(model) -> None:
    """'+mlm' needs a tokenizer with a mask token (features.require_mask_token says the same at run time): refuse
    the ladder's mT5 encoders (and their tiny stand-in) at plan time, before any run of the plan starts."""
    from .. import ladder
    m = ladder.lookup(model) if isinstance(model, str) else None
    if model == "tiny-mt5" or (m is not None and m.family in NO_MASK_TOKEN_FAMILIES):
        raise ValueError(f"MLM co-training ('+mlm') needs a tokenizer with a mask token and {model} (an mT5 "
                         f"encoder, pre-trained with span corruption) has none: drop '+mlm' from the intermediate "
                         f"label for this model")


def check_model(name, what: str = "model") -> None:
    """A hub id (org/name), a model of the ladder or the tiny world (by name), or an existing folder."""
    from .. import ladder
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} is empty; give a hub id (org/name), a ladder or tiny model name, or a folder")
    from ..files import REPO   # notebooks and the runner work in the repo root: relative folders are read there
    if name in _tiny_names() or Path(name).expanduser().is_dir() or (REPO / name).is_dir():
        return
    if "/" not in name and ladder.lookup(name) is not None:
        return
    if HUB_ID.fullmatch(name) and not name.startswith((".", "~")):
        return
    raise ValueError(f"{what} {name!r} is neither a hub id (org/name), a model of the ladder or the tiny world, nor "
                     f"an existing folder; valid names: {', '.join(sorted(_tiny_names() | set(ladder.names())))}, "
                     f"any hub id, or a checkpoint folder")


def bucc_corpus(bucc_path: str = "", data_dir="") -> Path | None:
    """Where the original BUCC 2018 corpora are: the `bucc_path` parameter, else the data_dir mirror's
    ``user/bucc2018`` (the tiny world has a fixture corpus; 'tiny' counts before the world is built), else
    XFER_BUCC_PATH (see data.user_path); None when there is none."""
    if bucc_path:
        return Path(bucc_path)
    if data_dir == "tiny":
        from ..files import tiny_dir
        return tiny_dir() / "data" / "user" / "bucc2018"
    from .. import data
    return data.user_path(tasks.get("bucc2018"), data.data_dir_from(data_dir), required=False)


def check_bucc(languages, bucc_path: str = "", data_dir="", bucc_proxy: bool = False) -> None:
    """BUCC needs the original corpora (or an explicit opt-in to the gold-pairs-only proxy)."""
    if bucc_proxy:
        return
    path = bucc_corpus(bucc_path, data_dir)
    if path is None:
        raise ValueError(f"bucc2018 needs the original BUCC 2018 corpora (<lang>-en.{{sample,training}}.{{<lang>,en,"
                         f"gold}}): download them from {BUCC_SOURCE} and set XFER_BUCC_PATH or the bucc_path "
                         f"parameter to their folder, or set bucc_proxy: true to score the hub's gold-pairs-only "
                         f"proxy (reported under its own split, never as BUCC)")
    if data_dir == "tiny" and not bucc_path and not path.exists():
        return       # the tiny world is built at the run's start and writes its fixture corpus there
    for lg in languages or tasks.languages("bucc2018"):
        names = [f"{lg}-en.{part}.{ext}" for part in ("sample", "training") for ext in (lg, "en", "gold")]
        missing = [n for n in names if not (path / n).exists() and not (path / f"{lg}-en" / n).exists()]
        if missing:
            raise ValueError(f"the BUCC 2018 folder {path} lacks {', '.join(missing)}; it needs "
                             f"<lang>-en.{{sample,training}}.{{<lang>,en,gold}} for each language (from "
                             f"{BUCC_SOURCE}), or set bucc_proxy: true to score the gold-pairs-only proxy")


USER_FILES = {"ccg": ("train.tsv", "dev.tsv", "test.tsv")}


def check_user_corpus(task: str, data_dir="", languages=()) -> None:
    """Data that is not on the hub (CCGbank; LASER Tatoeba files for the XTREME-R extras) must be where data.load
    will look: the data_dir mirror's user/<task>, else the task's environment variable."""
    from .. import data
    t = tasks.get(task)
    if task == "tatoeba":
        extra = [lg for lg in languages if (t.source_for(lg) or t.source).hub_id == "user"]
        if not extra:
            return
        files = [f"tatoeba.{tasks.TATOEBA_CODES[lg]}-eng.{ext}" for lg in extra
                 for ext in (tasks.TATOEBA_CODES[lg], "eng")]
    else:
        files = list(USER_FILES.get(task, ()))
    if data_dir == "tiny":
        return       # the tiny world carries every user-path fixture (built at the run's start)
    path = data.user_path(t, data.data_dir_from(data_dir), required=False)
    missing = files if path is None else [f for f in files if not (path / f).exists()]
    if missing:
        where = f"{t.user_path} is not set" if path is None else f"{path} lacks {', '.join(missing)}"
        raise ValueError(f"{task} data is not on the hub and {where}; set {t.user_path} to the folder holding "
                         f"{', '.join(files)} ({t.note})")


def check_mlm_text(source, data_dir="") -> None:
    """MLM co-training text (data.mlm_text): 'wikipedia' (the hub, or a mirror holding it), a folder of <lang>.txt
    files, or '' / 'tiny' for the data_dir mirror's own user/mlm."""
    from ..files import REPO
    if source == "wikipedia" or (source in ("", "tiny") and data_dir):
        return
    if source not in ("", "tiny") and (Path(source).is_dir() or (REPO / source).is_dir()):
        return
    raise ValueError(f"mlm_text {source!r} is no MLM text source here; valid: 'wikipedia', a folder of <lang>.txt "
                     f"files, or '' with a data_dir mirror that has user/mlm (the tiny world)")


def check_run(kind: str | None, params: dict, corpora: bool = True) -> None:
    """Check one run's parameter values; `kind`: 'intermediate', 'target', 'retrieval' or None (only the values
    present are checked key by key); `corpora`: also check that user-provided corpora (BUCC) are there. Raises
    ValueError (one sentence) on the first bad value."""
    p = params
    if kind not in KINDS + (None,):
        raise ValueError(f"unknown run kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if "benchmark" in p:
        check_benchmark(p["benchmark"])
    if kind is not None and "model" in p:   # analysis notebooks' `model` filters the table: any label
        check_model(p["model"])
    if kind == "intermediate":
        check_intermediate(p.get("intermediate"), allow_none=False)
        if any(name == "mlm" for name, _ in tasks.parse_intermediate(p["intermediate"])):
            check_mlm_model(p.get("model"))
        if corpora:
            for name, _ in tasks.parse_intermediate(p["intermediate"]):
                if tasks.get(name).user_path:
                    check_user_corpus(name, p.get("data_dir", ""))
                if name == "mlm":
                    check_mlm_text(p.get("mlm_text", ""), p.get("data_dir", ""))
    elif kind == "target":
        task = p.get("target_task")
        if task not in trainable_targets():
            raise ValueError(f"target_task {task!r} is not a trainable target task; valid target tasks: "
                             f"{', '.join(trainable_targets())}")
        check_intermediate(p.get("intermediate", tasks.NO_INTERMEDIATE), allow_none=True)
        check_languages(task, p.get("languages"))
    elif kind == "retrieval":
        task = p.get("task")
        valid = tasks.RETRIEVAL_TASKS + tasks.EMBEDDING_TASKS
        if task not in valid:
            raise ValueError(f"task {task!r} is not a retrieval task; valid tasks: {', '.join(valid)}")
        check_intermediate(p.get("intermediate", tasks.NO_INTERMEDIATE), allow_none=True)
        check_languages(task, p.get("languages"))
        if task == "bucc2018" and corpora:
            check_bucc(p.get("languages"), p.get("bucc_path") or "", p.get("data_dir", ""),
                       bool(p.get("bucc_proxy", False)))
        elif corpora and task == "tatoeba":
            check_user_corpus(task, p.get("data_dir", ""),
                              p.get("languages") or tasks.languages(task, p.get("benchmark", "xtreme")))
    else:
        for t in p.get("targets") or []:
            if t not in tasks.REGISTRY:
                raise ValueError(f"targets: unknown task {t!r}; valid tasks: {', '.join(tasks.PUBLIC)}")


def kind_of_notebook(notebook) -> str | None:
    return NOTEBOOK_KINDS.get(Path(notebook).stem)


def check_plan(plan, runs=None, corpora: bool = True) -> None:
    """Every run's values (after plans.validate filled `run.resolved`), before anything runs: one ValueError naming
    the run and the first bad value (and how many more runs are bad). `corpora=False` (a dry run, which only
    prices the plan) leaves out the check that user-provided corpora are present."""
    errors = []
    for run in plan.runs if runs is None else runs:
        try:
            check_run(kind_of_notebook(run.notebook), run.resolved or run.params, corpora)
        except ValueError as e:
            errors.append(f"run {run.run_id!r} (phase {run.phase!r}): {e}")
    if errors:
        more = f" (and {len(errors) - 1} more run{'s' * (len(errors) > 2)} with bad values)" if len(errors) > 1 else ""
        raise ValueError(errors[0] + more + "; nothing was run")


# ---------------------------------------------------------------- at run time: is the model reachable at all?
def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def local_models() -> list[str]:
    """Model names usable without the network: the tiny world's and those in the Hugging Face cache."""
    from ..world import tiny
    names = list(tiny.MODEL_SIZES)
    try:
        from huggingface_hub import scan_cache_dir
        names += sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:   # noqa: BLE001 - no cache folder yet, or an unreadable one: nothing cached to offer
        pass
    return names


def check_model_available(name: str) -> None:
    """A model that is neither a folder nor cached, with the hub unreachable (HF_HUB_OFFLINE, or no connection
    within 3 s), fails at once naming the local models; otherwise the hub client would retry for about a minute."""
    if not name or Path(name).exists():
        return
    try:
        from huggingface_hub import try_to_load_from_cache
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except Exception:   # noqa: BLE001 - not a valid repo id: the hub client's own message follows
        return
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if not offline and _hub_reachable():
        return
    raise ValueError(f"model {name!r} is neither a local folder nor in the Hugging Face cache, and the hub is "
                     f"{'switched off (HF_HUB_OFFLINE)' if offline else 'unreachable'}; local models: "
                     f"{', '.join(local_models())} (`xfer models` lists the ladder with sizes)")
