"""The phases as functions of a typed parameter object (docs/architecture.md "A phase").

Each dataclass mirrors its notebook's ``parameters`` cell field for field, default for default
(tests/test_phase_params.py parses the cells and compares), so a parameter cannot be declared in a notebook and
silently dropped on the way to the phase. The notebook builds the object from its namespace in one line and
passes it on in one call::

    p = params.Intermediate.from_namespace(globals())
    summary = params.intermediate(p)

Defaults that mean "protocol default" (0, -1, '') are documented in the notebooks' parameters cells; they reach
the phase functions of runs.py through runs.overrides, which leaves them out so the task registry's values apply.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .. import files
from . import env, launch, runs


@dataclass
class _Run:
    """Where a run reads and writes; the runner sets plan, run_id, run_dir and checkpoint_dir."""
    data_dir: str = "tiny"
    seed: int = 1
    plan: str = "manual"
    run_id: str = ""
    run_dir: str = ""
    checkpoint_dir: str = ""

    @classmethod
    def from_namespace(cls, ns: dict):
        """The object from a notebook's globals: every field must be there (a missing one names the others)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in ns]
        if missing:
            raise ValueError(f"{cls.__name__} needs {', '.join(missing)} in the notebook's parameters; its "
                             f"parameters are: {', '.join(names)}")
        return cls(**{n: ns[n] for n in names})

    def default_id(self) -> str:
        raise NotImplementedError

    def paths(self, phase: str) -> tuple[str, str, str]:
        """(run_id, run_dir, checkpoint_dir), defaults filled in (files.run_paths)."""
        return files.run_paths(phase, self.run_id, self.plan, self.run_dir, self.checkpoint_dir, self.default_id())


@dataclass
class _Training(_Run):
    """Hyper-parameters of a training phase; 0 / -1 mean the task's protocol default."""
    lr: float = 0.0
    epochs: float = 0.0
    batch_size: int = 0
    per_device_batch: int = 0
    max_steps: int = -1
    eval_every: int = 0
    eval_examples: int = 500
    patience: int = 0
    checkpoint_every: int = 0
    precision: str = "auto"
    group_by_length: bool = True
    pad_to_max_length: bool = False
    packing: str = "auto"
    torch_compile: bool = False
    max_train_examples: int = -1
    strategy: str = "auto"
    n_processes: int = 1
    accelerate_config: str = ""

    def overrides(self) -> dict:
        return runs.overrides(lr=self.lr, epochs=self.epochs, batch_size=self.batch_size,
                              per_device_batch=self.per_device_batch, max_steps=self.max_steps,
                              eval_every=self.eval_every, patience=self.patience,
                              checkpoint_every=self.checkpoint_every)

    def common(self) -> dict:
        return dict(seed=self.seed, data_dir=env.resolve_data_dir(self.data_dir),
                    max_train_examples=self.max_train_examples, eval_examples=self.eval_examples,
                    precision=self.precision, group_by_length=self.group_by_length,
                    pad_to_max_length=self.pad_to_max_length, packing=self.packing,
                    compile=self.torch_compile)   # the notebook's name: `compile` would shadow the builtin there


@dataclass
class Intermediate(_Training):
    """notebooks/10_intermediate.ipynb"""
    model: str = "tiny-xlmr-s"
    intermediate: str = "mnli"
    mlm_text: str = ""
    mlm_languages: list = field(default_factory=list)
    sampling_temperature: float = 1.0
    examples_cap: int = 0
    mlm_share: float = 0.0

    def default_id(self) -> str:
        return f"{runs.alias(self.model)}__{self.intermediate}__s{self.seed}"


@dataclass
class Target(_Training):
    """notebooks/20_target.ipynb"""
    model: str = "tiny-xlmr-s"
    init_from: str = ""
    intermediate: str = "none"
    target_task: str = "xnli"
    benchmark: str = "xtreme"
    languages: list = field(default_factory=list)
    max_eval_examples: int = -1
    eval_splits: list = field(default_factory=lambda: ["validation", "test"])
    eval_batch_size: int = 64

    def default_id(self) -> str:
        return f"{runs.alias(self.model)}__{self.intermediate}__{self.target_task}__s{self.seed}"


@dataclass
class Retrieval(_Run):
    """notebooks/30_retrieval.ipynb"""
    model: str = "tiny-xlmr-s"
    init_from: str = ""
    intermediate: str = "none"
    task: str = "tatoeba"
    benchmark: str = "xtreme"
    languages: list = field(default_factory=list)
    layer: int = -1
    bucc_path: str = ""
    bucc_proxy: bool = False
    max_examples: int = -1
    batch_size: int = 64

    def default_id(self) -> str:
        return f"{runs.alias(self.model)}__{self.intermediate}__{self.task}__s{self.seed}"


def intermediate(p: Intermediate, log=print) -> dict:
    """Phase 1 for the notebook: every parameter of `p` reaches runs.intermediate (through launch.run_phase, which
    applies the memory strategy and the process count)."""
    run_id, run_dir, checkpoint_dir = p.paths("intermediate")
    return launch.run_phase(
        runs.intermediate, strategy=p.strategy, n_processes=p.n_processes, config=p.accelerate_config, log=log,
        model=env.resolve_model(p.model), model_label=p.model, intermediate=p.intermediate, run_id=run_id,
        plan=p.plan, run_dir=run_dir, checkpoint_dir=checkpoint_dir, mlm_text=p.mlm_text,
        mlm_languages=p.mlm_languages or None, sampling_temperature=p.sampling_temperature,
        examples_cap=p.examples_cap, mlm_share=p.mlm_share, **p.common(), **p.overrides())


def target(p: Target, languages: list[str], log=print) -> dict:
    """Phase 2 + 3 for the notebook: `languages` is the list the notebook checked (p.languages or the benchmark's)."""
    run_id, run_dir, checkpoint_dir = p.paths("target")
    return launch.run_phase(
        runs.target, strategy=p.strategy, n_processes=p.n_processes, config=p.accelerate_config, log=log,
        model=env.resolve_model(p.model), model_label=p.model, target_task=p.target_task, run_id=run_id,
        plan=p.plan, run_dir=run_dir, checkpoint_dir=checkpoint_dir, init_from=p.init_from,
        intermediate=p.intermediate, languages=languages, benchmark=p.benchmark,
        max_eval_examples=p.max_eval_examples, eval_batch_size=p.eval_batch_size, eval_splits=p.eval_splits,
        **p.common(), **p.overrides())


def retrieval(p: Retrieval, languages: list[str], log=print) -> dict:
    """BUCC / Tatoeba / cross-lingual STS straight from an encoder."""
    run_id, run_dir, checkpoint_dir = p.paths("retrieval")
    return runs.retrieval(
        env.resolve_model(p.model), p.task, model_label=p.model, run_id=run_id, plan=p.plan, run_dir=run_dir,
        checkpoint_dir=checkpoint_dir, init_from=p.init_from, intermediate=p.intermediate, languages=languages,
        benchmark=p.benchmark, layer=p.layer, data_dir=env.resolve_data_dir(p.data_dir), bucc_path=p.bucc_path,
        bucc_proxy=p.bucc_proxy, max_examples=p.max_examples, batch_size=p.batch_size, seed=p.seed, log=log)


def as_dict(p) -> dict:
    return asdict(p)
