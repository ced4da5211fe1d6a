r"""Maximally activating patches: for some channels of a layer, the k image
crops (receptive fields) with the strongest response over a dataset.

  python experiments/max_patches.py --config=experiments/configs/max_patches.py \
      --workdir=runs/max_patches
  python experiments/max_patches.py --config=experiments/configs/max_patches.py \
      --workdir=runs/max_patches --config.layer=relu4_1 --config.channels=0,5,9

Args (`--config=...max_patches.py:ARG`): "" (default) or "smoke" (the random
`tiny` model on 64 synthetic images: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the max_patches config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "max_patches")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # None: shipped, else random init.
  # A CIFAR-10 archive, an image folder or "synthetic"; None:
  # ../shared/data/cifar10-jpeg.tar when present, else "synthetic".
  c.data = config_dict.placeholder(str)
  c.split = "test"         # CIFAR-10 split searched.
  c.num_images = 10000     # Images searched (at most).
  c.layer = "relu3_2"      # A spatial layer.
  c.channels = "0,1,2,3,4,5,6,7,8,9,10,11"  # Comma list; "" for all.
  c.k = 9                  # Patches per channel.
  c.batch_size = 256
  c.scale = 3              # Pixels per image pixel in the PNG.
  c.seed = 0
  if arg == common.SMOKE:
    c.model = "tiny"
    c.data = "synthetic"
    c.num_images = 64
    c.layer = "relu2_1"
    c.channels = "0,1,2"
    c.k = 4
    c.batch_size = 16
    c.scale = 2
  return c
