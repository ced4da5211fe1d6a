r"""Activation maps of one image: the strongest channels of a few layers
(the Yosinski et al. 2015 deep visualization toolbox view).

  python experiments/activations.py --config=experiments/configs/activations.py \
      --workdir=runs/activations

Writes image.png, activations_<layer>.png per layer, metrics.json (the
channels shown and their mean activations) and config.json. Options:
experiments/configs/activations.py (`:smoke` for tests).
"""

import os

import numpy as np

from cnnviz_jax import features, viz
from cnnviz_jax.data import samples
from experiments import launch


def run(config, workdir: str) -> dict:
  """Draws the strongest channels of each of `config.layers` for one image.

  Returns:
    `{"model", "data", "index", "label", "layers": {layer: {"channels",
    "means", "shape"}}}`.
  """
  arch = launch.architecture(config)
  layers = launch.check_layers(
      arch, launch.split_list(config.layers, "layers"), "layers")
  spatial = features.spatial_layers(arch)
  for layer in layers:
    if layer not in spatial:
      raise ValueError(f"config.layers: {layer} has no spatial extent; spatial "
                       f"layers: {', '.join(spatial)}.")
  launch.check_at_least(config, index=0, top=0)
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  ds = samples.load_dataset(config.data, "test", config.index + 1,
                         model.input_size, config.seed)
  if config.index >= len(ds.images):
    raise ValueError(f"index {config.index} out of range: {ds.source} gives "
                     f"{len(ds.images)} images.")
  image = ds.images[config.index].astype(np.float32) / 255.0
  os.makedirs(workdir, exist_ok=True)
  viz.save_image(os.path.join(workdir, "image.png"), viz.enlarge(image, 4))
  metrics = {"model": config.model, "data": ds.source, "index": config.index,
             "label": (ds.class_names[ds.labels[config.index]]
                       if ds.labels is not None else None), "layers": {}}
  for layer in layers:
    maps = features.activation_maps(model, image, layer)
    top = len(maps) if not config.top else min(config.top, len(maps))
    channels = features.strongest_channels(maps, top)
    means = maps.mean(axis=(1, 2))
    viz.save_grid(os.path.join(workdir, f"activations_{layer}.png"),
                  list(maps[channels]),
                  titles=[f"ch {c} ({means[c]:.2f})" for c in channels],
                  ncols=min(8, top), cmap="gray",
                  suptitle=f"{layer}: {top} of {len(maps)} channels by mean")
    metrics["layers"][layer] = {
        "channels": channels.tolist(), "means": means[channels].tolist(),
        "shape": list(maps.shape)}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("activations", run)
