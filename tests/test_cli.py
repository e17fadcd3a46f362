"""The `omni-msa` command run as a user runs it (subprocesses, no model training): it starts under
python -m and torchrun, every subcommand has its help, and bad input exits with status 2 and one
`error:` line (a traceback only with --debug)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omni_msa.cli import main

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["train", "score", "compare", "tune", "report", "plan", "train-classic", "sweep", "score-classic",
               "check-media", "extract"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # this checkout's omni_msa, also for scripts/*.py (whose own folder would come first on sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture()
def duplicate_id_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m1.csv"
    path.write_text("id,split,label,text\na1,valid,0.5,a fine film\na2,valid,-1.0,dull\na1,valid,2.0,again\n")
    return path


def test_help_lists_every_subcommand():
    result = run("-m", "omni_msa", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: omni-msa")
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_torchrun_starts_the_command():
    result = run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "omni_msa", "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: omni-msa" in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: omni-msa {command}") and "--debug" in out


def test_a_bad_manifest_is_one_error_line(duplicate_id_manifest, tmp_path):
    out = tmp_path / "preds.jsonl"
    result = run("-m", "omni_msa", "score", "--backbone", "tiny-thinker", "--manifest", str(duplicate_id_manifest),
                 "--out", str(out))
    line = assert_one_error_line(result, "sample 'a1'", "field 'id'", "m1.csv", "duplicate id")
    assert line.startswith("error: sample 'a1', field 'id', in ")
    assert not out.exists(), "nothing is scored from a manifest that does not load"


def test_debug_shows_the_traceback(duplicate_id_manifest, tmp_path):
    for debug_args in (["--debug", "score"], ["score", "--debug"]):     # global flag, or after the subcommand
        result = run("-m", "omni_msa", *debug_args, "--backbone", "tiny-thinker", "--manifest",
                     str(duplicate_id_manifest), "--out", str(tmp_path / "preds.jsonl"))
        assert result.returncode == 2
        assert "Traceback (most recent call last)" in result.stderr
        assert "DataError: sample 'a1', field 'id'" in result.stderr
        assert not any(line.startswith("error: ") for line in result.stderr.splitlines())


@pytest.mark.parametrize(("command", "config", "override", "fragment"), [
    ("train", "tiny_thinker_synthetic.yaml", "optim.learning_rate=0.1",
     "scripts/configs/tiny_thinker_synthetic.yaml: unknown key 'optim.learning_rate' (known: "),
    ("compare", "compare_demo.yaml", "omni.bogus=1", "scripts/configs/compare_demo.yaml: unknown key 'omni.bogus'"),
    ("train-classic", "mdf_synthetic.yaml", "train.learning_rate=0.1",
     "scripts/configs/mdf_synthetic.yaml: unknown key 'train.learning_rate'"),
])
def test_a_bad_config_key_is_one_error_line(command, config, override, fragment):
    result = run("-m", "omni_msa", command, "--config", f"scripts/configs/{config}", override)
    assert_one_error_line(result, fragment)


def test_a_missing_config_file_is_one_error_line(tmp_path):
    result = run("-m", "omni_msa", "train-classic", "--config", str(tmp_path / "nowhere.yaml"))
    assert_one_error_line(result, "nowhere.yaml")


def test_the_scripts_are_the_same_command(tmp_path):
    """A script users already launch runs the same code, with the same error handling."""
    result = run("scripts/train_classic.py", "--config", "scripts/configs/mdf_synthetic.yaml", "train.learning_rate=1")
    assert_one_error_line(result, "unknown key 'train.learning_rate'")
    result = run(str(ROOT / "scripts" / "report.py"), str(tmp_path), cwd=tmp_path)
    assert_one_error_line(result, "runs.jsonl")


def test_a_bad_argument_value_is_a_usage_error(tmp_path):
    result = run("-m", "omni_msa", "score", "--backbone", "tiny-thinker", "--manifest", "m.csv", "--out",
                 str(tmp_path / "p.jsonl"), "--intra-rate", "often")
    assert result.returncode == 2
    assert "argument --intra-rate: 'often' is neither a number nor 'uniform'" in result.stderr


TINY_MDF = "model={name: mdf, dim: 16, lstm_hidden: 8, mapper_hidden: 16, extractor_hidden: 16, " \
           "predictor_hidden: 16, generator_hidden: 16}"


def test_score_classic_has_its_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["score-classic", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: omni-msa score-classic") and "--keep" in out and "--debug" in out


def test_a_train_classic_checkpoint_scores_another_features_file(tmp_path):
    """train-classic, then one score-classic command on a second features file; the script resumes it."""
    from omni_msa.data.synthetic import make_synthetic
    from omni_msa.files import read_json
    from omni_msa.scoring_io import read_predictions

    run_dir = tmp_path / "run"
    trained = run("-m", "omni_msa", "train-classic", "--config", "scripts/configs/mdf_synthetic.yaml", "--quiet",
                  f"output_dir={run_dir}", "data.synthetic_n=80", "train.stages=[{epochs: 1}]", "eval_protocols=[{}]",
                  TINY_MDF)
    assert trained.returncode == 0, trained.stderr[-3000:]
    samples = make_synthetic(40, tmp_path / "new", seed=1, with_media=False)
    out = tmp_path / "preds.jsonl"
    args = ["--checkpoint", str(run_dir / "seed0"), "--features", str(tmp_path / "new" / "unaligned.pkl"),
            "--layout", "unaligned", "--split", "valid", "--out", str(out), "--inter-rate", "0.3"]
    scored = run("-m", "omni_msa", "score-classic", *args)
    assert scored.returncode == 0, scored.stderr[-3000:]
    valid = sorted(s.id for s in samples if s.split == "valid")
    assert valid and sorted(row["id"] for row in read_predictions(out)) == valid
    metrics = read_json(tmp_path / "preds.metrics.json")
    assert metrics["n"] == len(valid) and metrics["protocol"]["inter_rate"] == 0.3 and metrics["model"] == "mdf"
    first = {row["id"]: row["pred"] for row in read_predictions(out)}
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-2]))                              # the last two rows lost
    resumed = run("scripts/score_classic.py", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert out.read_text().startswith("".join(lines[:-2])), "rows already written are kept"
    assert {row["id"]: row["pred"] for row in read_predictions(out)} == pytest.approx(first, abs=1e-6)
    assert len(out.read_text().splitlines()) == len(valid)


def test_score_classic_bad_input_is_one_error_line(tmp_path):
    features = tmp_path / "unaligned_50.pkl"
    result = run("-m", "omni_msa", "score-classic", "--checkpoint", str(tmp_path / "no_run"), "--features",
                 str(features), "--out", str(tmp_path / "p.jsonl"))
    assert_one_error_line(result, "no_run", "no checkpoint")
    result = run("-m", "omni_msa", "score-classic", "--checkpoint", str(tmp_path), "--features", str(features),
                 "--out", str(tmp_path / "p.jsonl"), "--keep", "text,smell")
    assert_one_error_line(result, "keep must be a non-empty subset")
    assert not (tmp_path / "p.jsonl").exists()


def test_check_media_has_its_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check-media", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: omni-msa check-media") and "--manifest" in out and "--checkpoint" in out


def test_check_media_exits_0_on_a_generated_manifest(tmp_path, tiny_thinker_dir):
    from omni_msa.data.synthetic import make_synthetic

    samples = make_synthetic(2, tmp_path / "data", seed=0)
    report = tmp_path / "results" / "clips.md"
    result = run("-m", "omni_msa", "check-media", "--manifest", str(tmp_path / "data" / "manifest.csv"),
                 "--out", str(report), "--backbone", str(tiny_thinker_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"2 clips decoded, 0 with an error -> {report}")
    text = report.read_text()
    assert text.count("Command: `omni-msa check-media --manifest ") == 1
    assert all(f"| `{sample.id}` |" in text for sample in samples)
    assert "None: every clip went through every step." in text


def test_check_media_on_a_missing_manifest_is_one_error_line(tmp_path):
    result = run("-m", "omni_msa", "check-media", "--manifest", str(tmp_path / "nowhere.csv"))
    assert_one_error_line(result, "nowhere.csv", "file not found")


def test_compare_only_names_a_contender_of_the_comparison():
    result = run("-m", "omni_msa", "compare", "--config", "scripts/configs/compare_demo.yaml", "--only", "nosuch")
    assert_one_error_line(result, "--only nosuch: not a contender of this comparison", "discriminative")


def test_tune_needs_a_dev_split_and_searchable_settings():
    result = run("-m", "omni_msa", "tune", "--config", "scripts/configs/compare_demo.yaml", "--grid", "lr=1e-4,2e-4",
                 "--max-steps", "2")
    assert_one_error_line(result, "a recipe search selects on the dev split; set data.dev_fraction")
    result = run("-m", "omni_msa", "tune", "--config", "scripts/configs/compare_demo.yaml", "--grid", "epochs=1,2",
                 "--max-steps", "2", "data.dev_fraction=0.2", "classic=[]")
    assert_one_error_line(result, "['epochs'] are held fixed by the comparison")


def test_tune_grid_values_are_read_like_config_values():
    from omni_msa.cli.omni import _grid

    assert _grid(["lr=1e-4,2.0e-4", "optim.warmup_ratio=0,.05"]) == {"lr": [1e-4, 2e-4], "warmup_ratio": [0, 0.05]}, \
        "1e-4 (no dot, a string to YAML 1.1) is a float, as in a config file"


def test_the_recorded_comparison_command_computes_every_row():
    from omni_msa.cli.omni import whole_grid_command

    assert whole_grid_command("omni-msa compare --config c.yaml --only a --only=b --no-report seeds=[0]") == \
        "omni-msa compare --config c.yaml 'seeds=[0]'"
