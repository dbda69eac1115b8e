"""The one entry point for every experiment.

    python -m experiments.train [--config experiments/configs/NAME.py | NAME]
                                [--workdir DIR] [--no-resume] [--config.KEY=VALUE ...]

Without ``--config`` it runs the quickstart (a small CNN on scikit-learn's embedded digits).
The workdir defaults to ``runs/<config name>``; when it already holds a checkpoint the run
resumes from it. Overrides are checked against the config before anything is built.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from jaxdl.config import ConfigError, apply_overrides, load_config_file, parse_override_args

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "quickstart.py"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    overrides, rest = parse_override_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train",
        description="Train an experiment config; resume from its workdir's last checkpoint.",
        epilog="Override any config field with --config.KEY=VALUE, "
        "e.g. --config.optimizer.learning_rate=3e-4.",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="config file, or a name under experiments/configs/")
    parser.add_argument("--workdir", default=None, help="run directory (default runs/NAME)")
    parser.add_argument("--no-resume", action="store_true",
                        help="refuse to continue from an existing checkpoint")
    return parser.parse_args(rest), overrides


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        config = load_config_file(args.config)
        from jaxdl.train.experiment import REGISTRIES

        apply_overrides(config, overrides, registries=REGISTRIES)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    name = pathlib.Path(args.config).stem
    workdir = pathlib.Path(args.workdir or pathlib.Path("runs") / name)

    from jaxdl.compilation_cache import enable_compilation_cache
    from jaxdl.train import train_and_evaluate

    enable_compilation_cache()
    try:  # the config is validated in full before anything is built or written
        result = train_and_evaluate(config, workdir, resume=not args.no_resume)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from}")
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.eval_metrics.items()))
    print(f"final held-out metrics at step {int(result.state.step)}: {metrics}")
    if "accuracy" in result.eval_metrics:
        print(f"held-out accuracy: {100 * result.eval_metrics['accuracy']:.2f}%")
    print(f"workdir: {workdir} (metrics.jsonl, tensorboard/, curves.png, checkpoints/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
