"""What every launcher shares: its `--config`/`--workdir` flags (with a clear
error for an unknown `--config.KEY`), the cheap checks a launcher makes before
it computes anything, named PRNG keys, and its JSON outputs (`metrics.json`,
the resolved `config.json`).

A launcher is `run(config, workdir) -> metrics` plus a thin `main` (as flax's
`examples/imagenet/main.py` calls `train.train_and_evaluate`); its flags are
defined only when it runs as a script, so tests and the gallery import every
launcher into one process and call `run`:

    def run(config, workdir: str) -> dict:
      ...

    if __name__ == "__main__":
      launch.main("class_viz", run)
"""

import difflib
import importlib.util
import json
import os
import re
import sys
import zlib
from typing import Any, Callable, Iterable, Optional, Sequence

from absl import app, flags, logging
import jax
from ml_collections import config_dict, config_flags

from cnnviz_jax import models
from cnnviz_jax.data import CIFAR10_CLASSES
from cnnviz_jax.io import write_json

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def default_config_path(name: str) -> str:
  """`experiments/configs/<name>.py`, absolute (works from any directory)."""
  return os.path.join(CONFIGS, f"{name}.py")


def define_flags(name: str):
  """Defines `--config` (default `experiments/configs/<name>.py`, from any
  working directory; `:smoke` for tests) and `--workdir` (default
  `runs/<name>`). Returns the two flag holders."""
  config = config_flags.DEFINE_config_file(
      "config", default_config_path(name),
      "Config file, optionally with `:smoke`.")
  workdir = flags.DEFINE_string("workdir", f"runs/{name}", "Output folder.")
  return config, workdir


def load_config(spec: str) -> config_dict.ConfigDict:
  """The config named by a `--config` value: `path.py` or `path.py:arg`
  (`get_config(arg)` of that file)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} not found.")
  module_spec = importlib.util.spec_from_file_location("_launch_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def config_keys(config: config_dict.ConfigDict, prefix: str = "") -> list[str]:
  """Every settable key of `config`, nested ones dotted (`a.b`), sorted."""
  keys = []
  for k, v in config.items():
    keys.append(prefix + k)
    if isinstance(v, config_dict.ConfigDict):
      keys.extend(config_keys(v, prefix + k + "."))
  return sorted(keys)


def unknown_overrides(config: config_dict.ConfigDict,
                      argv: Sequence[str]) -> list[str]:
  """The `--config.KEY=...` (or `--noconfig.KEY`) overrides in `argv` whose
  KEY is not in `config`, as written (`--config.KEY`)."""
  valid = set(config_keys(config))
  unknown = []
  for arg in argv:
    # The pattern ml_collections uses to find overrides (config_flags.py).
    m = re.match(r"^-{1,2}(no)?config\.([^=]+)", arg)
    if m and m.group(2) not in valid:
      unknown.append(f"--config.{m.group(2)}")
  return unknown


def _config_spec(argv: Sequence[str], default: str) -> str:
  """The `--config` value in `argv` (`--config=X` or `--config X`)."""
  for i, arg in enumerate(argv):
    if arg.startswith(("--config=", "-config=")):
      return arg.split("=", 1)[1]
    if arg in ("--config", "-config") and i + 1 < len(argv):
      return argv[i + 1]
  return default


def check_overrides(argv: Sequence[str], default: str) -> None:
  """Raises ValueError naming any unknown `--config.KEY` in `argv` and listing
  the valid keys; ml_collections itself fails with `AttributeError: "'KEY'"`.

  Args:
    argv: the command line.
    default: the config file used when `argv` names none.
  """
  if not any(re.match(r"^-{1,2}(no)?config\.", a) for a in argv):
    return
  spec = _config_spec(argv, default)
  config = load_config(spec)
  unknown = unknown_overrides(config, argv)
  if unknown:
    keys = config_keys(config)
    close = {k for u in unknown
             for k in difflib.get_close_matches(u[len("--config."):], keys, n=1)}
    raise ValueError(
        f"unknown config key{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(unknown)} for --config={spec}; valid keys: "
        f"{', '.join(keys)}."
        + (f" Did you mean {', '.join(sorted(close))}?" if close else ""))


def check_no_args(argv: Sequence[str]) -> None:
  """Raises app.UsageError when positional arguments follow the flags (a
  mistyped flag would otherwise be ignored)."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def main(name: str, run: Callable[[config_dict.ConfigDict, str], dict]) -> None:
  """The `__main__` of launcher `name`: checks the `--config.KEY` overrides
  (an unknown one exits with status 1 and a message, as absl does for a bad
  flag), defines `--config`/`--workdir`, calls `run(config, workdir)` and
  prints its metrics as JSON."""
  # Before the flags exist: ml_collections parses the default config and its
  # overrides as soon as `--config` is defined, and fails there with a bare
  # `AttributeError: "'KEY'"`.
  try:
    check_overrides(sys.argv, default_config_path(name))
  except ValueError as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)
  config, workdir = define_flags(name)

  def _main(argv):
    check_no_args(argv)
    logging.set_verbosity(logging.INFO)
    quiet_backend_probe()
    metrics = run(config.value, workdir.value)
    print(json.dumps(metrics, indent=1))
    print(f"wrote {workdir.value}")

  app.run(_main)


def quiet_backend_probe() -> None:
  """Keeps JAX's accelerator probe below INFO: on a machine without a TPU it
  logs "Unable to initialize backend 'tpu'", which reads like an error but
  only says that no TPU library is installed (warnings still show)."""
  import logging as std_logging
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


