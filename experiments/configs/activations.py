r"""Activation maps of one image at some layers (Yosinski et al. 2015).

  python experiments/activations.py --config=experiments/configs/activations.py \
      --workdir=runs/activations
  python experiments/activations.py --config=experiments/configs/activations.py \
      --workdir=runs/activations --config.layers=relu1_1,relu4_1 --config.top=8

Args (`--config=...activations.py:ARG`): "" (default) or "smoke" (the random
`tiny` model on a synthetic image: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the activations config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "activations")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # None: shipped, else random init.
  # A CIFAR-10 archive, an image folder or "synthetic"; None:
  # ../shared/data/cifar10-jpeg.tar when present, else "synthetic".
  c.data = config_dict.placeholder(str)
  c.index = 0              # Which test image (CIFAR classes interleaved).
  c.layers = "relu1_1,relu2_2,relu3_2,relu4_1"  # Comma list of spatial layers.
  c.top = 16               # Strongest channels shown per layer (0: all).
  c.seed = 0
  if arg == common.SMOKE:
    c.model = "tiny"
    c.data = "synthetic"
    c.layers = "relu1_1,relu2_1"
    c.top = 4
  return c
