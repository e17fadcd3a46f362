import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from omni_msa.data.manifest import read_manifest
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.missing_report import protocol_effects, summarise_effects
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.record import DataError, join_media
from omni_msa.data.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(16, out, seed=3)
    return out


def test_join_media_attaches_paths_and_refuses_mismatches(synthetic_dir):
    features = read_mmsa_pickle(synthetic_dir / "unaligned.pkl", dataset="mosi", layout="unaligned").samples
    media = read_manifest(synthetic_dir / "manifest.csv", dataset="mosi").samples
    joined = join_media(features, media)
    assert [s.id for s in joined] == [s.id for s in features]
    assert all(s.video is not None and s.video.is_file() and s.features for s in joined)
    with pytest.raises(DataError, match=rf"{re.escape(features[0].id)}.*'id'.*not in the media"):
        join_media(features, [m for m in media if m.id != features[0].id])
    with pytest.raises(DataError, match=r"'label'"):
        join_media(features, [replace(media[0], label=media[0].label + 0.5), *media[1:]])


def test_feature_and_media_effects_agree(synthetic_dir):
    features = read_mmsa_pickle(synthetic_dir / "unaligned.pkl", dataset="mosi", layout="unaligned").samples
    samples = join_media(features, read_manifest(synthetic_dir / "manifest.csv", dataset="mosi").samples)
    effects = protocol_effects(samples, MissingnessProtocol(inter_rate=0.5, intra_rate=0.4, seed=1))
    for effect in effects:
        assert effect.feature_integrity == effect.media_integrity
    summary = summarise_effects(effects)
    assert summary["samples"] == 16
    assert abs(sum(summary["kept_share"].values()) - 1) < 1e-9
    assert summary["mean_feature_integrity"] == summary["mean_media_integrity"]
    assert all(value < 0.9 for value in summary["mean_feature_integrity"].values())


def test_demo_script_runs_end_to_end(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts/demo_missingness.py"), "--out", str(tmp_path),
                          "--n", "12"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "missingness.json").read_text())
    assert len(report) == 5
    identity, _, intra = report[0], report[1], report[2]
    assert identity["mean_feature_integrity"] == {"text": 1.0, "audio": 1.0, "vision": 1.0}
    assert all(value < 1.0 for value in intra["mean_media_integrity"].values())