# Cheap checks: each runs before any model is loaded or image computed.

def prepare_workdir(workdir: str) -> str:
  """Creates `workdir` (and parents) now, so that a bad one fails in
  milliseconds rather than after the computation. Returns it.

  Raises:
    ValueError: it cannot be created (e.g. a parent is a regular file) or
      written to.
  """
  if not workdir:
    raise ValueError("workdir must be a folder path; got an empty string.")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ValueError(f"cannot create workdir {workdir!r}: {e}") from e
  if not os.access(workdir, os.W_OK):
    raise ValueError(f"workdir {workdir!r} is not writable.")
  return workdir


def check_at_least(config: config_dict.ConfigDict, **minimums: float) -> None:
  """Raises ValueError unless every `config.<key>` is a number >= its minimum.

  Example: `check_at_least(config, steps=1, tv=0)`.
  """
  for key, low in minimums.items():
    value = config[key]
    if (isinstance(value, bool) or not isinstance(value, (int, float))
        or not value >= low):
      raise ValueError(f"config.{key} must be a number >= {low}; got {value!r}.")


def check_positive(config: config_dict.ConfigDict, *keys: str) -> None:
  """Raises ValueError unless every `config.<key>` is a number > 0."""
  for key in keys:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
      raise ValueError(f"config.{key} must be a number > 0; got {value!r}.")


def check_choice(config: config_dict.ConfigDict, key: str,
                 valid: Iterable[str]) -> None:
  """Raises ValueError unless `config.<key>` is one of `valid`."""
  valid = list(valid)
  if config[key] not in valid:
    raise ValueError(f"unknown config.{key} {config[key]!r}; valid: "
                     f"{', '.join(map(str, valid))}.")


def check_files(paths: Iterable[str], key: str) -> None:
  """Raises ValueError naming the first of `paths` (from `config.<key>`) that
  does not exist."""
  for path in paths:
    if not os.path.exists(path):
      raise ValueError(f"config.{key}: {path!r} not found.")


def split_list(value: str, key: str) -> list[str]:
  """`"a,b"` -> `["a", "b"]`; raises ValueError for an empty entry."""
  items = [s.strip() for s in str(value).split(",")]
  if not all(items):
    raise ValueError(f"config.{key} must be a comma list with no empty "
                     f"entries; got {value!r}.")
  return items


def int_list(config: config_dict.ConfigDict, key: str) -> tuple[int, ...]:
  """`config[key]` (`"96,160"`) as ints; raises ValueError naming the key."""
  try:
    return tuple(int(v) for v in split_list(config[key], key))
  except ValueError as e:
    raise ValueError(f"config.{key} must be a comma list of integers; got "
                     f"{config[key]!r}.") from e


def architecture(config: config_dict.ConfigDict) -> models.Model:
  """`config.model`'s architecture without weights: layer names, input size,
  class count, checked before any weights are read (a converted VGG16 is
  half a gigabyte). Raises ValueError for an unknown model name."""
  return models.build(config.model, None)


def check_cifar_classifier(arch: models.Model) -> None:
  """Raises ValueError unless `arch` has CIFAR-10's 10 outputs (launchers
  that pair the model with CIFAR-10 labels)."""
  if arch.num_classes != len(CIFAR10_CLASSES):
    raise ValueError(f"config.model must be a CIFAR-10 classifier "
                     f"({len(CIFAR10_CLASSES)} classes); {arch.name} has "
                     f"{arch.num_classes}.")


def check_layers(arch: models.Model, layers: Iterable[str], key: str) -> list[str]:
  """Canonical names of `layers` (from `config.<key>`); raises ValueError
  naming the config key and the model's valid layers."""
  out = []
  for layer in layers:
    try:
      out.append(arch.resolve(layer))
    except ValueError as e:
      raise ValueError(f"config.{key}: {e}") from e
  return out


def check_indices(values: Iterable[Any], size: int, key: str, what: str) -> list[int]:
  """`values` as ints in [0, size); raises ValueError for a non-integer or
  out-of-range entry (e.g. channel 1.7 or class 10 of 10)."""
  out = []
  for v in values:
    if isinstance(v, bool) or not float(v).is_integer():
      raise ValueError(f"config.{key} must hold integer {what} indices; got {v!r}.")
    if not 0 <= int(v) < size:
      raise ValueError(f"config.{key}: {what} {int(v)} out of range; valid: "
                       f"0..{size - 1}.")
    out.append(int(v))
  return out


def load_model(config: config_dict.ConfigDict, key: jax.Array) -> models.Model:
  """`config.model` with `config.weights` (None: shipped weights, else a
  random initialization from `key`, with a logged warning)."""
  if config.weights is not None:
    check_files([config.weights], "weights")
  return models.load_or_init(config.model, config.weights, key=key)


def key(seed: int, purpose: str) -> jax.Array:
  """The PRNG key for one random use of a run, named by `purpose` ("init",
  "synthesis", "targets", ...): distinct purposes get independent keys, and a
  key stays the same when another purpose is added (unlike a `split`)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed),
                            zlib.crc32(purpose.encode()))


def write_results(workdir: str, metrics: Optional[dict], config: Any) -> None:
  """Writes `metrics.json` (unless None) and `config.json` (a ConfigDict or a
  dict) into `workdir`, each atomically."""
  os.makedirs(workdir, exist_ok=True)
  if metrics is not None:
    write_json(os.path.join(workdir, "metrics.json"), metrics)
  write_json(os.path.join(workdir, "config.json"),
             config.to_dict() if hasattr(config, "to_dict") else config)
