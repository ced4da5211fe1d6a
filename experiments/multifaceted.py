r"""Multifaceted feature visualization (Nguyen et al. 2016): k-means of a
class's training images in fc7 space, one facet per cluster, each optimized
from its cluster's mean image.

  python experiments/multifaceted.py --workdir=runs/multifaceted --target=3 \
      --k=4 --images_per_class=200 --steps=200
Needs CIFAR-10 (../shared/data/cifar10-jpeg.tar). Smoke: --steps=2 --k=2
--images_per_class=10 --split=test.
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import data, models, pictures, synthesis
from cnnviz_jax.models.checkpoint import write_json

_WORKDIR = flags.DEFINE_string("workdir", "runs/multifaceted", "Output folder.")
_DATA = flags.DEFINE_string("data", data.DEFAULT_CIFAR, "CIFAR-10 location.")
_SPLIT = flags.DEFINE_enum("split", "train", ["train", "test"], "CIFAR-10 split.")
_TARGET = flags.DEFINE_integer("target", 3, "Class index.")
_K = flags.DEFINE_integer("k", 4, "Number of facets (clusters).")
_PER_CLASS = flags.DEFINE_integer("images_per_class", 200, "Training images used.")
_STEPS = flags.DEFINE_integer("steps", 200, "Optimization steps.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  model = models.load("cifar_vgg")
  x, y = data.load_cifar10(_DATA.value, _SPLIT.value, limit=_PER_CLASS.value)
  x = jnp.asarray(x[y == _TARGET.value].astype(np.float32) / 255.0)
  facets, means, assign = synthesis.multifaceted(
      model, x, _TARGET.value, k=_K.value, key=jax.random.PRNGKey(_SEED.value),
      steps=_STEPS.value)
  probs = jax.nn.softmax(model(facets)[0])[:, _TARGET.value]
  os.makedirs(_WORKDIR.value, exist_ok=True)
  counts = np.bincount(np.asarray(assign), minlength=_K.value)
  pictures.save_grid(os.path.join(_WORKDIR.value, "facets.png"),
                     list(means) + list(facets),
                     titles=[f"mean ({c})" for c in counts] + [f"facet p={p:.2f}" for p in probs],
                     ncols=_K.value)
  write_json(os.path.join(_WORKDIR.value, "metrics.json"),
            {"cluster_sizes": counts.tolist(), "facet_class_prob": [float(p) for p in probs]})
  write_json(os.path.join(_WORKDIR.value, "config.json"),
            dict(split=_SPLIT.value, target=_TARGET.value, k=_K.value, images_per_class=_PER_CLASS.value,
                 steps=_STEPS.value, seed=_SEED.value, data=_DATA.value))


if __name__ == "__main__":
  app.run(main)
