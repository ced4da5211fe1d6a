r"""Maximally activating patches: per channel of a layer, the receptive-field
crops of the k units with the strongest response over a dataset (one per
image), found by a streaming top-k.

  python experiments/max_patches.py --config=experiments/configs/max_patches.py \
      --workdir=runs/max_patches

Writes patches.png (a row per channel, strongest first), metrics.json (the
values, image indices and unit positions) and config.json. Options:
experiments/configs/max_patches.py (`:smoke` for tests).
"""

import os

import numpy as np

from cnnviz_jax import features, viz
from cnnviz_jax.data import samples
from experiments import launch


def _width(arch, layer: str) -> int:
  """Channels of a spatial layer: the width of the last conv up to it."""
  upto = arch.layers[:arch.layer_index(layer) + 1]
  return [l.kw["features"] for l in upto if l.kind == "conv"][-1]


def run(config, workdir: str) -> dict:
  """Finds the top `config.k` units per channel over the dataset and draws
  their receptive-field crops, a row per channel.

  Returns:
    `{"model", "data", "num_images", "layer", "receptive_field", "channels",
    "values", "image_index", "y", "x"(, "classes")}`, each `[C, k]` list
    strongest first.
  """
  arch = launch.architecture(config)
  layer = launch.check_layers(arch, [config.layer], "layer")[0]
  spatial = features.spatial_layers(arch)
  if layer not in spatial:
    raise ValueError(f"config.layer: {layer} has no spatial extent; spatial "
                     f"layers: {', '.join(spatial)}.")
  channels = None
  if config.channels:
    channels = launch.check_indices(
        launch.split_list(config.channels, "channels"),
        _width(arch, layer), "channels", "channel")
  launch.check_positive(config, "num_images", "k", "batch_size", "scale")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  ds = samples.load_dataset(config.data, config.split, config.num_images,
                         model.input_size, config.seed)
  top = features.top_activations(model, ds.images, config.layer, channels,
                                 k=config.k, batch_size=config.batch_size)
  crops = features.patches(model, ds.images, top)       # [C, k, S, S, 3]
  picture = features.mosaic(crops.reshape(-1, *crops.shape[2:]),
                            ncols=config.k, pad=2)
  viz.save_image(os.path.join(workdir, "patches.png"),
                 viz.enlarge(picture, config.scale))
  field = features.receptive_field(model, top.layer, top.image_hw)
  metrics = {
      "model": config.model, "data": ds.source, "num_images": len(ds.images),
      "layer": top.layer, "receptive_field": field._asdict(),
      "channels": top.channels.tolist(), "values": top.values.tolist(),
      "image_index": top.image_index.tolist(), "y": top.y.tolist(),
      "x": top.x.tolist()}
  if ds.labels is not None:
    metrics["classes"] = np.asarray(ds.class_names)[
        ds.labels[top.image_index]].tolist()
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("max_patches", run)
