r"""Nearest neighbours in pixel space and in feature space, side by side,
and how often each shares the query's class (precision@k).

  python experiments/neighbors.py --config=experiments/configs/neighbors.py \
      --workdir=runs/neighbors
  python experiments/neighbors.py --config=experiments/configs/neighbors.py \
      --workdir=runs/neighbors --config.layer=relu6 --config.metric=cosine

The default measures 1,000 CIFAR-10 test queries against the 50,000 training
images (about 3 minutes of cifar_vgg on 2 CPU cores). Args
(`--config=...neighbors.py:ARG`): "" (default) or "smoke" (the random `tiny`
model on synthetic images: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the neighbors config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "neighbors")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # None: shipped, else random init.
  # A CIFAR-10 archive (queries: test split, database: train split), an
  # image folder (queries: its first images, database: all of them, minus
  # the query itself) or "synthetic"; None: ../shared/data/cifar10-jpeg.tar
  # when present, else "synthetic".
  c.data = config_dict.placeholder(str)
  c.num_queries = 1000
  c.num_database = 50000
  c.layer = "relu7"        # Feature space.
  c.metric = "l2"          # "l2" or "cosine" (both spaces).
  c.k = 5
  c.show = 8               # Queries drawn in neighbors.png.
  c.batch_size = 256
  c.seed = 0
  if arg == common.SMOKE:
    c.model = "tiny"
    c.data = "synthetic"
    c.num_queries = 6
    c.num_database = 40
    c.layer = "relu6"
    c.k = 3
    c.show = 3
    c.batch_size = 16
  return c
