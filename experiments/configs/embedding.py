r"""A 2-D map of a feature space: t-SNE (or PCA) of a layer's features, drawn
as a scatter coloured by class and as a full grid of the images.

  python experiments/embedding.py --config=experiments/configs/embedding.py \
      --workdir=runs/embedding
  python experiments/embedding.py --config=experiments/configs/embedding.py \
      --workdir=runs/embedding_pca --config.method=pca --config.layer=relu4_1

Args (`--config=...embedding.py:ARG`): "" (default) or "smoke" (the random
`tiny` model on 36 synthetic images, a short t-SNE: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the embedding config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "embedding")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # None: shipped, else random init.
  # A CIFAR-10 archive, an image folder or "synthetic"; None:
  # ../shared/data/cifar10-jpeg.tar when present, else "synthetic".
  c.data = config_dict.placeholder(str)
  c.split = "test"
  c.num_images = 1024
  c.layer = "relu7"
  c.method = "tsne"        # "tsne" or "pca".
  c.perplexity = 30.0
  c.max_iter = 1000        # t-SNE steps.
  c.grid = 32              # grid x grid images in grid.png (<= num_images).
  c.batch_size = 256
  c.seed = 0
  if arg == common.SMOKE:
    c.model = "tiny"
    c.data = "synthetic"
    c.num_images = 36
    c.layer = "relu6"
    c.perplexity = 5.0
    c.max_iter = 250
    c.grid = 6
    c.batch_size = 16
  return c
