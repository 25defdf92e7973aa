"""The peft trainer's loss runs the output layer at response positions only: it must be the loss, and give the
gradients, that transformers computes from the same labels over every position."""
import torch
from peft import LoraConfig, get_peft_model

from semievol_core.backends.hf import load_model, load_tokenizer
from semievol_core.backends.peft import collate, example_features, response_loss
from semievol_core.config import ModelConfig
from semievol_core.data import load_dataset
from semievol_core.prompts import training_example


def _batch(tok, samples, n=6):
    split = load_dataset(str(samples / "fpb" / "labeled.csv"), task="choice", require_answers=True)
    feats = [example_features(tok, *training_example(rec, "choice", rec.answer)) for rec in split.records[:n]]
    assert len({len(x) for x, _ in feats}) > 1  # padding is part of what is compared
    return collate(feats, tok.pad_token_id)


def test_response_loss_equals_the_full_logits_loss(tiny_model, samples):
    cfg = ModelConfig(dtype="float32")  # an equality of formulas, checked where rounding does not blur it
    tok = load_tokenizer(str(tiny_model), cfg)
    torch.manual_seed(0)
    model = get_peft_model(load_model(str(tiny_model), cfg), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                        task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # LoRA's B starts at zero: make the adapter change the output
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    ids, mask, labels = _batch(tok, samples)
    lora = [p for p in model.parameters() if p.requires_grad]

    full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    full_grads = torch.autograd.grad(full, lora)
    ours = response_loss(model, ids, mask, labels)
    our_grads = torch.autograd.grad(ours, lora)

    assert 0 < full.item() and abs(ours.item() - full.item()) < 1e-5 * full.item()
    for a, b in zip(our_grads, full_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in our_grads)
    # a label moved onto a prompt position changes the loss: the comparison is not vacuous
    moved = labels.clone()
    moved[0, 1] = ids[0, 1]
    assert abs(response_loss(model, ids, mask, moved).item() - ours.item()) > 1e-6


def test_a_bf16_base_trains_its_adapter_in_fp32(tiny_model, samples):
    """dtype auto gives a bf16 base on CPUs with native bf16. The adapter must still hold fp32 weights: an Adam step
    at a small learning rate moves a weight by about the rate, less than bf16 can resolve at the weights' size."""
    from semievol_core.backends.peft import with_lora
    from semievol_core.config import LoraParams
    cfg = ModelConfig(dtype="bfloat16")
    tok = load_tokenizer(str(tiny_model), cfg)
    torch.manual_seed(0)
    model = with_lora(load_model(str(tiny_model), cfg), LoraParams(dropout=0.0))
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert {p.dtype for p in trained.values()} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    before = {n: p.detach().clone() for n, p in trained.items() if "lora_A" in n}
    opt = torch.optim.AdamW(trained.values(), lr=1e-5, weight_decay=0.0)
    batch = _batch(tok, samples)
    for _ in range(2):  # lora_B starts at zero, so lora_A has no gradient before the second step
        response_loss(model, *batch).backward()
        opt.step()
        opt.zero_grad()
    assert all(not torch.equal(trained[n], w) for n, w in before.items())
