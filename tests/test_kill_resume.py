"""A run killed with SIGKILL at an arbitrary step and restarted ends bit-identical to a run
that was never interrupted (the reproducibility promise of ``experiments.train``)."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from jaxdl.checkpoint import Checkpointer
from jaxdl.monitor import read_metrics
from jaxdl.train import build_experiment
from tests.helpers import tiny_config, trees_equal

NUM_STEPS = 300
OVERRIDES = [
    f"--config.num_steps={NUM_STEPS}",
    "--config.checkpoint_every=25",
    "--config.keep_checkpoints=2",
    "--config.log_every=5",
    "--config.eval_every=0",
    "--config.mesh.data=1",
    "--config.progress_bar=false",
    "--config.plots=false",
    "--config.optimizer.warmup_steps=5",
]


def train_command(workdir):
    return [sys.executable, "-m", "experiments.train", "--workdir", str(workdir), *OVERRIDES]


def run_to_completion(workdir):
    done = subprocess.run(train_command(workdir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def last_logged_step(workdir):
    records = read_metrics(workdir, "train")
    return records[-1]["step"] if records else 0


@pytest.mark.slow
def test_sigkill_at_an_arbitrary_step_then_resume_is_bit_identical(tmp_path):
    kill_after = random.Random().randrange(40, 240)
    print(f"killing after step {kill_after}")
    victim = subprocess.Popen(train_command(tmp_path / "killed"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while last_logged_step(tmp_path / "killed") < kill_after:
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = last_logged_step(tmp_path / "killed")
    assert killed_at < NUM_STEPS

    resumed_log = run_to_completion(tmp_path / "killed")
    assert "resumed from step" in resumed_log
    run_to_completion(tmp_path / "straight")

    config = tiny_config(num_steps=NUM_STEPS)
    target = build_experiment(config).init_state()
    with Checkpointer(tmp_path / "killed" / "checkpoints") as a, \
            Checkpointer(tmp_path / "straight" / "checkpoints") as b:
        assert a.latest_step() == b.latest_step() == NUM_STEPS
        state_a, data_a = a.restore(NUM_STEPS, target)
        state_b, data_b = b.restore(NUM_STEPS, target)
    assert int(state_a.step) == NUM_STEPS
    assert trees_equal(state_a, state_b)  # params, optimizer state, rng: bit for bit
    assert data_a == data_b
    assert read_metrics(tmp_path / "killed") == read_metrics(tmp_path / "straight")
