r"""Training config of the shipped CIFAR-10 VGG.

  python experiments/train_cifar.py --config=experiments/configs/train_cifar.py \
      --workdir=runs/cifar --output=cnnviz_jax/models/weights/cifar_vgg.safetensors \
      --config.data=../shared/data/cifar10-jpeg.tar --config.epochs=60

Args (`--config=...train_cifar.py:ARG`): "" (default) or "smoke" (one epoch
on 50 images per class, 20 test images per class: a CPU-sized run for tests).
"""

import ml_collections

from cnnviz_jax.data import DEFAULT_CIFAR
from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """The training config of the shipped `cifar_vgg` (model card in the README);
  `arg` "smoke" makes it CPU-sized (a few images, one epoch)."""
  arg = common.parse_arg(arg, "train_cifar")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"     # any zoo model; tests train "tiny"
  c.data = DEFAULT_CIFAR
  c.seed = 0
  c.epochs = 40
  c.batch_size = 256
  c.peak_lr = 0.1           # SGD + Nesterov, one-cycle (linear up, then down)
  c.warmup_epochs = 2.0     # a number: fractions are fine (smoke)
  c.momentum = 0.9
  c.weight_decay = 5e-4
  # No label smoothing: it caps confidence near 0.92 and masks gradients (PGD
  # stalled at 0.93 success on the smoothed model), which adversarial and
  # class-visualization work on this model must not inherit.
  c.label_smoothing = 0.0
  c.eval_every = 5
  # Steps per jitted call, unrolled. XLA:CPU runs a while loop whose body holds
  # conv weight gradients ~40x slower than the same steps unrolled (measured:
  # 2 steps at batch 32, 39.5 s in `lax.scan` vs 0.9 s unrolled), so each call
  # runs a short unrolled chunk; on GPU the chunks dispatch asynchronously.
  c.steps_per_call = 4
  c.epochs_per_run = 0      # stop after this many epochs (0 = run to the end);
                            # restarting with the same workdir resumes
  c.train_limit = 0         # images per class (0 = all); for smoke tests
  c.test_limit = 0
  if arg == common.SMOKE:
    c.epochs = 1
    c.warmup_epochs = 0.3   # the warmup must end before 0.85 of the steps
    c.train_limit = 50
    c.test_limit = 20
  return c
