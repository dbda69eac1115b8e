"""Metric writers and plots."""

import json

from jaxdl.monitor import MetricWriter, plot_curves, read_metrics


def test_jsonl_and_tensorboard(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write(10, "train", {"loss": 1.5, "accuracy": 0.25})
    writer.write(10, "eval", {"loss": 1.75, "accuracy": 0.5})
    writer.write(20, "train", {"loss": float("nan"), "accuracy": 0.5})
    writer.close()
    records = read_metrics(tmp_path)
    assert records[0] == {"step": 10, "split": "train", "loss": 1.5, "accuracy": 0.25}
    assert records[2]["loss"] is None  # non-finite values stay valid JSON
    assert [r["step"] for r in read_metrics(tmp_path, "eval")] == [10]
    events = (tmp_path / "tensorboard").iterdir()
    assert any(p.name.startswith("events.out.tfevents") for p in events)


def test_resume_drops_records_after_the_checkpoint_and_torn_lines(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)
    for step in (10, 20, 30):
        writer.write(step, "train", {"loss": 1.0 / step})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "split": "tr')  # a write cut short by a kill
    writer = MetricWriter(tmp_path, resume_step=20, tensorboard=False)
    writer.write(30, "train", {"loss": 0.5})
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 30]
    assert json.loads(lines[-1])["loss"] == 0.5


def test_plot_curves_writes_a_png(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)
    for step in range(1, 6):
        writer.write(step, "train", {"loss": 1.0 / step, "accuracy": step / 5})
    writer.write(5, "eval", {"loss": 0.3, "accuracy": 0.9})
    writer.close()
    path = plot_curves(tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
