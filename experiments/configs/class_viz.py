r"""Class model visualization (Simonyan et al. 2014; Yosinski et al. 2015).

  python experiments/class_viz.py --config=experiments/configs/class_viz.py \
      --workdir=runs/class_viz
  python experiments/class_viz.py --config=experiments/configs/class_viz.py \
      --workdir=runs/class_viz --config.steps=50 --config.classes=3,5 \
      --config.recipe=simonyan

Args (`--config=...class_viz.py:ARG`): "" (default) or "smoke" (5 steps, two
classes: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the class_viz config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "class_viz")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  c.classes = ()              # Class indices; empty: the first min(classes, 16).
  c.recipe = "yosinski"       # One of cnnviz_jax.synthesis.RECIPES.
  c.steps = 200
  c.size = config_dict.placeholder(int)  # Image side; None: model input size.
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 5
    c.classes = (0, 1)
  return c
