r"""Training the feed-forward stylizer (Johnson et al. 2016) with conditional
instance norm over several paintings (Dumoulin et al. 2017).

  nice python experiments/train_fast_style.py \
      --config=experiments/configs/train_fast_style.py --workdir=runs/fast_style
  # In sittings of 500 steps (rerun the same command to go on):
  nice python experiments/train_fast_style.py \
      --config=experiments/configs/train_fast_style.py --workdir=runs/fast_style \
      --config.steps_per_run=500
  # Other styles and photos:
  python experiments/train_fast_style.py --config=experiments/configs/train_fast_style.py \
      --workdir=runs/my_style --config.styles=a.jpg,b.jpg --config.style_names=a,b \
      --config.content=~/photos

Args (`--config=...train_fast_style.py:ARG`): "" (default: the shipped
network's recipe) or "smoke" (a few steps of a tiny network on 32 px crops,
styles from installed packages: a CPU-sized run for tests).
"""

import os

import ml_collections

from experiments.configs import common

# ../shared/data/images next to the project (the four paintings, styles 0-3,
# and two photographs used as content).
SHARED_IMAGES = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
    "data", "images"))
PAINTINGS = ("starry_night", "the_scream", "shipwreck", "woman-with-hat-matisse")
SHARED_PHOTOS = ("tubingen", "golden_gate")


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the train_fast_style config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "train_fast_style")
  c = ml_collections.ConfigDict()
  # Comma list of style images (one network style each, in this order).
  c.styles = ",".join(os.path.join(SHARED_IMAGES, f"{p}.jpg") for p in PAINTINGS)
  c.style_names = ",".join(PAINTINGS)  # "": the file names
  # Content photos: a folder of images; "" uses the photographs installed
  # packages ship (china, flower, grace_hopper) plus `extra_photos`.
  c.content = ""
  c.extra_photos = ",".join(os.path.join(SHARED_IMAGES, f"{p}.jpg")
                            for p in SHARED_PHOTOS)  # used where present
  # CIFAR-10 archive for the upsampled share; "": ../shared's archive, else
  # the bundled test sample. `cifar_per_class` images of each class.
  c.cifar = ""
  c.cifar_per_class = 500
  c.cifar_fraction = 0.25     # share of each batch that is upsampled CIFAR-10
  c.loss_network = "cifar_vgg"  # the style issue's choice (docs/style_loss_networks.png)
  c.channels = "16,32,64"     # Johnson's 32,64,128 halved: 2-core CPU budget
  c.num_residual = 3          # Johnson: 5
  # Uniform noise maps beside the image (Ulyanov et al. 2016): texture for
  # flat regions (see the model card's hatching note).
  c.noise_channels = 0
  c.crop = 80                 # Johnson: 256 (see the model card)
  c.batch = 4                 # one image of each of the four styles per step
  c.steps = 5000
  c.learning_rate = 2e-3
  c.style_weight = 2.0
  c.content_weight = 1.0
  c.tv_weight = 10.0
  c.style_size = 160          # painting's longer side when its Grams are taken
  c.scales = "96,160,256,384"  # photo longer sides before cropping
  c.steps_per_run = 0         # 0: to the end; else this many, to a chunk's end
  c.steps_per_call = 10       # steps per jitted call (unrolled; XLA:CPU loops)
  c.checkpoint_every = 50
  c.log_every = 10
  c.preview_size = 128        # side of the preview pictures written at the end
  c.seed = 0
  if arg == common.SMOKE:
    c.styles = ""             # "": flower.jpg and china.jpg (installed packages)
    c.style_names = "flower,china"
    c.extra_photos = ""
    c.cifar_per_class = 2
    c.channels = "4,8,8"
    c.num_residual = 1
    c.crop = 32               # cifar_vgg's minimum side
    c.batch = 2
    c.steps = 6
    c.style_size = 48
    c.scales = "48,64"
    c.checkpoint_every = 3
    c.log_every = 2
    c.steps_per_call = 1      # one-step calls: the quickest compile
    c.preview_size = 40
  return c
