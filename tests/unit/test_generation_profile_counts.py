"""The token bookkeeping of benchmarks/generation_profile.py: padding, and what a perfect prefix cache skips."""
from benchmarks.generation_profile import padded, prefix_cached_tokens


def test_a_prefix_shared_within_an_adapter_is_computed_once():
    prompts = [[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 7], [5, 2, 3]]
    # 4 + 1 (9 after 1 2 3) + 1 (7 after 1 2) + 3 (starts elsewhere)
    assert prefix_cached_tokens(["warm"] * 4, prompts) == 9


def test_adapters_share_nothing_and_a_repeated_prompt_costs_nothing():
    assert prefix_cached_tokens(["warm", None], [[1, 2], [1, 2]]) == 4  # other weights, other keys and values
    assert prefix_cached_tokens([None, None], [[1, 2], [1, 2]]) == 2
    # the same tokens at another position are another prefix
    assert prefix_cached_tokens([None, None], [[1, 2], [2, 1, 2]]) == 5


def test_padding_fills_each_batch_to_its_longest_prompt():
    prompts = [[0] * 5, [0] * 3, [0] * 4]
    assert padded([[0, 1], [2]], prompts) == 2 * 5 + 4
