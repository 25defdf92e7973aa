"""How the hf engine batches generation requests (pure logic; the engine's outputs are tested in tests/model)."""
from semievol_core.backends.base import GenRequest
from semievol_core.backends.hf import generation_batches


def req(adapter, temperature=1.0, new=24):
    return GenRequest([{"role": "user", "content": "q"}], adapter, temperature, new)


def test_same_adapter_and_settings_batch_together_longest_first_at_most_size():
    requests = [req(None), req("warm"), req(None), req("warm"), req(None), req(None, temperature=0.0)]
    prompts = [[0] * n for n in (5, 9, 7, 3, 6, 8)]
    batches = generation_batches(requests, prompts, size=2)
    # base at T=0, then base at T=1 (7, 6 | 5), then warm (9, 3)
    assert batches == [[5], [2, 4], [0], [1, 3]]
    for b in batches:
        assert len({(requests[i].adapter, requests[i].temperature) for i in b}) == 1
        assert [len(prompts[i]) for i in b] == sorted((len(prompts[i]) for i in b), reverse=True)


def test_every_request_once_and_ties_in_request_order():
    requests = [req("warm") for _ in range(5)]
    batches = generation_batches(requests, [[0] * 4] * 5, size=3)
    assert batches == [[0, 1, 2], [3, 4]]
    assert generation_batches([], [], size=3) == []
