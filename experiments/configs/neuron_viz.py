r"""Intermediate-neuron visualization: one image per channel of a layer.

  python experiments/neuron_viz.py --config=experiments/configs/neuron_viz.py \
      --workdir=runs/neuron_viz
  python experiments/neuron_viz.py --config=experiments/configs/neuron_viz.py \
      --workdir=runs/neuron_viz --config.steps=50 --config.layer=relu4_1 \
      --config.channels=0,1,2,3 --config.mean=True --config.diversity=0.5

Args (`--config=...neuron_viz.py:ARG`): "" (default) or "smoke" (5 steps, two
channels of relu2_1: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the neuron_viz config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "neuron_viz")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  c.layer = "relu3_2"
  c.channels = (0, 1, 2, 3)
  c.mean = False              # Channel mean instead of the center unit.
  c.diversity = 0.0           # Batch diversity weight (with mean=True).
  c.recipe = "yosinski"       # One of cnnviz_jax.synthesis.RECIPES.
  c.steps = 200
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 5
    c.channels = (0, 1)
    c.layer = "relu2_1"
  return c
