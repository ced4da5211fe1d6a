r"""Training the AdaIN decoder (Huang & Belongie 2017): arbitrary style in one
forward pass, no style built into the network.

  nice python experiments/train_adain.py \
      --config=experiments/configs/train_adain.py --workdir=runs/adain
  # Other style images and photos:
  python experiments/train_adain.py --config=experiments/configs/train_adain.py \
      --workdir=runs/my_adain --config.styles=a.jpg,b.jpg --config.content=~/photos

Args (`--config=...train_adain.py:ARG`): "" (default: the shipped decoder's
recipe) or "smoke" (a few steps on 32 px crops, styles from installed
packages: a CPU-sized run for tests).
"""

import os

import ml_collections

from experiments.configs import common
from experiments.configs import train_fast_style as fast

# The shipped decoder never sees `held_out` (shipwreck): the preview and the
# tests stylize with it as with any new painting.
TRAINING_PAINTINGS = ("starry_night", "the_scream", "woman-with-hat-matisse")
HELD_OUT = "shipwreck"


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the train_adain config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "train_adain")
  c = ml_collections.ConfigDict()
  # Comma list of style images; crops of them (and of the content photos when
  # `photos_as_styles`) are the style half of each training pair.
  c.styles = ",".join(os.path.join(fast.SHARED_IMAGES, f"{p}.jpg")
                      for p in TRAINING_PAINTINGS)
  c.style_names = ""          # "": the file names
  c.photos_as_styles = True   # varied natural statistics besides the paintings
  # A style image the run never trains on, for the preview ("": none).
  c.held_out = os.path.join(fast.SHARED_IMAGES, f"{HELD_OUT}.jpg")
  # Content photos (as train_fast_style): a folder, or "" for the photographs
  # installed packages ship plus `extra_photos` where present.
  c.content = ""
  c.extra_photos = ",".join(os.path.join(fast.SHARED_IMAGES, f"{p}.jpg")
                            for p in fast.SHARED_PHOTOS)
  c.cifar = ""
  c.cifar_per_class = 500
  c.cifar_fraction = 0.25        # share of content crops: upsampled CIFAR-10
  c.style_cifar_fraction = 0.25  # share of style crops: CIFAR-10 images
  c.encoder = "cifar_vgg"
  c.layer = "relu3_1"
  c.style_layers = "relu1_1,relu2_1,relu3_1"
  c.crop = 64
  c.batch = 8
  c.steps = 4000
  c.learning_rate = 5e-4
  c.style_weight = 10.0
  c.content_weight = 1.0
  c.scales = "96,160,256,384"
  c.style_scales = "128,256,512"
  c.steps_per_run = 0         # 0: to the end; else this many, to a chunk's end
  c.steps_per_call = 10       # steps per jitted call (unrolled; XLA:CPU loops)
  c.checkpoint_every = 100
  c.log_every = 20
  c.preview_size = 256
  c.seed = 0
  if arg == common.SMOKE:
    c.styles = ""             # "": flower.jpg and china.jpg (installed packages)
    c.held_out = ""
    c.extra_photos = ""
    c.cifar_per_class = 2
    c.crop = 32               # cifar_vgg's minimum side
    c.batch = 2
    c.steps = 2
    c.scales = "48,64"
    c.style_scales = "48,64"
    c.checkpoint_every = 2
    c.log_every = 2
    c.steps_per_call = 1      # one-step calls: the quickest compile
    c.preview_size = 48       # the china photo at 32x48, cifar_vgg's minimum
  return c
