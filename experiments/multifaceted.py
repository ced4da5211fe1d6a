r"""Multifaceted feature visualization (Nguyen et al. 2016): k-means of a
class's training images in fc7 space, one facet per cluster, each optimized
from its cluster's mean image.

  python experiments/multifaceted.py --config=experiments/configs/multifaceted.py \
      --workdir=runs/multifaceted --config.steps=50

Needs CIFAR-10 (../shared/data/cifar10-jpeg.tar). Writes facets.png,
metrics.json (cluster sizes, each facet's class probability) and config.json.
Options: experiments/configs/multifaceted.py (`:smoke` for tests).
"""

import os

from absl import app
import jax
import numpy as np

from cnnviz_jax import models, synthesis, viz
from cnnviz_jax import data
from cnnviz_jax.models import predict
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("multifaceted")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load("cifar_vgg")
  x, y = data.load_cifar10(config.data, config.split, limit=config.images_per_class)
  x = x[y == config.target].astype(np.float32) / 255.0
  facets, means, assign = synthesis.multifaceted(
      model, x, config.target, k=config.k, key=jax.random.PRNGKey(config.seed),
      steps=config.steps)
  probs = predict.class_probabilities(model, facets, [config.target] * config.k).tolist()
  counts = np.bincount(np.asarray(assign), minlength=config.k).tolist()
  os.makedirs(workdir, exist_ok=True)
  viz.save_grid(os.path.join(workdir, "facets.png"), list(means) + list(facets),
                     titles=[f"mean ({c})" for c in counts] + [f"facet p={p:.2f}" for p in probs],
                     ncols=config.k)
  launch.write_results(workdir, {"cluster_sizes": counts, "facet_class_prob": probs},
                       config)


if __name__ == "__main__":
  app.run(main)
