r"""Multifaceted feature visualization (Nguyen et al. 2016). Needs CIFAR-10.

  python experiments/multifaceted.py --config=experiments/configs/multifaceted.py \
      --workdir=runs/multifaceted
  python experiments/multifaceted.py --config=experiments/configs/multifaceted.py \
      --workdir=runs/multifaceted --config.steps=50 --config.target=5 --config.k=3

Args (`--config=...multifaceted.py:ARG`): "" (default) or "smoke" (2 steps, two
facets from 10 test images: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the multifaceted config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "multifaceted")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"       # A CIFAR-10 classifier: the facets are of its classes.
  c.weights = config_dict.placeholder(str)  # Converted weights; None: shipped.
  c.data = "../shared/data/cifar10-jpeg.tar"  # CIFAR-10 location.
  c.split = "train"           # "train" or "test".
  c.target = 3                # Class index.
  c.k = 4                     # Number of facets (clusters).
  c.images_per_class = 200    # Images of the class that are clustered.
  c.layer = "fc7"             # Feature space of the clustering (Nguyen et al.).
  c.recipe = "yosinski"       # One of cnnviz_jax.synthesis.RECIPES.
  # Weight of each facet's closeness to its cluster centre in `layer` space
  # (0: the class alone, which makes every facet the same picture).
  c.anchor = 1.0
  c.diversity = 0.0           # Weight of Lucid's Gram diversity across facets.
  c.steps = 200
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 2
    c.k = 2
    c.images_per_class = 10
    c.split = "test"
  return c
