"""dtype: auto picks bf16 on CPU only where the CPU multiplies bf16 in hardware, and never for NLL scoring."""
import torch

from semievol_core.backends import device_and_dtype, native_bf16
from semievol_core.config import ModelConfig

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"}  # this project's AVX2 EPYC
ZEN4 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "amx_tile", "amx_int8", "amx_bf16"}
AVX512_ONLY = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}  # Ice Lake: bf16 only emulated


def test_native_bf16_from_flags():
    assert native_bf16(ZEN4) and native_bf16(SAPPHIRE_RAPIDS)
    assert not native_bf16(AVX2) and not native_bf16(AVX512_ONLY) and not native_bf16(set())


def test_auto_on_cpu_follows_the_flags_and_scoring_stays_fp32():
    cpu = ModelConfig(device="cpu")
    assert device_and_dtype(cpu, flags=ZEN4) == ("cpu", torch.bfloat16)
    assert device_and_dtype(cpu, flags=SAPPHIRE_RAPIDS) == ("cpu", torch.bfloat16)
    assert device_and_dtype(cpu, flags=AVX2) == ("cpu", torch.float32)
    assert device_and_dtype(cpu, flags=AVX512_ONLY) == ("cpu", torch.float32)
    for flags in (ZEN4, AVX2):
        assert device_and_dtype(cpu, scoring=True, flags=flags) == ("cpu", torch.float32)


def test_an_explicit_dtype_is_kept():
    for name in ("float32", "bfloat16", "float16"):
        cfg = ModelConfig(device="cpu", dtype=name)
        for flags in (ZEN4, AVX2):
            assert device_and_dtype(cfg, flags=flags)[1] == getattr(torch, name)
            assert device_and_dtype(cfg, scoring=True, flags=flags)[1] == getattr(torch, name)


def test_cuda_stays_bf16():
    assert device_and_dtype(ModelConfig(device="cuda"), flags=AVX2) == ("cuda", torch.bfloat16)
