"""Entry point for analysis experiments (initialization studies, Hessian spectra, ...).

    python -m experiments.analyze --config experiments/configs/NAME.py [--workdir DIR]
                                  [--config.KEY=VALUE ...]

An analysis config holds ``name`` (a registered analysis), ``seed``, the analysis' own
options and, for analyses that train, a ``train`` section that is a full training config
(validated like any ``experiments.train`` config). Results are written to
``<workdir>/results.json`` and figures to ``<workdir>/*.png``; the workdir defaults to
``runs/<config name>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys

from jaxdl.config import ConfigError, apply_overrides, load_config_file, parse_override_args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides, rest = parse_override_args(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m experiments.analyze",
                                     description="Run an analysis experiment config.")
    parser.add_argument("--config", required=True, help="config file or name")
    parser.add_argument("--workdir", default=None, help="output directory (default runs/NAME)")
    args = parser.parse_args(rest)
    from experiments.analyses import ANALYSES
    from jaxdl.train.experiment import REGISTRIES, validate_config

    try:
        config = load_config_file(args.config)
        registries = {f"train.{k}": v for k, v in REGISTRIES.items()}
        apply_overrides(config, overrides, registries=registries)
        options = {k: v for k, v in config.items() if k != "train"}
        ANALYSES.check_kwargs(options.pop("name", ""), options, field="analysis")
        if "train" in config:
            validate_config(config.train)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    workdir = pathlib.Path(args.workdir or pathlib.Path("runs") / pathlib.Path(args.config).stem)
    workdir.mkdir(parents=True, exist_ok=True)

    from jaxdl.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    analysis = ANALYSES.get(config.name, field="name")
    kwargs = {k: (v.to_dict() if hasattr(v, "to_dict") else v)
              for k, v in config.items() if k not in ("name", "train")}
    if "train" in config:
        kwargs["train"] = config.train
    try:  # analyses check their own options before computing anything
        results = analysis(workdir=workdir, **kwargs)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results.get("summary", results), indent=2, default=float))
    print(f"workdir: {workdir} (results.json, {', '.join(results.get('figures', []))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
