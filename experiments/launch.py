"""What every launcher shares: its `--config`/`--workdir` flags and its JSON
outputs (`metrics.json`, the resolved `config.json`)."""

import os
from typing import Any, Optional

from absl import flags
from ml_collections import config_flags

from cnnviz_jax.io import write_json

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def define_flags(name: str):
  """Defines `--config` (default `experiments/configs/<name>.py`, from any
  working directory; `:smoke` for tests) and `--workdir` (default
  `runs/<name>`). Returns the two flag holders."""
  config = config_flags.DEFINE_config_file(
      "config", os.path.join(CONFIGS, f"{name}.py"),
      "Config file, optionally with `:smoke`.")
  workdir = flags.DEFINE_string("workdir", f"runs/{name}", "Output folder.")
  return config, workdir


def write_results(workdir: str, metrics: Optional[dict], config: Any) -> None:
  """Writes `metrics.json` (unless None) and `config.json` (a ConfigDict or a
  dict) into `workdir`, each atomically."""
  os.makedirs(workdir, exist_ok=True)
  if metrics is not None:
    write_json(os.path.join(workdir, "metrics.json"), metrics)
  write_json(os.path.join(workdir, "config.json"),
             config.to_dict() if hasattr(config, "to_dict") else config)
