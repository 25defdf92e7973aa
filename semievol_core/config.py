"""The round's configuration: pydantic models, strict about unknown keys so a typo is an error."""
from __future__ import annotations

import math
import os
import re
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .answers import answer_key
from .errors import InputError, path_problem

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # used with fullmatch: '$' would let a final '\n' by
# Seeds reach numpy (vLLM seeds its engine with them, transformers.set_seed for LLaMA-Factory), which takes
# 0 .. 2**32-1; seeds derived from them (per chunk, per batch) are folded back into that range where derived.
SEED_MAX = 2**32 - 1


class _Strict(BaseModel):
    # allow_inf_nan=False: '.inf' epochs or a NaN learning rate would pass every bound and fail mid-run.
    # validate_default: a default goes through its field's type like a given value (2 -> 2.0 for a float), so a
    # config and its JSON round trip (a Prefect parameter, a dispatched phase) hold the same values and types.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              validate_default=True)


class Columns(_Strict):
    """Which source column holds each field. id=None: use an 'id' column if present, else the row number."""

    id: str | None = Field(None, description="record id column; None = 'id' if present, else row number")
    question: str = "question"
    options: str | None = Field("options", description="JSON list of option texts (choice tasks)")
    answer: str = "answer"
    category: str | None = Field(None, description="optional column for per-category accuracy")
    metadata: list[str] = Field(default_factory=list, description="extra columns carried along")


class DataConfig(_Strict):
    labeled: str = Field(..., description="labeled file (csv/jsonl/parquet) or hf:<dataset>[:split]")
    unlabeled: str = Field(..., description="unlabeled file; gold answers, if any, are only used for reports")
    test: str | None = Field(None, description="evaluation split")
    task: Literal["choice", "number", "label"] = "choice"
    labels: list[str] | None = Field(None, description="the closed label set of a 'label' task")
    columns: Columns = Field(default_factory=Columns)
    limit_labeled: int | None = Field(None, ge=1, description="seeded subsample size")
    limit_unlabeled: int | None = Field(None, ge=1)
    limit_test: int | None = Field(None, ge=1)
    sample_seed: int = 0
    max_question_chars: int = Field(20_000, ge=1, description="longer questions are input errors")

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, v):
        # Answers match labels ignoring case and punctuation: labels equal that way could not be told apart.
        seen = {}
        for label in v or []:
            key = answer_key(label)
            if not key:
                raise ValueError(f"label {label!r} has no letter or digit to match an answer by")
            if key in seen:
                raise ValueError(f"labels {seen[key]!r} and {label!r} differ only in case or punctuation; "
                                 "answers are matched ignoring both")
            seen[key] = label
        return v

    @field_validator("labeled", "unlabeled", "test")
    @classmethod
    def _home(cls, v):
        # '~/data.csv' is what a user writes, and runs_dir and model.base expand it too.
        return v if v is None or v.startswith("hf:") else os.path.expanduser(v)

    @model_validator(mode="after")
    def _labels_for_label_task(self):
        if self.task == "label" and not self.labels:
            raise ValueError("task 'label' needs 'labels', the closed set of answers")
        if self.task == "choice" and not self.columns.options:
            raise ValueError("task 'choice' needs columns.options, the column that holds each question's options")
        return self


class ModelConfig(_Strict):
    base: str = Field(EMBEDDED_MODEL, description="embedded:<name>, a local model directory, or a hub id")
    embedder: str = Field(EMBEDDED_EMBEDDER, description="embedded:all-minilm-l6-v2 or a sentence-transformers dir")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA and on CPUs with native bf16 (AVX-512 BF16, AMX), else float32; "
        "the transformers backends (vllm keeps float32 on CPU)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None keeps torch's default")
    trust_remote_code: bool = False
    allow_pickle: bool = Field(False, description="allow .bin/.pt weights; safetensors only otherwise")
    cache_dir: str | None = Field(None, description="converted models; default $SEMIEVOL_CACHE or ~/.cache/semievol")


class LoraParams(_Strict):
    rank: int = Field(16, ge=1, le=512)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    lr: float = Field(1e-4, gt=0)
    epochs: float = Field(2, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=16)
    seed: int = Field(0, ge=0, le=SEED_MAX)

    def optimizer_steps(self, examples: int) -> int:
        """Steps a run over this many examples takes (the last, partial batch of an epoch counts)."""
        per_epoch = math.ceil(math.ceil(examples / self.batch_size) / self.grad_accum)
        return max(1, math.ceil(per_epoch * self.epochs))


