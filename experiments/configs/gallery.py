r"""The gallery: every technique of the lecture on one page.

  python -m experiments.gallery --workdir=runs/gallery
  python -m experiments.gallery --workdir=runs/gallery_vgg16 \
      --config.weights=vgg16.safetensors --config.images=my_photos \
      --config.size=224
  python -m experiments.gallery --config=experiments/configs/gallery.py:smoke \
      --workdir=/tmp/gallery

Args (`--config=...gallery.py:ARG`): "" (default: the shipped CIFAR-10 VGG
on the bundled CIFAR-10 sample, sized to finish in under 10 minutes on a
2-core CPU) or "smoke" (every section at toy size, for the tests).

Each section's options are a sub-config named like the section
(`--config.class_viz.steps=50`); `--config.sections=filters,occlusion` runs
a subset (in the lecture's order whatever the order given).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  """Returns the gallery config; `arg` as in the module docstring."""
  arg = common.parse_arg(arg, "gallery")
  c = ml_collections.ConfigDict()
  # Architecture; None: "cifar_vgg", or the `arch` recorded in
  # `weights`' metadata (files from weights_conversion carry it).
  c.model = config_dict.placeholder(str)
  # Converted weights (safetensors); None: the shipped weights of `model`
  # (or a random initialization from `seed` when it ships none).
  c.weights = config_dict.placeholder(str)
  # A folder of photographs (or a CIFAR-10 archive); None: the CIFAR-10 test
  # sample bundled with the package. Labels come with CIFAR-10 on a CIFAR-10
  # classifier; otherwise the model's predictions are the targets and the
  # label-based figures (accuracy, precision@k) are left out.
  c.images = config_dict.placeholder(str)
  c.size = config_dict.placeholder(int)  # Side of folder images; None: model input size.
  c.num_images = 1000         # Images read (at most): the whole bundled sample.
  # Photographs for DeepDream and style transfer (a folder); None: the first
  # images of `images` when it is a folder, else the photographs scikit-learn
  # and matplotlib ship (china, flower, grace_hopper).
  c.photos = config_dict.placeholder(str)
  c.sections = ""             # Comma list of section names; "": all.
  # The spatial layer of activation maps, patches, inner units and DeepDream;
  # None: the ReLU three quarters of the way up the conv stack.
  c.layer = config_dict.placeholder(str)
  # The feature space of neighbours, t-SNE and multifaceted clustering;
  # None: the last fully connected ReLU (VGG's fc7).
  c.feature_layer = config_dict.placeholder(str)
  c.show = 6                  # Images drawn per attribution / fooling figure.
  c.seed = 0
  # Winograd convolutions (`models/winograd.py`): off here. The gallery
  # compiles ~100 programs and calls each a few times; Winograd's longer
  # compiles made it 264 s instead of 117 s (default options, 2-core CPU,
  # 2026-11-29). Long runs (training, long optimizations) gain from it.
  c.winograd = False

  c.overview = dict(show=10)
  # 100 queries against the other 900 sample images, 5 neighbours each.
  c.neighbors = dict(num_queries=100, k=5, show=5)
  # A 16 x 16 grid of 256 images; 500 t-SNE steps are converged at this size.
  c.tsne = dict(num_images=256, perplexity=30.0, max_iter=500)
  c.activations = dict(top=16)
  c.max_patches = dict(channels=8, k=8)
  # An 8-pixel square (a quarter of CIFAR's side), every 2 pixels.
  c.occlusion = dict(window=8, stride=2)
  # Comma list of cnnviz_jax.attribution.METHODS; "": all. 25 samples and
  # IG steps are a quarter of the papers' and look alike at 32x32.
  c.saliency = dict(methods="", samples=25, ig_steps=25, metric_steps=16)
  c.grabcut = dict(iterations=5)
  c.inner_units = dict(channels=6)
  # The first `classes` classes with every recipe of synthesis.RECIPES.
  c.class_viz = dict(classes=10, steps=100)
  # Nguyen et al. 2016 cluster a class in fc7 space; class 3 is CIFAR's cat.
  c.multifaceted = dict(target=3, k=3, steps=100)
  # Nguyen et al. 2016's generator prior (the shipped generator inverts
  # cifar_vgg's relu6), the same classes and steps as class_viz.
  c.generator = dict(classes=10, steps=100)
  # PGD at 8/255 in 10 steps of 2/255 (Madry et al. 2018, section 5); fooling
  # images at 4/255 to the runner-up class, 100 steps (adversarial.FOOL_STEPS).
  c.fooling = dict(n=100, eps=8 / 255, steps=10, step_size=2 / 255,
                   fool_n=16, fool_eps=4 / 255, fool_steps=100)
  c.deepdream = dict(max_side=128, octaves=3, steps=10, learning_rate=0.01)
  # Mahendran & Vedaldi 2015's prior (TV^2 at 0.05), Adam on [0, 1] pixels.
  c.inversion = dict(layers="", steps=200, tv=0.05, tv_beta=2.0,
                     learning_rate=0.05)
  c.texture_classical = dict(example_max_side=48, size=64, window=11)
  c.texture_neural = dict(example_max_side=96, size=96, steps=150)
  c.style_transfer = dict(max_side=128, steps=150)
  # Feed-forward stylizer (safetensors from experiments/train_fast_style.py);
  # None: the shipped one. One forward pass per image: any size is cheap.
  c.fast_style = dict(max_side=256, weights=config_dict.placeholder(str))
  # AdaIN decoder (safetensors from experiments/train_adain.py); None: the
  # shipped one. The other photographs serve as styles.
  c.adain = dict(max_side=256, weights=config_dict.placeholder(str))
  if arg == common.SMOKE:
    c.num_images = 40
    c.show = 2
    c.overview.show = 4
    c.neighbors = dict(num_queries=6, k=3, show=2)
    c.tsne = dict(num_images=16, perplexity=4.0, max_iter=250)
    c.activations.top = 4
    c.max_patches = dict(channels=2, k=3)
    c.occlusion = dict(window=8, stride=8)
    c.saliency = dict(methods="", samples=2, ig_steps=2, metric_steps=2)
    c.grabcut.iterations = 1
    c.inner_units.channels = 2
    c.class_viz = dict(classes=2, steps=2)
    c.multifaceted = dict(target=3, k=2, steps=2)
    c.generator = dict(classes=2, steps=2)
    c.fooling = dict(n=4, eps=8 / 255, steps=1, step_size=2 / 255,
                     fool_n=2, fool_eps=4 / 255, fool_steps=2)
    c.deepdream = dict(max_side=40, octaves=1, steps=1, learning_rate=0.01)
    c.inversion = dict(layers="", steps=2, tv=0.05, tv_beta=2.0,
                       learning_rate=0.05)
    c.texture_classical = dict(example_max_side=16, size=10, window=5)
    c.texture_neural = dict(example_max_side=32, size=32, steps=2)
    c.style_transfer = dict(max_side=48, steps=2)
    c.fast_style.max_side = 32
    c.adain.max_side = 48
  return c
