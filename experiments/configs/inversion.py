r"""Feature inversion (Mahendran & Vedaldi 2015) from a ladder of layers.

  python experiments/inversion.py --config=experiments/configs/inversion.py \
      --workdir=runs/inversion
  python experiments/inversion.py --config=experiments/configs/inversion.py \
      --workdir=runs/inversion --config.steps=50 --config.layers=relu2_2,fc7 \
      --config.image=photo.jpg --config.size=32

Args (`--config=...inversion.py:ARG`): "" (default) or "smoke" (5 steps, two
shallow layers: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the inversion config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "inversion")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  c.layers = "relu1_1,relu2_2,relu3_2,relu4_1,fc7"  # Comma list, shallow to deep.
  # Image file; None: the first CIFAR-10 test image at `data`, or a
  # project-made picture when CIFAR-10 is absent.
  c.image = config_dict.placeholder(str)
  c.data = "../shared/data/cifar10-jpeg.tar"
  c.size = 32                 # Image side for `image`.
  c.steps = 300               # Optimization steps per layer.
  # The "mahendran" recipe's prior (Mahendran & Vedaldi 2015): TV^2, 0.05.
  c.tv = 0.05                 # Total-variation weight.
  c.tv_beta = 2.0             # Total-variation exponent.
  c.learning_rate = 0.05      # Adam on [0, 1] pixels.
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 5
    c.layers = "relu1_1,relu2_1"
  return c
