r"""Classifies images and saves a labelled picture.

  python experiments/classify.py --config=experiments/configs/classify.py \
      --workdir=runs/classify
  python experiments/classify.py --config=experiments/configs/classify.py \
      --workdir=runs/classify --config.images=a.jpg,b.png --config.top=5

Args (`--config=...classify.py:ARG`): "" (default) or "smoke" (the photographs
installed packages ship: no ../shared needed).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the classify config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "classify")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  # Converted weights (.safetensors); None: shipped (cifar_vgg), else a
  # random initialization (the test-only `tiny`).
  c.weights = config_dict.placeholder(str)
  # Comma list of image files, a folder of them, or "bundled" (photographs
  # installed packages ship); None: CIFAR-10 test images from `cifar` when
  # present, else bundled.
  c.images = config_dict.placeholder(str)
  c.cifar = "../shared/data/cifar10-jpeg.tar"  # CIFAR-10 archive for samples.
  c.per_class = 2             # CIFAR-10 test images per class.
  c.top = 3                   # Classes listed per image.
  if arg == common.SMOKE:
    c.images = "bundled"
  return c
