import json
import multiprocessing
import os
import random
import signal

import numpy as np
import pytest

from omni_msa.data.record import DataError
from omni_msa.scoring_io import PredictionWriter, errors_path_for, merge_shards, part_path, read_predictions, shard_ids

IDS = [f"clip_{i:02d}" for i in range(20)]


def make_row(sample_id, pred=None):
    pred = pred if pred is not None else sum(map(ord, sample_id)) % 61 / 10 - 3  # a stand-in model
    return {"id": sample_id, "split": "test", "label": 1.0, "pred": pred,
            "readout": "generative", "status": "ok", "latency_ms": 12.5, "present": ["text", "audio"],
            "intra": {"audio": 1.0}, "text": "1.5"}


def score(writer, ids, fail=()):
    """What a scoring loop does: skip done ids, write a row or an error for the rest."""
    todo = [i for i in ids if i not in writer.done_ids]
    for sample_id in todo:
        if sample_id in fail:
            writer.write_error(sample_id, DataError("unreadable video", sample_id=sample_id, field="video"))
        else:
            writer.write(make_row(sample_id))
    return todo


def ids_in(path):
    return [row["id"] for row in read_predictions(path)]


def _killed_mid_row(out):
    writer = PredictionWriter(out)
    score(writer, IDS[:7])
    writer._out.write('{"id": "clip_07", "split": "te')  # the next row, cut mid-write
    writer._out.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def test_resume_after_kill(tmp_path):
    out = tmp_path / "preds.jsonl"
    killed = multiprocessing.get_context("spawn").Process(target=_killed_mid_row, args=(out,))
    killed.start()
    killed.join(timeout=60)
    assert killed.exitcode == -signal.SIGKILL
    assert not out.read_text().endswith("\n")

    with PredictionWriter(out) as writer:
        assert writer.done_ids == set(IDS[:7])
        assert out.read_text().endswith("}\n") and len(out.read_text().splitlines()) == 7
        assert score(writer, IDS) == IDS[7:]
    assert sorted(ids_in(out)) == IDS
    with PredictionWriter(out) as writer:
        assert score(writer, IDS) == []


def test_duplicate_write_raises(tmp_path):
    out = tmp_path / "preds.jsonl"
    with PredictionWriter(out) as writer:
        writer.write(make_row("a"))
        with pytest.raises(DataError, match="'a'"):
            writer.write(make_row("a"))
    with PredictionWriter(out) as writer, pytest.raises(DataError, match="'a'"):
        writer.write(make_row("a", pred=2.0))
    assert ids_in(out) == ["a"]


def test_bad_rows_raise_and_write_nothing(tmp_path):
    out = tmp_path / "preds.jsonl"
    with PredictionWriter(out) as writer:
        with pytest.raises(ValueError, match="pred"):
            writer.write({k: v for k, v in make_row("a").items() if k != "pred"})
        with pytest.raises(ValueError):
            writer.write(make_row("a", pred=float("nan")))
        assert writer.done_ids == set()
        writer.write(make_row("a", pred=np.float32(0.5)) | {"present": np.array([1, 0])})
    assert read_predictions(out)[0]["pred"] == 0.5 and read_predictions(out)[0]["present"] == [1, 0]


