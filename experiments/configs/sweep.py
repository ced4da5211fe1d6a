r"""A sweep of one synthesis technique over a grid of its numbers, as one
jitted computation sharded over every device of every process.

  python experiments/sweep.py --config=experiments/configs/sweep.py \
      --workdir=runs/sweep
  python experiments/sweep.py --config=experiments/configs/sweep.py:style_transfer \
      --workdir=runs/sweep_style --config.grid="style_weight=10,100,1000;tv_weight=0,10"
  python experiments/sweep.py --config=experiments/configs/sweep.py:deepdream \
      --workdir=runs/sweep_dream
  # Two processes on this machine (two CPU devices each), one per terminal:
  XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \
      python experiments/sweep.py --config=experiments/configs/sweep.py \
      --workdir=runs/sweep --config.coordinator=localhost:12355 \
      --config.num_processes=2 --config.process_id=0   # and =1 in the other

`grid` is `axis=v1,v2,...;axis=...`, outer axis first; the points are the
product of the axes, and the contact sheet has one row per value of all but
the last axis. The axes of each technique:
  class_viz: `class` (class indices) and the numbers of a synthesis recipe
    (`l2`, `tv`, `tv_beta`, `l1`, `jitter`, `roll`, `blur_sigma`,
    `blur_every`, `clip_norm`, `clip_contribution`, `learning_rate`) over
    `recipe`;
  deepdream: the recipe numbers, over no regularization (DeepDream's step:
    SGD divided by mean |g|, one octave) on `layer`;
  style_transfer: `style_weight`, `content_weight`, `tv_weight`,
    `dream_weight`, `learning_rate` (`cnnviz_jax.style.transfer_sweep`).

Args (`--config=...sweep.py:ARG`): "" (class_viz, the default),
"style_transfer" or "deepdream", each optionally with ",smoke" (the tiny
test model, 2 steps, a few points at 16x16: a CPU-sized run for tests);
"smoke" alone is "class_viz,smoke".
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common

TECHNIQUES = ("class_viz", "style_transfer", "deepdream")
# Default grids, outer axis first. class_viz: 3 x 3 x 8 = 72 points, a
# multiple of 8 (one TPU host's chips).
_GRIDS = {
    "class_viz": "l2=0,0.3,1;blur_sigma=0,0.5,1;class=0,1,2,3,4,5,6,7",
    "style_transfer": "style_weight=10,100,1000;tv_weight=0,10",
    "deepdream": "learning_rate=0.005,0.01,0.02;roll=0,2",
}
# 18 points: 18 is not a multiple of 4, so a run on 4 devices pads to 20
# and drops the padding; with blur and L2 on and off.
_SMOKE_GRIDS = {
    "class_viz": "l2=0,0.3,1;blur_sigma=0,0.5,1;class=0,1",
    "style_transfer": "style_weight=10,100,1000;tv_weight=0,10",
    "deepdream": "learning_rate=0.01,0.02;roll=0,2",
}


def parse(arg):
  """`(technique, smoke)` of a config argument as in the module docstring."""
  words = [w.strip() for w in (arg or "").split(",")] if arg else []
  for w in words:
    common.parse_arg(w, "sweep", accepted=(common.SMOKE, *TECHNIQUES))
  techniques = [w for w in words if w in TECHNIQUES]
  if len(techniques) > 1:
    raise ValueError(f"config sweep takes one technique; got {techniques}.")
  return (techniques or ["class_viz"])[0], common.SMOKE in words


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the sweep config; `arg` as in the module docstring."""
  technique, smoke = parse(arg)
  c = ml_collections.ConfigDict()
  c.technique = technique     # One of TECHNIQUES.
  c.grid = _GRIDS[technique]  # "axis=v1,v2;axis=...": see the module docstring.
  c.model = "cifar_vgg"
  c.weights = config_dict.placeholder(str)  # Converted weights (ImageNet models).
  c.recipe = "yosinski"       # class_viz: the base recipe the grid overrides.
  c.size = config_dict.placeholder(int)  # class_viz side; None: model input size.
  c.layer = "relu3_2"         # deepdream: the layer whose activations grow.
  c.image = config_dict.placeholder(str)  # deepdream/style content; None: china.jpg.
  c.style = config_dict.placeholder(str)  # style image; None: flower.jpg's petals.
  c.max_side = 64             # deepdream/style_transfer: the image's longer side.
  c.steps = 100
  c.chunk = 5                 # Steps per compiled chunk (engine.DEFAULT_CHUNK).
  c.seed = 0
  # Several processes: all three, or none (then `distributed` decides).
  c.coordinator = config_dict.placeholder(str)   # "HOST:PORT" of process 0.
  c.num_processes = config_dict.placeholder(int)
  c.process_id = config_dict.placeholder(int)
  # Without the three above: None calls `jax.distributed.initialize()` (which
  # finds its arguments itself) only when the environment names a cluster
  # (SLURM or Open MPI with several tasks, a multi-host TPU, or
  # JAX_COORDINATOR_ADDRESS); True always (a Cloud TPU pod slice whose
  # hosts only the metadata server knows); False never.
  c.distributed = config_dict.placeholder(bool)
  # Seconds before a silent process counts as dead and the others stop with
  # an error (JAX's default), and before a process that never joins does.
  c.heartbeat_timeout_s = 100
  c.init_timeout_s = 300
  if smoke:
    c.model = "tiny"
    c.grid = _SMOKE_GRIDS[technique]
    c.layer = "relu2_1"
    c.max_side = 16
    c.steps = 2
    c.chunk = 1               # Two chunks: the steady-state timing has one.
  return c
