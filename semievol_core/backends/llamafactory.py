"""LoRA training with LLaMA-Factory (the GPU default), run as `llamafactory-cli train <yaml>` from its own
virtual environment: its pins (transformers, peft, datasets) conflict with the inference stack."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from pathlib import Path

import yaml

from ..config import LlamaFactoryParams, LoraParams, ModelConfig
from ..errors import BackendMissingError, TrainingError
from ..progress import Bar
from ..store import atomic_path
from . import resolve_device
from .base import Messages
from .peft import verify_adapter

REPO_ROOT = Path(__file__).resolve().parents[2]
KEEP = {"adapter_config.json", "adapter_model.safetensors", "all_results.json", "train_results.json",
        "trainer_log.jsonl"}
LOSS = re.compile(r"'loss': '?([0-9.eE+-]+)")  # the trainer's per-step log line


def find_cli(params: LlamaFactoryParams) -> str:
    for candidate in (params.cli, os.environ.get("SEMIEVOL_LLAMAFACTORY_CLI"),
                      REPO_ROOT / ".venv-llamafactory" / "bin" / "llamafactory-cli"):
        if candidate and Path(candidate).expanduser().is_file():
            return str(Path(candidate).expanduser())
    found = shutil.which("llamafactory-cli")
    if found:
        return found
    raise BackendMissingError(
        "trainer 'llamafactory' needs llamafactory-cli: run scripts/setup-llamafactory.sh (creates "
        ".venv-llamafactory), or set backend.llamafactory.cli / $SEMIEVOL_LLAMAFACTORY_CLI")


def _lora_target(modules: str | list[str]) -> str:
    if modules == "all-linear":
        return "all"
    return modules if isinstance(modules, str) else ",".join(modules)


def training_yaml(model_path: str, model_cfg: ModelConfig, lp: LoraParams, params: LlamaFactoryParams,
                  dataset_dir: Path, output_dir: Path, cuda: bool) -> dict:
    cfg = {
        "model_name_or_path": model_path, "trust_remote_code": model_cfg.trust_remote_code,
        "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": lp.rank, "lora_alpha": lp.alpha, "lora_dropout": lp.dropout,
        "lora_target": _lora_target(lp.target_modules),
        "dataset_dir": str(dataset_dir), "dataset": "semievol", "cutoff_len": lp.max_length,
        "overwrite_cache": True, "preprocessing_num_workers": 1,
        "output_dir": str(output_dir), "overwrite_output_dir": True, "save_strategy": "no",
        "logging_steps": 1, "plot_loss": False, "report_to": "none",
        "per_device_train_batch_size": lp.batch_size, "gradient_accumulation_steps": lp.grad_accum,
        "learning_rate": lp.lr, "num_train_epochs": float(lp.epochs), "lr_scheduler_type": lp.scheduler,
        "warmup_ratio": lp.warmup_ratio, "weight_decay": 0.0, "seed": lp.seed, "data_seed": lp.seed,
        "bf16": cuda and model_cfg.dtype in ("auto", "bfloat16"), "fp16": cuda and model_cfg.dtype == "float16",
    }
    if params.template:
        cfg["template"] = params.template
    cfg.update(params.extra)
    return cfg


def write_dataset(examples: list[tuple[Messages, str]], dataset_dir: Path) -> None:
    """The run's own dataset directory and dataset_info.json (never a shared one)."""
    rows, with_system = [], False
    for messages, response in examples:
        system = [m["content"] for m in messages if m["role"] == "system"]
        with_system |= bool(system)
        turns = [m for m in messages if m["role"] != "system"] + [{"role": "assistant", "content": response}]
        rows.append({"messages": turns, "system": system[0] if system else ""})
    if not with_system:  # a declared system column would override the template's default system turn
        for row in rows:
            del row["system"]
    dataset_dir.mkdir(parents=True, exist_ok=True)
    (dataset_dir / "train.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info = {"semievol": {"file_name": "train.json", "formatting": "sharegpt",
                         "columns": {"messages": "messages", **({"system": "system"} if with_system else {})},
                         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                  "assistant_tag": "assistant", "system_tag": "system"}}}
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


class LlamaFactoryTrainer:
    def __init__(self, model_path: str, model_cfg: ModelConfig, lora: LoraParams, params: LlamaFactoryParams,
                 progress: bool = True):
        self.model_path, self.model_cfg, self.lora, self.params = model_path, model_cfg, lora, params
        self.progress = progress
        self.cli = find_cli(params)

    def train(self, examples: list[tuple[Messages, str]], out_dir: Path) -> Path:
        if not examples:
            raise TrainingError("no training examples")
        out_dir = Path(out_dir)
        cuda = resolve_device(self.model_cfg) == "cuda"
        with tempfile.TemporaryDirectory(prefix="semievol-lf-") as work, atomic_path(out_dir) as tmp:
            work = Path(work)
            write_dataset(examples, work / "data")
            cfg = training_yaml(self.model_path, self.model_cfg, self.lora, self.params, work / "data", tmp, cuda)
            (work / "train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            env = {**os.environ, "WANDB_DISABLED": "true", "DISABLE_VERSION_CHECK": os.environ.get(
                "DISABLE_VERSION_CHECK", "0"), "PYTHONUNBUFFERED": "1"}
            if not cuda:
                env["CUDA_VISIBLE_DEVICES"] = ""
            steps = self.lora.optimizer_steps(len(examples))
            self._run([self.cli, "train", str(work / "train.yaml")], env, work, steps)
            # Only the adapter goes into place; LLaMA-Factory also writes tokenizer files, logs and a
            # pickled training_args.bin.
            for extra in tmp.iterdir():
                if extra.name not in KEEP:
                    shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
            verify_adapter(tmp)
        return out_dir

    def _run(self, cmd: list[str], env: dict, cwd: Path, steps: int) -> None:
        tail: deque[str] = deque(maxlen=30)
        bar = Bar(steps, "train LoRA (LLaMA-Factory)", "step", self.progress)
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                loss = LOSS.search(line)
                if loss and bar.done < steps:
                    bar.update(1, loss=float(loss.group(1)))
            rc = proc.wait(timeout=self.params.timeout_s)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            bar.close()
        if rc != 0:
            why = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
            raise TrainingError(f"llamafactory-cli train failed ({why}):\n" + "\n".join(tail))