class MethodParams(_Strict):
    """SemiEvol's knobs (paper section 3) and the ablation switches."""

    n: int = Field(4, ge=1, le=32, description="collaborating configurations per record")
    k: int = Field(3, ge=0, le=16, description="retrieved labeled examples (max shots)")
    theta: float = Field(50, ge=0, le=100, description="keep pseudo-labels with NLL <= this percentile")
    temperature: float = Field(1.0, ge=0, le=5, description="collaborative inference sampling temperature")
    justify_temperature: float = Field(0.0, ge=0, le=5, description="self-justify temperature (0 = greedy)")
    justify_prompt: Literal["paper", "tally"] = Field(
        "paper", description="paper: the n responses, then the question as the warm model was trained on it; "
                             "tally: the question, then each distinct answer with how many responses gave it "
                             "(benchmarks/justify_tune.py compares them on held-out labeled data)")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    warmup: bool = Field(True, description="ablation switch: in-weight propagation (warm-up LoRA)")
    retrieval: bool = Field(True, description="ablation switch: in-context propagation (kNN shots)")
    collaboration: bool = Field(True, description="ablation switch: False = a single configuration (n=1)")
    selection: bool = Field(True, description="ablation switch: False = keep every pseudo-label")
    # Beyond the paper (both off by default): the global NLL percentile mostly keeps the majority class.
    selection_scope: Literal["pool", "class"] = Field(
        "pool", description="pool: one theta percentile over every pseudo-label (the paper); class: theta within "
                            "each pseudo-labeled class, so the kept set follows the pseudo-label distribution")
    keep_agreed: bool = Field(False, description="agreement gate (the reference code): pseudo-labels every "
                                                 "configuration agreed on are kept whatever their NLL")


class VllmParams(_Strict):
    """Passed through to vllm.LLM."""

    max_model_len: int = Field(4096, ge=64)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans (a model too big for one)")
    max_lora_rank: int = Field(64, ge=1, description="must be >= lora.rank")
    max_num_batched_tokens: int | None = Field(None, ge=64, description="tokens per engine step; None: vLLM's "
                                               "default. Halved on each out-of-memory retry")
    max_num_seqs: int | None = Field(None, ge=1, description="sequences per engine step; None: vLLM's default. "
                                                             "Halved on each out-of-memory retry")
    cpu_kv_cache_gib: int = Field(2, ge=1, description="KV cache on CPU in whole GiB (vLLM reads an integer); "
                                                       "vLLM's own default takes most of RAM")
    score_chunk: int = Field(256, ge=1, description="scoring requests per engine call")
    enforce_eager: bool | None = Field(None, description="None: eager on CPU (torch.compile of the model takes "
                                                         "minutes on a few cores), compiled on GPU")


class LlamaFactoryParams(_Strict):
    cli: str | None = Field(None, description="llamafactory-cli path; default $SEMIEVOL_LLAMAFACTORY_CLI, "
                                              "then .venv-llamafactory/ at the repository root, then PATH")
    template: str | None = Field(None, description="LLaMA-Factory template; None = parsed from the model's "
                                                   "own chat template (what the generators use)")
    extra: dict = Field(default_factory=dict, description="more keys for the training yaml")
    timeout_s: int = Field(24 * 3600, ge=1)


class BackendConfig(_Strict):
    generator: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="auto: vllm on a GPU where it is installed, else hf")
    trainer: Literal["auto", "peft", "llamafactory"] = Field(
        "auto", description="auto: llamafactory on a GPU where its CLI is found, else peft")
    gen_batch_size: int = Field(32, ge=1)
    score_batch_size: int = Field(16, ge=1)
    embed_batch_size: int = Field(256, ge=1)
    checkpoint_records: int = Field(256, ge=1, description="collaborative inference is saved every this many "
                                                           "unlabeled records; a killed run resumes from there")
    shards: int = Field(1, ge=1, le=4096, description="collaborative inference and scoring split over this many "
                                                      "flow runs on the GPU pool (needs gpu_deployment); chunks "
                                                      "are dealt to shards by a hash of the record id")
    dispatch_attempts: int = Field(3, ge=1, description="tries per run sent to the GPU pool (a whole phase or a "
                                                        "shard) before the phase fails; a run that crashes, fails "
                                                        "or times out is sent again")
    gpu_timeout_s: int = Field(24 * 3600, ge=1, description="a GPU phase or a run sent to the GPU pool that takes "
                                                            "longer is stopped and counts as a failed try")
    shard_storage: str | None = Field(None, description="fsspec URL (s3://bucket/semievol, file:///mnt/x) through "
                                                        "which shard runs get their inputs and return their "
                                                        "chunks; None: the round directory is shared storage")
    vllm: VllmParams = Field(default_factory=VllmParams)
    llamafactory: LlamaFactoryParams = Field(default_factory=LlamaFactoryParams)


