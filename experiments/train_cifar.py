r"""Trains the shipped CIFAR-10 VGG and writes its folded weights.

  python experiments/train_cifar.py --workdir=runs/cifar \
      --output=cnnviz_jax/models/weights/cifar_vgg.safetensors \
      --config.data=../shared/data/cifar10-jpeg.tar

Restarting with the same --workdir resumes from the last epoch's checkpoint
(a changed config is refused, except more --config.epochs and epochs_per_run).
Smoke run: --config=experiments/configs/train_cifar.py:smoke.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from cnnviz_jax.models import train
from experiments import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(launch.CONFIGS, "train_cifar.py"),
    "Config file, optionally with `:smoke`.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar", "Checkpoints and logs.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write cifar_vgg weights.")


def run(config, workdir: str, output: str | None = None) -> dict:
  """Trains (or resumes) in `workdir`; see `models.train.train_and_evaluate`."""
  return train.train_and_evaluate(config, workdir, output)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  run(_CONFIG.value, _WORKDIR.value, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
