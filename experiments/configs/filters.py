r"""A convolution's learned filters as one picture.

  python experiments/filters.py --config=experiments/configs/filters.py \
      --workdir=runs/filters
  python experiments/filters.py --config=experiments/configs/filters.py \
      --workdir=runs/filters_alexnet --config.model=alexnet \
      --config.weights=alexnet.safetensors

Args (`--config=...filters.py:ARG`): "" (default) or "smoke" (the random
`tiny` model: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the filters config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "filters")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # None: shipped, else random init.
  c.layer = config_dict.placeholder(str)    # A conv layer; None: the first.
  # Deeper layers: at most this many output filters (rows) and input
  # channels (columns) of grayscale tiles.
  c.max_filters = 32
  c.max_inputs = 32
  c.scale = 8          # Pixels per weight in the PNG (nearest neighbour).
  c.seed = 0           # Random initialization when there are no weights.
  if arg == common.SMOKE:
    c.model = "tiny"
    c.max_filters = 4
    c.max_inputs = 4
    c.scale = 2
  return c