class RoundConfig(_Strict):
    name: str | None = Field(None, description="round directory name under runs_dir; default: time + data hash")
    runs_dir: str = "runs"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraParams = Field(default_factory=LoraParams)
    method: MethodParams = Field(default_factory=MethodParams)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    progress: bool = True

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v):
        # The name becomes a directory under runs_dir: no separators, no '..', nothing hidden.
        if v is not None and (not _NAME.fullmatch(v) or ".." in v):
            raise ValueError("must be letters, digits, '.', '_' or '-' (max 128), not starting with '.'")
        return v

    @field_validator("runs_dir")
    @classmethod
    def _runs_dir_is_a_directory(cls, v):
        # Found now rather than when the round directory is created, after the model has loaded. The nearest
        # existing ancestor counts too: 'notes.txt/runs' cannot be created either.
        # Not readable or writable is not checked: a shard run on another machine validates this config too.
        path = Path(v).expanduser()
        while not os.path.lexists(path) and path != path.parent:
            path = path.parent
        if not path.is_dir():  # a file, a broken symbolic link or a symlink loop
            raise ValueError(f"{str(path)!r} is not a directory")
        return v

    @model_validator(mode="after")
    def _lora_fits_vllm(self):
        if self.backend.generator == "vllm" and self.lora.rank > self.backend.vllm.max_lora_rank:
            raise ValueError(f"lora.rank {self.lora.rank} > backend.vllm.max_lora_rank "
                             f"{self.backend.vllm.max_lora_rank}")
        return self


def _as_input_error(source: str, err: ValidationError) -> InputError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "-"
    msg = first["msg"] if first["type"] != "extra_forbidden" else "unknown key (typo?)"
    return InputError(source, None, key, msg)


def _hf_local(value: str, base: Path) -> str:
    """hf:<name>[:split] with a relative name that is a dataset directory under base made absolute; anything else
    (a hub id, an absolute path) as it is."""
    name, sep, split = value[3:].partition(":")
    local = base / name
    if name and not Path(name).is_absolute() and os.path.lexists(local):
        return f"hf:{local.absolute()}{sep}{split}"
    return value


def absolute_paths(cfg: RoundConfig) -> RoundConfig:
    """cfg with every path it names made absolute against this process's working directory: for phases that
    run in another process (a GPU pool's worker, a container), where a relative path would name something else
    or nothing. Hub ids and embedded models are left as they are."""
    def local(value: str | None, must_exist: bool = True) -> str | None:
        if value is None or value.startswith("embedded:"):
            return value
        if value.startswith("hf:"):
            return _hf_local(value, Path.cwd())
        path = os.path.expanduser(value)
        return os.path.abspath(path) if not must_exist or os.path.lexists(path) else value

    data = {k: local(getattr(cfg.data, k), must_exist=False) for k in ("labeled", "unlabeled", "test")}
    model = {"base": local(cfg.model.base), "embedder": local(cfg.model.embedder),
             "cache_dir": local(cfg.model.cache_dir, must_exist=False)}
    return cfg.model_copy(update={"runs_dir": os.path.abspath(os.path.expanduser(cfg.runs_dir)),
                                  "data": cfg.data.model_copy(update=data),
                                  "model": cfg.model.model_copy(update=model)})


def parse_config(data: dict, source: str = "<config>") -> RoundConfig:
    try:
        return RoundConfig.model_validate(data)
    except ValidationError as err:
        raise _as_input_error(source, err) from None


