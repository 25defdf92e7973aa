"""The hf engine's attention for one decoding step (two matmuls per key/value head instead of torch's CPU kernel,
which is slow in bf16) must be the attention torch computes, grouped heads and padding mask included."""
import pytest
import torch
import torch.nn.functional as F

from semievol_core.backends.hf import _decode_attention, _sdpa_gqa


def _inputs(dtype, q_len=1):
    g = torch.Generator().manual_seed(0)
    b, heads, kv, keys, d = 5, 9, 3, 37, 64  # SmolLM2-135M's heads: 9 query, 3 key/value
    q, k, v = (torch.randn(b, n, length, d, generator=g).to(dtype)
               for n, length in ((heads, q_len), (kv, keys), (kv, keys)))
    mask = torch.ones(b, 1, q_len, keys, dtype=torch.bool)
    mask[1, ..., :11] = False  # left padding of two rows
    mask[3, ..., :30] = False
    return q, k, v, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("scale", [None, 0.5])
def test_decode_attention_equals_torch_sdpa(dtype, masked, scale):
    q, k, v, mask = _inputs(dtype)
    mask = mask if masked else None
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, enable_gqa=True,
                                           scale=scale).transpose(1, 2)
    torch_own = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=scale).transpose(1, 2)
    got = _decode_attention(q, k, v, mask, scale)
    assert got.dtype == dtype and got.shape == (5, 1, 9, 64)
    # as close to the exact attention as torch's own kernel in this dtype (bf16 rounds the scores and weights)
    assert (got.double() - exact).abs().max() <= 2 * (torch_own.double() - exact).abs().max() + 1e-6


def test_prefill_in_bf16_is_computed_in_fp32_and_returned_in_bf16():
    q, k, v, mask = _inputs(torch.bfloat16, q_len=37)
    mask = mask & torch.ones(37, 37, dtype=torch.bool).tril()
    module = torch.nn.Module()
    got, _ = _sdpa_gqa(module, q, k, v, mask)
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want.to(torch.bfloat16).transpose(1, 2))
