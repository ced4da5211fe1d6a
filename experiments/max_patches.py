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

from absl import app, flags
import jax
import numpy as np

from cnnviz_jax import features, models, viz
from experiments import feature_data, launch


def run(config, workdir: str) -> dict:
  model = models.load_or_init(config.model, config.weights,
                              key=jax.random.PRNGKey(config.seed))
  ds = feature_data.load(config.data, config.split, config.num_images,
                         model.input_size, config.seed)
  channels = ([int(c) for c in config.channels.split(",")]
              if config.channels else None)
  top = features.top_activations(model, ds.images, config.layer, channels,
                                 k=config.k, batch_size=config.batch_size)
  crops = features.patches(model, ds.images, top)       # [C, k, S, S, 3]
  picture = features.mosaic(crops.reshape(-1, *crops.shape[2:]),
                            ncols=config.k, pad=2)
  viz.save_image(os.path.join(workdir, "patches.png"),
                 feature_data.enlarge(picture, config.scale))
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


def main(argv):
  del argv
  run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  # Defined here, not at import, so that tests can import every launcher's
  # run() into one process.
  launch.define_flags("max_patches")
  app.run(main)