def test_corrupt_line_inside_the_file_raises(tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text(json.dumps(make_row("a")) + "\nnot json\n" + json.dumps(make_row("b")) + "\n")
    with pytest.raises(DataError, match="preds.jsonl: line 2 is not JSON"):
        PredictionWriter(out)


def test_errors_carry_id_and_reason_and_are_retried(tmp_path):
    out = tmp_path / "preds.jsonl"
    errors = errors_path_for(out)
    assert errors.name == "preds.errors.jsonl"
    with PredictionWriter(out) as writer:
        score(writer, ["a", "b", "c"], fail={"b", "c"})
        writer.write_error("d", RuntimeError("CUDA out of memory"))
    rows = read_predictions(errors)
    assert rows[0] == {"id": "b", "reason": "unreadable video", "field": "video"}
    assert rows[2] == {"id": "d", "reason": "RuntimeError: CUDA out of memory"}

    with PredictionWriter(out) as writer:  # the cause is fixed for b, not for c
        assert writer.done_ids == {"a"}
        assert score(writer, ["a", "b", "c"], fail={"c"}) == ["b", "c"]
        with pytest.raises(DataError, match="'b'"):
            writer.write_error("b", "late failure")
    assert [row["id"] for row in read_predictions(errors)] == ["d", "c"]  # latest attempt per id
    with PredictionWriter(out) as writer:
        score(writer, ["c", "d"])
    assert not errors.exists() and sorted(ids_in(out)) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_cover_every_id_once_whatever_the_order(world_size):
    shards = [shard_ids(IDS, rank, world_size) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == IDS
    shuffled = random.Random(world_size).sample(IDS, len(IDS))
    assert [shard_ids(shuffled, rank, world_size) for rank in range(world_size)] == shards
    # dropping done ids before sharding never moves an id to another rank
    subset = IDS[::3]
    assert [shard_ids(subset, rank, world_size) for rank in range(world_size)] == \
        [[i for i in shard if i in subset] for shard in shards]


def test_shard_ids_rejects_bad_input():
    with pytest.raises(DataError, match="'a'"):
        shard_ids(["a", "b", "a"], 0, 2)
    with pytest.raises(ValueError):
        shard_ids(IDS, 2, 2)


def test_merge_of_shards_and_resumed_output_equals_single_process(tmp_path):
    single = tmp_path / "single.jsonl"
    with PredictionWriter(single) as writer:
        score(writer, IDS)

    out = tmp_path / "preds.jsonl"
    with PredictionWriter(out) as writer:  # an earlier run got this far, with one failure
        score(writer, IDS[:5], fail={"clip_03"})
    with open(out, "a") as handle:
        handle.write('{"id": "clip_05"')

    world_size = 2
    assert merge_shards(out, world_size).parts == ()
    done = set(ids_in(out))
    for rank in range(world_size):
        with PredictionWriter(part_path(out, rank)) as writer:
            score(writer, shard_ids([i for i in IDS if i not in done], rank, world_size))
    report = merge_shards(out, world_size)

    assert ids_in(out) == IDS  # each id once, sorted
    assert read_predictions(out) == sorted(read_predictions(single), key=lambda row: row["id"])
    assert report.rows == 20 and report.errors == 0 and report.resolved_errors == 1 and report.parts == (0, 1)
    assert not errors_path_for(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl", "single.jsonl"]


def test_merge_keeps_identical_duplicates_once_and_latest_errors(tmp_path):
    out = tmp_path / "preds.jsonl"
    with PredictionWriter(out) as writer:
        score(writer, ["a", "b"], fail={"b"})
    with PredictionWriter(part_path(out, 0)) as writer:  # a kill after the merged file was written
        writer.write(make_row("a") | {"latency_ms": 99.0})
        writer.write_error("b", "still broken")
    with PredictionWriter(part_path(out, 5)) as writer:  # left by a run with more processes
        writer.write(make_row("c"))
    report = merge_shards(out, 2)
    assert report.duplicate_rows == 1 and report.parts == (0, 5) and report.missing_parts == (1,)
    assert [(row["id"], row["latency_ms"]) for row in read_predictions(out)] == [("a", 12.5), ("c", 12.5)]
    assert read_predictions(errors_path_for(out)) == [{"id": "b", "reason": "still broken"}]


def test_conflicting_predictions_raise_naming_the_id(tmp_path):
    out = tmp_path / "preds.jsonl"
    for rank, pred in [(0, 1.0), (1, 2.0)]:
        with PredictionWriter(part_path(out, rank)) as writer:
            writer.write(make_row("x", pred=pred))
            writer.write(make_row(f"only_{rank}"))
    with pytest.raises(DataError, match="sample 'x'.*two different predictions"):
        merge_shards(out, 2)
    assert part_path(out, 0).exists() and part_path(out, 1).exists() and not out.exists()


def _score_rank(out, rank, world_size, ids):
    with PredictionWriter(part_path(out, rank)) as writer:
        score(writer, shard_ids(ids, rank, world_size), fail={"clip_13"})


def test_real_processes_write_parts_and_rank0_merges(tmp_path):
    out, world_size = tmp_path / "preds.jsonl", 3
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_score_rank, args=(out, rank, world_size, IDS))
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    for process in processes:  # the barrier
        process.join(timeout=60)
        assert process.exitcode == 0
    report = merge_shards(out, world_size)
    assert ids_in(out) == [i for i in IDS if i != "clip_13"]
    assert [row["id"] for row in read_predictions(errors_path_for(out))] == ["clip_13"]
    assert report.parts == (0, 1, 2) and report.rows == 19 and report.errors == 1
