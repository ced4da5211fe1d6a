r"""Adversarial attacks with evaluation, and fooling images. Needs CIFAR-10.

  python experiments/adversarial.py --config=experiments/configs/adversarial.py \
      --workdir=runs/adversarial
  python experiments/adversarial.py --config=experiments/configs/adversarial.py \
      --workdir=runs/adversarial --config.steps=50 --config.norm=l2 \
      --config.eps=0.5 --config.step_size=0.1 --config.targeted=True

The fooling figure of the README (94 of 100 reach p >= 0.9 at 4/255):

  python experiments/adversarial.py --config=experiments/configs/adversarial.py \
      --workdir=runs/fooling --config.n=100

Args (`--config=...adversarial.py:ARG`): "" (default) or "smoke" (16 images, 2
attack steps, 8 fooling images with 2 steps: a CPU-sized run for tests).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the adversarial config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "adversarial")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"       # A CIFAR-10 classifier.
  c.weights = config_dict.placeholder(str)  # Converted weights; None: shipped.
  c.data = "../shared/data/cifar10-jpeg.tar"  # CIFAR-10 location.
  c.attack = "pgd"            # One of cnnviz_jax.adversarial.ATTACKS.
  c.norm = "linf"             # Threat model: "linf" or "l2".
  # 8/255 and 2/255 in 10 steps: the standard CIFAR-10 L-inf setting
  # (Madry et al. 2018, section 5).
  c.eps = 8 / 255
  c.steps = 10                # PGD steps (FGSM: one step of size eps).
  c.step_size = 2 / 255       # PGD step size.
  c.restarts = 1              # PGD runs (random restarts).
  c.targeted = False          # Random target classes.
  c.n = 1000                  # Correctly classified test images attacked.
  # Fooling images: the first `fool_images` attacked images turned into their
  # runner-up class; metrics report how many reach probability >= 0.9.
  c.fool_images = 100
  c.fool_eps = 4 / 255        # L-inf budget for fooling images (invisible).
  c.fool_steps = 100          # As adversarial.FOOL_STEPS (cosine step decay).
  c.fool_show = 8             # Fooling images drawn in fooling.png.
  c.seed = 0
  if arg == common.SMOKE:
    c.n = 16
    c.steps = 2
    c.fool_images = 8
    c.fool_steps = 2
  return c
