"""What a run records: metric writers (JSONL, TensorBoard) and PNG plots."""

from jaxdl.monitor.plots import plot_curves
from jaxdl.monitor.writers import MetricWriter, read_metrics

__all__ = ["MetricWriter", "plot_curves", "read_metrics"]
