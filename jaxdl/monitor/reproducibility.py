"""Reproducibility: what a run records about itself, and a determinism check.

Every run of the training loop writes :func:`run_record` into ``config.json``: the config,
the seed, the versions of the packages that decide the numbers, the git commit (and whether
the tree had uncommitted changes) and the devices. :func:`params_fingerprint` hashes a
parameter pytree bit-exactly, and :func:`compare_runs` / :func:`determinism_check` decide
whether two runs of the same config produced the same metrics and the same parameters
(on CPU XLA is deterministic, so any difference is a bug: an unseeded random source, a
data-order dependence on wall-clock, an uninitialised buffer).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import pathlib
import platform
import subprocess
import time
from typing import Any, NamedTuple

import jax
import numpy as np

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy",
            "ml_collections", "scikit-learn")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None where it is not installed."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(directory: str | pathlib.Path = ".") -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository at ``directory``."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True,
                                 timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def run_record(config: Any) -> dict[str, Any]:
    """A JSON-able record of everything that determines a run's numbers."""
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {
        "config": config_dict,
        "seed": config_dict.get("seed"),
        "packages": package_versions(),
        "python": platform.python_version(),
        "git": git_state(pathlib.Path(__file__).resolve().parent),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "jax": jax.__version__,  # kept at the top level for older readers of config.json
    }


def params_fingerprint(tree: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes: equal iff bit-identical."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(tree)):
        array = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class RunComparison(NamedTuple):
    identical: bool
    params_equal: bool
    fingerprints: tuple[str, str]
    metric_differences: list[dict[str, Any]]  # one entry per differing (step, split, key)

    def __str__(self) -> str:
        if self.identical:
            return f"runs identical (params sha256 {self.fingerprints[0][:16]})"
        lines = ["runs DIFFER:"]
        if not self.params_equal:
            lines.append(f"  params sha256 {self.fingerprints[0][:16]} != "
                         f"{self.fingerprints[1][:16]}")
        for diff in self.metric_differences[:10]:
            lines.append(f"  step {diff['step']} {diff['split']}/{diff['key']}: "
                         f"{diff['a']!r} != {diff['b']!r}")
        return "\n".join(lines)


def _keyed(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {(r.get("step"), r.get("split")): r for r in records}


def compare_runs(params_a: Any, params_b: Any, metrics_a: list[dict[str, Any]],
                 metrics_b: list[dict[str, Any]]) -> RunComparison:
    """Compare two runs' final params (bit-exact) and metric records (exact equality)."""
    fingerprints = (params_fingerprint(params_a), params_fingerprint(params_b))
    a, b = _keyed(metrics_a), _keyed(metrics_b)
    differences = []
    for key in sorted(set(a) | set(b), key=lambda k: (k[0] or 0, str(k[1]))):
        ra, rb = a.get(key, {}), b.get(key, {})
        for name in sorted(set(ra) | set(rb)):
            if ra.get(name) != rb.get(name):
                differences.append({"step": key[0], "split": key[1], "key": name,
                                    "a": ra.get(name), "b": rb.get(name)})
    params_equal = fingerprints[0] == fingerprints[1]
    return RunComparison(params_equal and not differences, params_equal, fingerprints,
                         differences)


def determinism_check(config: Any, workdir: str | pathlib.Path) -> RunComparison:
    """Train ``config`` twice from scratch (``workdir/run_a``, ``workdir/run_b``) through the
    one training loop and compare the results."""
    from jaxdl.monitor.writers import read_metrics
    from jaxdl.train import train_and_evaluate

    results = []
    for name in ("run_a", "run_b"):
        run_dir = pathlib.Path(workdir) / name
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir} is not empty: the check needs fresh runs.")
        results.append(train_and_evaluate(config, run_dir, resume=False))
    strip = lambda records: [{k: v for k, v in r.items() if k != "time"} for r in records]
    return compare_runs(results[0].state.params, results[1].state.params,
                        strip(read_metrics(results[0].workdir)),
                        strip(read_metrics(results[1].workdir)))
