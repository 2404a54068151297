"""data.load on the offline mirror: the mirror's schemas equal the hub's (a table transcribed from the loading
scripts, docs/sources.md, Hub schemas; independent of the builder), and every (task, split, language) of the registry
loads with the normalized fields of its type."""
import pyarrow.parquet as pq
import pytest

from xfer_utils import data, tasks

S, I32, F32, B = "string", "int32", "float32", "bool"
NLI = ["entailment", "neutral", "contradiction"]
UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
QA_XT = {"answers": {"answer_start": [I32], "text": [S]}}
# (hub id, config, split file) -> columns in declared order with types; ClassLabel as ("ClassLabel", names).
SCHEMAS = {
    # GLUE
    ("nyu-mll/glue", "mnli"): {"premise": S, "hypothesis": S, "label": ("ClassLabel", NLI), "idx": I32},
    ("nyu-mll/glue", "qqp"): {"question1": S, "question2": S, "label": ("ClassLabel", ["not_duplicate", "duplicate"]),
                              "idx": I32},
    ("nyu-mll/glue", "sst2"): {"sentence": S, "label": ("ClassLabel", ["negative", "positive"]), "idx": I32},
    # SQuAD
    ("rajpurkar/squad", "plain_text"): {"id": S, "title": S, "context": S, "question": S,
                                        "answers": {"text": [S], "answer_start": [I32]}},
    # English intermediate tasks
    ("Rowan/hellaswag", "default"): {"ind": I32, "activity_label": S, "ctx_a": S, "ctx_b": S, "ctx": S,
                                     "endings": [S], "source_id": S, "split": S, "split_type": S, "label": S},
    ("allenai/cosmos_qa", "default"): {"id": S, "context": S, "question": S, "answer0": S, "answer1": S,
                                       "answer2": S, "answer3": S, "label": I32},
    ("tau/commonsense_qa", "default"): {"id": S, "question": S, "question_concept": S,
                                        "choices": {"label": [S], "text": [S]}, "answerKey": S},
    ("facebook/anli", "plain_text"): {"uid": S, "premise": S, "hypothesis": S, "label": ("ClassLabel", NLI),
                                      "reason": S},
    ("stanfordnlp/snli", "plain_text"): {"premise": S, "hypothesis": S, "label": ("ClassLabel", NLI)},
    # follow-up study datasets
    ("cambridgeltl/xcopa", "et"): {"premise": S, "choice1": S, "choice2": S, "question": S, "label": I32,
                                   "idx": I32, "changed": B},
    ("PhilipMay/stsb_multi_mt", "de"): {"sentence1": S, "sentence2": S, "similarity_score": F32},
    ("allenai/social_i_qa", "default"): {"context": S, "question": S, "answerA": S, "answerB": S, "answerC": S,
                                         "label": S},
    ("aps/super_glue", "copa"): {"premise": S, "choice1": S, "choice2": S, "question": S, "idx": I32,
                                 "label": ("ClassLabel", ["choice1", "choice2"])},
    # google/xtreme
    ("google/xtreme", "XNLI"): {"language": S, "sentence1": S, "sentence2": S, "gold_label": S},
    ("google/xtreme", "PAWS-X.de"): {"sentence1": S, "sentence2": S, "label": S},
    ("google/xtreme", "udpos.Afrikaans"): {"tokens": [S], "pos_tags": [("ClassLabel", UPOS)]},
    ("google/xtreme", "PAN-X.de"): {"tokens": [S], "ner_tags": [("ClassLabel", NER)], "langs": [S]},
    ("google/xtreme", "XQuAD.th"): {"id": S, "context": S, "question": S, **QA_XT},
    ("google/xtreme", "MLQA.zh.zh"): {"id": S, "title": S, "context": S, "question": S, **QA_XT},
    ("google/xtreme", "tydiqa"): {"id": S, "title": S, "context": S, "question": S, **QA_XT},
    ("google/xtreme", "bucc18.de"): {"source_sentence": S, "target_sentence": S, "source_lang": S, "target_lang": S},
    ("google/xtreme", "tatoeba.afr"): {"source_sentence": S, "target_sentence": S, "source_lang": S,
                                       "target_lang": S},
}
# Split names per repo/config (docs/sources.md, Hub schemas).
SPLITS = {("nyu-mll/glue", "mnli"): {"train", "validation_matched", "validation_mismatched"},
          ("PhilipMay/stsb_multi_mt", "de"): {"train", "dev", "test"},
          ("google/xtreme", "XQuAD.th"): {"validation"}, ("google/xtreme", "tatoeba.afr"): {"validation"},
          ("google/xtreme", "udpos.Thai"): {"test"}, ("google/xtreme", "udpos.Kazakh"): {"train", "test"},
          ("facebook/anli", "plain_text"): {f"{s}_r{r}" for s in ("train", "dev", "test") for r in (1, 2, 3)}}


