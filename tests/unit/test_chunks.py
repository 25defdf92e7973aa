"""Chunking and dealing to shards: pure logic, no model."""
import pandas as pd
import pytest

from semievol_core import shards


def test_chunks_cover_every_record_once_in_an_order_set_by_the_ids():
    ids = [f"r{i}" for i in range(23)]
    got = shards.chunks(ids, 5)
    assert [len(c) for c in got] == [5, 5, 5, 5, 3]
    assert sorted(p for c in got for p in c) == list(range(23))
    # the same ids in another file order land in the same chunks
    rev = list(reversed(ids))
    assert [[rev[p] for p in c] for c in shards.chunks(rev, 5)] == [[ids[p] for p in c] for c in got]
    assert got != [list(range(s, min(s + 5, 23))) for s in range(0, 23, 5)]  # not file order


def test_every_chunk_goes_to_exactly_one_shard():
    for n_chunks, n in ((10, 4), (3, 4), (7, 1)):
        dealt = [shards.of_shard(n_chunks, j, n) for j in range(n)]
        assert sorted(c for d in dealt for c in d) == list(range(n_chunks))
    with pytest.raises(ValueError, match="outside"):
        shards.of_shard(4, 4, 4)


def _plan(tmp_path, payload):
    ids = [f"r{i}" for i in range(6)]
    return shards.plan(ids, 2, 2, payload, [{"id": i} for i in range(12)], tmp_path, "identity")


def test_plan_names_chunks_by_their_requests_and_keeps_per_record_requests_together(tmp_path):
    payload = [f"q{i // 2}-c{i % 2}" for i in range(12)]
    plan = _plan(tmp_path, payload)
    assert len(plan) == 3
    for ch in plan:
        assert len(ch.payload) == 4 and ch.payload[0][:-1] == ch.payload[1][:-1]  # one record's 2 configs
    other = _plan(tmp_path, payload[:-1] + ["changed"])
    assert [a.path == b.path for a, b in zip(plan, other)].count(False) == 1


def test_run_missing_computes_only_missing_chunks_and_pending_names_their_shards(tmp_path):
    plan = _plan(tmp_path, [f"q{i}" for i in range(12)])
    calls = []

    def compute(ch):
        calls.append(ch.index)
        return pd.DataFrame({"x": ch.payload})

    assert shards.pending(plan, 2) == [0, 1]
    assert shards.run_missing([plan[1]], compute) == 1
    assert shards.pending(plan, 2) == [0]
    assert shards.run_missing(plan, compute) == 2 and calls == [1, 0, 2]
    assert shards.pending(plan, 2) == []
    assert list(shards.merge(plan, ["x"])["x"]) == [p for ch in plan for p in ch.payload]
    assert not list(tmp_path.glob(".*tmp*"))
