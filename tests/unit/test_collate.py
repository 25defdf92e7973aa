"""Batches the peft trainer (and the train_step benchmark) feed to the loss: right padding that the attention
mask hides and the labels skip."""
from semievol_core.backends.peft import collate


def test_padding_is_masked_and_never_a_target():
    ids, mask, labels = collate([([5, 6, 7], [-100, 6, 7]), ([8], [8])], pad=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert labels.tolist() == [[-100, 6, 7], [8, -100, -100]]
