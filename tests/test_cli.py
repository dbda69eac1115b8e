"""``python -m experiments.train``: bad input is refused before anything is built."""

import subprocess
import sys

from experiments import train


def test_unknown_key_is_refused_with_its_name(capsys, tmp_path):
    code = train.main(["--workdir", str(tmp_path), "--config.optimizer.learnin_rate=1e-3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "config.optimizer.learnin_rate" in err and "Did you mean 'learning_rate'" in err
    assert not (tmp_path / "checkpoints").exists()


def test_wrong_type_is_refused(capsys, tmp_path):
    assert train.main(["--workdir", str(tmp_path), "--config.num_steps=ten"]) == 2
    assert "config.num_steps='ten': expected a value of type int" in capsys.readouterr().err


def test_missing_config_file(capsys):
    assert train.main(["--config", "experiments/configs/nope.py"]) == 2
    assert "no config file" in capsys.readouterr().err


def test_config_by_name_and_override_runs(capsys, tmp_path):
    code = train.main(["--config", "quickstart", "--workdir", str(tmp_path),
                       "--config.num_steps=12", "--config.eval_every=0",
                       "--config.mesh.data=1", "--config.progress_bar=false",
                       "--config.optimizer.warmup_steps=2", "--config.model.features=(8,)"])
    assert code == 0
    out = capsys.readouterr().out
    assert "final held-out metrics at step 12" in out and "held-out accuracy:" in out
    assert (tmp_path / "metrics.jsonl").exists() and (tmp_path / "curves.png").exists()


def test_help_lists_options():
    done = subprocess.run([sys.executable, "-m", "experiments.train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--config.KEY=VALUE" in done.stdout
