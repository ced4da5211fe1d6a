r"""DeepDream (Mordvintsev et al. 2015) on any photograph at any size.

  python experiments/deepdream.py --config=experiments/configs/deepdream.py \
      --workdir=runs/deepdream
  python experiments/deepdream.py --config=experiments/configs/deepdream.py \
      --workdir=runs/deepdream --config.image=../shared/data/images/tubingen.jpg \
      --config.max_side=256 --config.model=vgg16 \
      --config.weights=vgg16.safetensors --config.layer=relu4_2 --config.octaves=4

Args (`--config=...deepdream.py:ARG`): "" (default) or "smoke" (2 octaves of 2
steps on a 48-pixel image: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the deepdream config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "deepdream")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  # Photo; None: scikit-learn's china.jpg, or a made pattern when absent.
  c.image = config_dict.placeholder(str)
  c.max_side = 128            # Bound on the longer side.
  c.layer = "relu3_2"         # Layer to amplify.
  c.octaves = 3
  c.octave_scale = 1.4        # Size ratio between octaves (> 1).
  c.steps = 10                # Steps per octave.
  c.learning_rate = 0.01      # Pixel step per step (divided by mean |g|).
  # Random circular shift range in pixels; None: 1/16 of the shorter side.
  c.roll = config_dict.placeholder(int)
  c.seed = 0
  if arg == common.SMOKE:
    c.steps = 2
    c.octaves = 2
    c.max_side = 48
    c.layer = "relu2_1"
  return c
