"""Metric writers: one JSON line per record in ``metrics.jsonl`` and TensorBoard events.

On resume the writer drops records past the restored step, so the log of a run that was
killed and resumed reads exactly like the log of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str | pathlib.Path, split: str | None = None) -> list[dict[str, Any]]:
    """The records of ``workdir/metrics.jsonl`` (optionally one split), skipping torn lines."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if split is None or record.get("split") == split:
            records.append(record)
    return records


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricWriter:
    """Append metrics to ``metrics.jsonl`` and, if enabled, a TensorBoard event file.

    Args:
      workdir: the run directory.
      resume_step: when resuming, records with ``step > resume_step`` are discarded.
      tensorboard: also write TensorBoard events under ``workdir/tensorboard``.
    """

    def __init__(self, workdir: str | pathlib.Path, *, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = self.workdir / METRICS_FILE
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                str(self.workdir / "tensorboard"),
                purge_step=None if resume_step is None else resume_step + 1,
            )

    def _truncate_after(self, step: int) -> None:
        kept = [r for r in read_metrics(self.workdir) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)

    def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        """Record ``metrics`` (scalars) for ``split`` ("train", "eval", ...) at ``step``."""
        values = {k: float(v) for k, v in metrics.items()}
        record = {"step": int(step), "split": split}
        record.update({k: _finite_or_none(v) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{split}/{name}", value, int(step))

    @property
    def tensorboard(self):
        """The tensorboardX ``SummaryWriter`` (None when TensorBoard is off)."""
        return self._tb

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
