r"""Style transfer (Gatys et al. 2016): one content image, one or more styles.

  python experiments/style_transfer.py --config=experiments/configs/style_transfer.py \
      --workdir=runs/style_transfer
  python experiments/style_transfer.py --config=experiments/configs/style_transfer.py \
      --workdir=runs/style_transfer --config.content=../shared/data/images/tubingen.jpg \
      --config.styles=../shared/data/images/starry_night.jpg,../shared/data/images/the_scream.jpg \
      --config.style_weights=0.7,0.3 --config.optimizer=lbfgs --config.max_side=512 \
      --config.model=vgg19 --config.weights=vgg19.safetensors
  # A contact sheet over style weight x TV weight, one vmapped computation:
  python experiments/style_transfer.py --config=experiments/configs/style_transfer.py \
      --workdir=runs/style_sweep --config.sweep_style_weight=10,100,1000 \
      --config.sweep_tv_weight=0,10

Args (`--config=...style_transfer.py:ARG`): "" (default) or "smoke" (3 steps
at 32x48, a 2x2 sweep: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the style_transfer config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "style_transfer")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"       # Loss network: docs/style_loss_networks.png shows why.
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  # Content photo; None: scikit-learn's china.jpg (no download).
  c.content = config_dict.placeholder(str)
  # Comma list of style images; None: scikit-learn's flower.jpg.
  c.styles = config_dict.placeholder(str)
  c.style_weights = ""        # Comma list, one per style; "": equal.
  c.max_side = 256            # The content's (and output's) longer side.
  c.style_scale = 1.0         # Style size relative to the content's longer side.
  c.layers = ""               # Comma list of style layers; "": the model's default.
  c.content_layer = ""        # "": the model's default.
  c.style_weight = 100.0
  c.content_weight = 1.0
  c.tv_weight = 10.0
  c.init = "content"          # "content" or "noise".
  c.preserve_color = ""       # "", "luminance" or "histogram".
  c.dream_layer = ""          # Adds DeepDream on this layer when set.
  c.dream_weight = 0.0
  c.optimizer = "adam"        # "adam" or "lbfgs".
  c.learning_rate = 0.02
  c.steps = 300
  # A sweep when set: comma lists of style and TV weights (their product).
  c.sweep_style_weight = ""
  c.sweep_tv_weight = ""
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 3
    c.max_side = 48             # china.jpg at 32x48: cifar_vgg's minimum side.
    c.sweep_style_weight = "10,100"
    c.sweep_tv_weight = "0,10"
  return c