def _spec(feature):
    from datasets import ClassLabel, List, Value
    if isinstance(feature, ClassLabel):
        return ("ClassLabel", list(feature.names))
    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, List):
        return [_spec(feature.feature)]
    if isinstance(feature, dict):
        return {k: _spec(v) for k, v in feature.items()}
    raise AssertionError(f"unexpected feature {feature!r}")


def _files(root, hub_id, config):
    return sorted((root / hub_id / config).rglob("*.parquet"))


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_mirror_schema_equals_the_hub_schema(world, key):
    from datasets import Features
    files = _files(world["data"], *key)
    assert files, f"no parquet files for {key}"
    for f in files:
        feats = Features.from_arrow_schema(pq.read_schema(f))
        assert list(feats) == list(SCHEMAS[key]), f"column order of {f}"
        assert {k: _spec(v) for k, v in feats.items()} == SCHEMAS[key]


@pytest.mark.parametrize("key", sorted(SPLITS))
def test_mirror_split_names(world, key):
    names = {f.stem.split("-")[0] if f.parent.name == key[1] else f.parent.name for f in _files(world["data"], *key)}
    assert names == SPLITS[key]


CASES = [(t, s, lg) for t in sorted(tasks.REGISTRY) if t != "mlm" for lg in tasks.all_languages(t)
         for s in tasks.splits(t, lg)]


@pytest.mark.parametrize("task", sorted({c[0] for c in CASES}))
def test_every_split_and_language_loads_normalized(world, task):
    typ = tasks.get(task).type
    for t, split, lg in (c for c in CASES if c[0] == task):
        ds = data.load(t, split, lg, data_dir=world["data"])
        assert ds.column_names == list(data.NORMALIZED_FIELDS[typ]), (t, split, lg)
        assert len(ds) > 0
        row = ds[0]
        if typ in ("classification", "pair_classification", "multiple_choice") and split != "test":
            assert min(ds["label"]) >= 0, "unlabeled rows must never reach a loss (docs/sources.md, Label encodings)"
        if typ == "multiple_choice":
            assert len(row["choices"]) == tasks.get(t).n_choices
        if typ == "span_qa":
            for ctx, ans in zip(ds["context"][:20], ds["answers"][:20]):
                for s, a in zip(ans["answer_start"], ans["text"]):
                    assert ctx[s:s + len(a)] == a
        if typ == "tagging":
            assert len(row["tokens"]) == len(row["tags"]) and min(row["tags"]) >= 0


def test_label_encodings_are_decoded_to_ints(world):
    d = world["data"]
    # XNLI gold_label strings -> the NLI label space; the mirror stores the string
    x = data.load("xnli", "test", "de", data_dir=d)
    raw = pq.read_table(d / "google/xtreme/XNLI/test-00000-of-00001.parquet").to_pylist()
    de = [r for r in raw if r["language"] == "de"]
    assert list(x["label"]) == [NLI.index(r["gold_label"]) for r in de]
    # SIQA's 1-based strings, CommonsenseQA letters, HellaSwag strings
    siqa = pq.read_table(d / "allenai/social_i_qa/default/train/0000.parquet").to_pylist()
    assert list(data.load("siqa", "train", data_dir=d)["label"]) == [int(r["label"]) - 1 for r in siqa]
    csqa = pq.read_table(next((d / "tau/commonsense_qa/default").glob("validation-*"))).to_pylist()
    assert list(data.load("commonsenseqa", "validation", data_dir=d)["label"]) == ["ABCDE".index(r["answerKey"])
                                                                                  for r in csqa]


