r"""Attribution maps and their faithfulness (deletion / insertion AUC).

  python experiments/saliency.py --config=experiments/configs/saliency.py \
      --workdir=runs/saliency
  python experiments/saliency.py --config=experiments/configs/saliency.py \
      --workdir=runs/saliency --config.model=vgg16 \
      --config.weights=vgg16.safetensors --config.images=../shared/data/images \
      --config.methods=saliency,grad_cam --config.metric_steps=8

Args (`--config=...saliency.py:ARG`): "" (default) or "smoke" (the random
`tiny` model on two synthetic images, four methods, 4 curve points: a
CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the saliency config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "saliency")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"
  # Converted weights; None: shipped, else random init from `seed`.
  c.weights = config_dict.placeholder(str)
  # A CIFAR-10 archive, a folder or comma list of image files, or "synthetic";
  # None: ../shared/data/cifar10-jpeg.tar when present, else "synthetic".
  # Targets are the true labels for CIFAR, else the model's predictions.
  c.images = config_dict.placeholder(str)
  # Comma list of cnnviz_jax.attribution.METHODS.
  c.methods = ("saliency,guided_backprop,smoothgrad,integrated_gradients,"
               "grad_cam,guided_grad_cam,occlusion")
  c.num_images = 8
  c.layer = config_dict.placeholder(str)  # Grad-CAM layer; None: last spatial relu.
  c.seed = 0                  # Random init, synthetic images, SmoothGrad, random map.
  c.metric_steps = 16         # Deletion/insertion curve points.
  # Deletion/insertion block side in pixels (1: single pixels, as Petsiuk et
  # al. at 224x224; on 32x32 images single pixels act like noise).
  c.metric_patch = 4
  if arg == common.SMOKE:
    c.model = "tiny"
    c.images = "synthetic"
    c.methods = "saliency,grad_cam,occlusion,smoothgrad"
    c.num_images = 2
    c.metric_steps = 4
  return c
