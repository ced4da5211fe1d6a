r"""Classical texture synthesis (Efros & Leung 1999, scan-line order of Wei &
Levoy 2000): the baseline the lecture contrasts with neural textures.

  python experiments/texture_nonparametric.py \
      --config=experiments/configs/texture_nonparametric.py \
      --workdir=runs/texture_nonparametric --config.window=15

Args (`--config=...texture_nonparametric.py:ARG`): "" (default) or "smoke"
(a 12x12 output from a 20-pixel example: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the texture_nonparametric config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "texture_nonparametric")
  c = ml_collections.ConfigDict()
  # Example texture; None: a crop of scikit-learn's flower.jpg (no download).
  c.example = config_dict.placeholder(str)
  c.example_max_side = 64     # Candidates grow with its area (cost per pixel).
  c.size = 96                 # Output side.
  c.window = 11               # Odd neighbourhood side (Efros & Leung: 5..21).
  c.tolerance = 0.1           # Efros & Leung's epsilon.
  c.seed = 0
  if arg == common.SMOKE:
    c.example_max_side = 20
    c.size = 12
    c.window = 5
  return c
