r"""Multifaceted feature visualization (Nguyen et al. 2016): k-means of a
class's training images in fc7 space, one facet per cluster, each optimized
from its cluster's mean image.

  python experiments/multifaceted.py --config=experiments/configs/multifaceted.py \
      --workdir=runs/multifaceted --config.steps=50

Reads CIFAR-10 from `config.data` (without ../shared: the bundled test sample). Writes facets.png,
metrics.json (cluster sizes, each facet's class probability and, for k >= 2,
`synthesis.facet_separation`: the share of facets nearest their own cluster
centre and their spread relative to the class's) and config.json.
Options: experiments/configs/multifaceted.py (`:smoke` for tests).
"""

import os

from absl import logging
import numpy as np

from cnnviz_jax import data, synthesis, viz
from cnnviz_jax.models import predict
from experiments import launch


def run(config, workdir: str) -> dict:
  """Clusters the images of `config.target`, optimizes one facet per cluster
  and writes the results to `workdir`.

  Returns:
    `{"cluster_sizes": [k] ints, "facet_class_prob": [k] floats in [0, 1]}`,
    plus `facet_own_centre_share` and `facet_spread_ratio` for k >= 2.
  """
  arch = launch.architecture(config)
  launch.check_cifar_classifier(arch)
  (layer,) = launch.check_layers(arch, [config.layer], "layer")
  (target,) = launch.check_indices([config.target], arch.num_classes, "target", "class")
  launch.check_choice(config, "recipe", synthesis.RECIPES)
  launch.check_choice(config, "split", ("train", "test"))
  launch.check_at_least(config, k=1, steps=1, anchor=0, diversity=0)
  # k-means needs at least one image per cluster.
  launch.check_at_least(config, images_per_class=config.k)
  source = data.resolve_cifar(config.data)
  launch.check_files([source], "data")
  split, per_class = config.split, config.images_per_class
  if source == data.SAMPLE_CIFAR:
    # The bundled sample holds 100 test images per class and no training set.
    if split == "train":
      logging.warning("CIFAR-10 training set not found at %s: clustering the "
                      "bundled test sample instead.", config.data)
    split, per_class = "test", min(per_class, 100)
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  x, y = data.load_cifar10(source, split, limit=per_class)
  x = x[y == target].astype(np.float32) / 255.0
  res = synthesis.multifaceted(
      model, x, target, k=config.k, key=launch.key(config.seed, "synthesis"),
      steps=config.steps, layer=layer, anchor=config.anchor,
      diversity=config.diversity, recipe_name=config.recipe)
  probs = predict.class_probabilities(model, res.images, [target] * config.k).tolist()
  counts = np.bincount(np.asarray(res.assignment), minlength=config.k).tolist()
  viz.save_grid(os.path.join(workdir, "facets.png"),
                list(res.means) + list(res.images),
                titles=[f"mean ({c})" for c in counts]
                + [f"facet p={p:.2f}" for p in probs], ncols=config.k)
  metrics = {"cluster_sizes": counts, "facet_class_prob": probs}
  if config.k >= 2:
    sep = synthesis.facet_separation(model, res.images, x, res.assignment,
                                     layer=layer)
    metrics.update(facet_own_centre_share=sep["own_centre_share"],
                   facet_spread_ratio=sep["spread_ratio"])
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("multifaceted", run)
