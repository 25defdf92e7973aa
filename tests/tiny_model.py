"""A tiny Llama with SmolLM2's tokenizer and chat template, taught the answer format in a few seconds.

The Prefect tests are about where, when and how often phases run, not about what the model knows. On this
model every phase still runs the real code (transformers generation and scoring, peft training, faiss
retrieval, the Prefect tasks and workers), in seconds instead of the minutes SmolLM2's 30 layers take on two
cores. Random weights alone would answer nothing parseable, and every pseudo-label would be dropped before
selection, so the builder trains it on the FPB sample's labeled rows until it replies 'Answer: <letter>'.
The real model stays under test in tests/model, tests/engines and the deployment round."""
from __future__ import annotations

import shutil
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


def build(target: Path, seed: int = 0, steps: int = 60) -> Path:
    """Writes the model to `target` (renamed into place when complete) and returns it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from semievol_core.backends.hf import encode_pair
    from semievol_core.config import ModelConfig
    from semievol_core.data import load_dataset
    from semievol_core.models import resolve_model
    from semievol_core.prompts import training_example
    from semievol_core.store import atomic_path

    source = Path(resolve_model(ModelConfig()))  # the embedded SmolLM2's tokenizer, converted once per cache
    tok = AutoTokenizer.from_pretrained(source)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=8192,
                         rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)

    records = load_dataset(str(SAMPLES / "fpb" / "labeled.csv"), "choice", require_answers=True)
    pairs = [encode_pair(tok, *training_example(r, "choice", r.answer)) for r in records.records]
    width = max(len(p) + len(s) for p, s in pairs)
    ids = torch.full((len(pairs), width), tok.eos_token_id)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    targets = []  # (row, position predicting it, token): the response tokens only
    for row, (p, s) in enumerate(pairs):
        ids[row, :len(p) + len(s)] = torch.tensor(p + s)
        mask[row, :len(p) + len(s)] = 1
        targets += [(row, len(p) + i - 1, t) for i, t in enumerate(s)]
    rows, pos, tokens = (torch.tensor(c) for c in zip(*targets))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[rows, pos])  # the vocabulary projection only where there is a target
        loss = torch.nn.functional.cross_entropy(logits, tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with atomic_path(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, tmp / name)
    return target