def test_unlabeled_rows_are_dropped(world):
    raw = pq.read_table(next((world["data"] / "stanfordnlp/snli/plain_text").glob("train-*"))).to_pylist()
    n_labeled = sum(r["label"] >= 0 for r in raw)
    assert n_labeled < len(raw)
    assert len(data.load("snli", "train", data_dir=world["data"])) == n_labeled
    # ANLI+ = ANLI R1-R3 + MNLI + SNLI (labeled rows only), one label space
    parts = sum(len(data.load(t, "train", data_dir=world["data"])) for t in ("anli_r1", "anli_r2", "anli_r3", "mnli"))
    assert len(data.load("anli_plus", "train", data_dir=world["data"])) == parts + n_labeled


def test_ud27_labels_are_mapped_by_name(world):
    # hub universal_dependencies orders upos differently (NOUN first); XTREME's order must come out
    ds = data.load("udpos", "test", "pl", data_dir=world["data"])
    raw = pq.read_table(world["data"] / "universal-dependencies/universal_dependencies/pl_lfg/test/0000.parquet")
    from datasets import Features
    names = Features.from_arrow_schema(raw.schema)["upos"].feature.names
    assert names[0] == "NOUN"
    first = raw.to_pylist()[0]   # pl_lfg is pl's first treebank; multiword ranges (head "None") are not words
    assert [UPOS[t] for t in ds[0]["tags"]] == [names[t] for t, h in zip(first["upos"], first["head"]) if h != "None"]


def test_max_examples_is_a_seeded_subset(world):
    a = data.load("mnli", "train", data_dir=world["data"], max_examples=20, seed=3)
    b = data.load("mnli", "train", data_dir=world["data"], max_examples=20, seed=3)
    assert len(a) == 20 and a["text_a"] == b["text_a"]


@pytest.mark.parametrize("call, message", [
    (lambda d: data.load("xnli", "train", "de", data_dir=d), "task 'xnli' (de) has no split 'train'"),
    (lambda d: data.load("xnli", "test", "xx", data_dir=d), "task 'xnli' has no language 'xx'; valid languages"),
    (lambda d: data.load("mnlii", "train", data_dir=d), "unknown task 'mnlii'; valid tasks"),
])
def test_bad_input_fails_before_any_io(tmp_path, call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(tmp_path / "does-not-exist")


def test_missing_mirror_config_names_the_fix(tmp_path):
    (tmp_path / "google/xtreme").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="xtreme"):
        data.load("pawsx", "test", "de", data_dir=tmp_path)


def test_ccg_without_its_licensed_data_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("XFER_CCG_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="XFER_CCG_PATH.*LDC"):
        data.load("ccg", "train", data_dir=tmp_path)


def test_user_path_data_reads_ccg_and_laser_tatoeba(world):
    ccg = data.load("ccg", "train", data_dir=world["data"])
    names = data.label_names("ccg", world["data"])
    assert names[-1] == "<other>" and max(max(t) for t in ccg["tags"]) < len(names)
    tat = data.load("tatoeba", "test", "pl", data_dir=world["data"])   # XTREME-R extra: LASER files, not the hub
    assert tat.column_names == ["source", "target", "source_id", "target_id"] and len(tat) > 0


def test_translated_intermediate_data(world):
    ds = data.load("mnli_mt", "train", "de", data_dir=world["data"])
    assert ds.column_names == ["text_a", "text_b", "label"] and len(ds) > 100


def test_a_rebuilt_mirror_is_never_served_from_a_stale_cache(tmp_path):
    """datasets' shared cache keys local folders by path; a mirror rebuilt in place must still load its new data."""
    from xfer_utils.world import tiny
    small = {"train": 6, "validation": 4, "test": 4}
    tiny.build_data(tmp_path / "data", seed=1, sizes=small)
    first = data.load("sst2", "train", data_dir=tmp_path / "data")["text_a"]
    import shutil
    shutil.rmtree(tmp_path / "data")
    tiny.build_data(tmp_path / "data", seed=2, sizes=small)
    assert data.load("sst2", "train", data_dir=tmp_path / "data")["text_a"] != first
