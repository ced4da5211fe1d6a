r"""Neural texture synthesis (Gatys et al. 2015) from one example image.

  python experiments/texture.py --config=experiments/configs/texture.py \
      --workdir=runs/texture
  python experiments/texture.py --config=experiments/configs/texture.py \
      --workdir=runs/texture --config.example=../shared/data/images/starry_night.jpg \
      --config.model=vgg19 --config.weights=vgg19.safetensors --config.size=256

Args (`--config=...texture.py:ARG`): "" (default) or "smoke" (5 steps at
32x32 on a 40-pixel example: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the texture config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "texture")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"       # Loss network: docs/style_loss_networks.png shows why.
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  # Example texture; None: a crop of scikit-learn's flower.jpg (no download).
  c.example = config_dict.placeholder(str)
  c.example_max_side = 128    # Bound on the example's longer side.
  c.size = 128                # Output side.
  c.layers = ""               # Comma list of style layers; "": the model's default.
  c.optimizer = "adam"        # "adam" or "lbfgs".
  c.learning_rate = 0.02      # Adam's step on [0, 1] pixels.
  c.steps = 300
  c.tv_weight = 0.0
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 5
    c.size = 32
    c.example_max_side = 40
  return c
