import math

import numpy as np

from omni_msa.files import append_jsonl, dumps, read_json, read_jsonl, write_json, write_jsonl


def test_json_never_holds_nan(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"corr": math.nan, "mae": np.float64(0.5), "xs": [math.inf, 1.0]})
    assert read_json(path) == {"corr": None, "mae": 0.5, "xs": [None, 1.0]}
    assert "NaN" not in dumps({"a": np.array([np.nan])})


def test_jsonl_partial_last_line_is_not_a_row_and_append_drops_it(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}])
    with path.open("a") as handle:
        handle.write('{"a": 3')                      # a killed writer's partial line
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    append_jsonl(path, {"a": 4})
    assert read_jsonl([path, tmp_path / "missing.jsonl"]) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert not list(tmp_path.glob("*.partial"))
