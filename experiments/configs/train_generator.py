r"""Training config of the generator prior (`synthesis.load_generator`).

  python experiments/train_generator.py --config=experiments/configs/train_generator.py \
      --workdir=runs/generator --output=cnnviz_jax/synthesis/weights/generator.safetensors \
      --config.data=../shared/data/cifar10-jpeg.tar

Args (`--config=...train_generator.py:ARG`): "" (default) or "smoke" (a few
steps on 10 images per class: a CPU-sized run for tests).
"""

import ml_collections

from cnnviz_jax.data import DEFAULT_CIFAR
from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """The config that trained the shipped generator (model card in the
  README); `arg` "smoke" makes it CPU-sized."""
  arg = common.parse_arg(arg, "train_generator")
  c = ml_collections.ConfigDict()
  c.model = "cifar_vgg"     # the classifier whose features the code is
  c.weights = None          # None: the shipped weights
  c.data = DEFAULT_CIFAR
  c.train_limit = 0         # images per class (0 = all 5,000)
  c.seed = 0
  # Nguyen et al. (2016b) invert a fully connected layer (CaffeNet fc6); here
  # fc6 (256-d) before its ReLU, which keeps the information the ReLU drops
  # (41% of relu6 is zero on test images).
  c.code_layer = "fc6"
  # The feature (perceptual) loss: a conv layer of the same classifier, as
  # Dosovitskiy & Brox (2016) compare in a fixed network's feature space.
  # relu2_2 (16x16x128) is the cheapest layer that sees textures and not only
  # colours; relu3_2, whose Gram statistics measure naturalness, stays out of
  # training so that figure is independent.
  c.feature_layer = "relu2_2"
  c.widths = (256, 128, 64, 32)   # generator: 1.5M parameters, 6 MB
  c.disc_widths = (32, 64, 128)   # discriminator: small (Dosovitskiy & Brox)
  c.batch_size = 32
  # 1.3 epochs: 17 minutes on the shared 2-core CPU (README model card); the
  # pixel and feature losses were still falling at the end.
  c.steps = 2000
  c.steps_per_run = 0       # stop after this many steps (0: run to the end);
                            # restarting with the same workdir resumes
  c.steps_per_call = 2      # unrolled steps per jitted call (XLA:CPU loops)
  c.learning_rate = 2e-3    # Adam, warmup then cosine decay
  c.disc_learning_rate = 2e-4
  c.beta1 = 0.5             # Radford et al. (2016) for adversarial training
  c.warmup_steps = 20
  # Loss weights: pixels in [0, 1] (MSE 0.06 -> 0.04 in the shipped run), the
  # feature loss relative to the target's energy (1.07 -> 0.93), the
  # adversarial term small enough that reconstruction leads (Dosovitskiy &
  # Brox use it to sharpen; at 0.002 with relu6 codes the generator chased
  # the discriminator and its pixel loss stalled at 0.056 after 300 steps).
  c.pixel_weight = 1.0
  c.feature_weight = 0.1
  c.adversarial_weight = 0.0005
  c.log_every = 20
  c.checkpoint_every = 100
  if arg == common.SMOKE:
    c.train_limit = 10
    c.batch_size = 16
    c.steps = 6
    c.warmup_steps = 1
    c.log_every = 2
    c.checkpoint_every = 2
  return c