_MAX_EXPANDED = 1_000_000  # nodes + characters; a real config has a few hundred of each
_MAX_DEPTH = 64  # a real config nests 4 levels
_MERGE = "tag:yaml.org,2002:merge"
_NOT_STR = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}


class _Loader(yaml.SafeLoader):
    """Refuses deep nesting while composing, before Python's recursion limit would stop it (slowly: the
    scanner is quadratic in the depth it has to look ahead over)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {_MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_nodes(node: yaml.Node, source: str, where: str = "", sizes: dict | None = None) -> int:
    """Refuses duplicate keys (YAML would keep the last) and documents whose aliases expand past
    _MAX_EXPANDED (a 'billion laughs' loads instantly but never finishes being dumped or validated).
    Returns the node's expanded size; an alias counts its whole target again, computed once."""
    sizes = {} if sizes is None else sizes
    if id(node) in sizes:
        if sizes[id(node)] is None:
            raise InputError(source, None, where or None, f"line {node.start_mark.line + 1}: an alias refers to "
                                                          "a node that contains it")
        return sizes[id(node)]
    sizes[id(node)] = None  # in progress: meeting it again below means a recursive alias
    if isinstance(node, yaml.ScalarNode):
        size = 1 + len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_check_nodes(item, source, f"{where}[{i}]", sizes) for i, item in enumerate(node.value))
    else:
        size, first = 1, {}
        for key, value in node.value:
            name = f"{where}.{key.value}".lstrip(".") if isinstance(key, yaml.ScalarNode) else where
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:  # '<<' keys may be overridden
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first:
                    raise InputError(source, None, name, f"duplicate key at lines {first[key.tag, key.value]} "
                                                         f"and {line} (YAML would keep only the last)")
                first[key.tag, key.value] = line
            size += _check_nodes(key, source, name, sizes) + _check_nodes(value, source, name, sizes)
    if size > _MAX_EXPANDED:
        raise InputError(source, None, where or None, f"expands to more than {_MAX_EXPANDED} values and "
                                                      "characters (aliases repeating aliases?)")
    sizes[id(node)] = size
    return size


def _wants_str(annotation) -> bool:
    return annotation is str or (get_origin(annotation) is Literal and all(isinstance(a, str)
                                                                            for a in get_args(annotation)))


def _strings_as_typed(node: yaml.Node, annotation) -> None:
    """Where the schema wants a string, a plain scalar keeps the text the user typed: YAML 1.1 would read
    'labels: [yes, no]' as booleans, 'name: 2024-01-01' as a date and 'name: 1.10' as 1.1. Retagging the
    node before construction is the one place that still has the typed text."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == _MERGE:  # '<<: *base' or '<<: [*a, *b]': the merged keys belong here too
                    for merged in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                        _strings_as_typed(merged, annotation)
                elif isinstance(key, yaml.ScalarNode) and key.value in annotation.model_fields:
                    _strings_as_typed(value, annotation.model_fields[key.value].annotation)
    elif origin in (Union, types.UnionType):
        for option in get_args(annotation):
            _strings_as_typed(node, option)
    elif origin is list and isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _strings_as_typed(item, get_args(annotation)[0])
    elif _wants_str(annotation) and isinstance(node, yaml.ScalarNode) and node.style is None \
            and node.tag in _NOT_STR:
        node.tag = "tag:yaml.org,2002:str"


def _read_yaml(path: Path):
    text = path.read_text(encoding="utf-8")
    loader = _Loader(text)  # composed first, checked, then constructed
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, str(path))
        _strings_as_typed(node, RoundConfig)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_config(path: str | Path) -> RoundConfig:
    """Reads a YAML config; relative data paths are taken relative to the config file."""
    path = Path(path)
    problem = path_problem(path)
    if problem:
        raise InputError(path, None, None, f"config {problem}")
    try:
        raw = _read_yaml(path)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InputError(path, None, None, f"not valid YAML: {where}{err.problem or err.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise InputError(path, None, None, f"not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise InputError(path, None, None, "top level must be a mapping")
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("labeled", "unlabeled", "test"):
            val = data.get(key)
            if not isinstance(val, str):
                continue
            if val.startswith("hf:"):
                # A local dataset directory beside the config, like a file; anything else is a hub id.
                data[key] = _hf_local(val, path.parent)
            elif not Path(val).expanduser().is_absolute():
                data[key] = str(path.parent / val)
    return parse_config(raw, str(path))
