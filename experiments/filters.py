r"""A convolution's learned filters as one picture: the first layer's RGB
filters, or a deeper layer's filters as rows of grayscale tiles, one per
input channel.

  python experiments/filters.py --config=experiments/configs/filters.py \
      --workdir=runs/filters

Writes filters.png, metrics.json (layer, shape) and config.json. Options:
experiments/configs/filters.py (`:smoke` for tests).
"""

import os

from absl import app, flags
import jax

from cnnviz_jax import features, models, viz
from experiments import feature_data, launch


def run(config, workdir: str) -> dict:
  model = models.load_or_init(config.model, config.weights,
                              key=jax.random.PRNGKey(config.seed))
  w = features.filters(model, config.layer)
  layer = config.layer or features.conv_layers(model)[0]
  if w.ndim == 4 and w.shape[-1] == 3:   # RGB filters [C_out, kh, kw, 3]
    picture = features.mosaic(w)
  else:                                  # [C_out, C_in, kh, kw] grayscale
    sub = w[:config.max_filters, :config.max_inputs]
    picture = features.mosaic(sub.reshape(-1, *sub.shape[2:]),
                              ncols=sub.shape[1])
  viz.save_image(os.path.join(workdir, "filters.png"),
                 feature_data.enlarge(picture, config.scale))
  metrics = {"model": config.model, "layer": model.resolve(layer),
             "shape": list(w.shape)}
  launch.write_results(workdir, metrics, config)
  return metrics


def main(argv):
  del argv
  print(run(flags.FLAGS.config, flags.FLAGS.workdir))


if __name__ == "__main__":
  # Defined here, not at import, so that tests can import every launcher's
  # run() into one process.
  launch.define_flags("filters")
  app.run(main)
