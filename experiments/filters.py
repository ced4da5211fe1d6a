r"""A convolution's learned filters as one picture: the first layer's RGB
filters, or a deeper layer's filters as rows of grayscale tiles, one per
input channel.

  python experiments/filters.py --config=experiments/configs/filters.py \
      --workdir=runs/filters

Writes filters.png, metrics.json (layer, shape) and config.json. Options:
experiments/configs/filters.py (`:smoke` for tests).
"""

import os


from cnnviz_jax import features, viz
from experiments import launch


def run(config, workdir: str) -> dict:
  """Draws `config.layer`'s filters into `workdir`/filters.png.

  Returns:
    `{"model", "layer", "shape"}` (the shape `features.filters` returned).
  """
  arch = launch.architecture(config)
  if config.layer is not None:
    launch.check_layers(arch, [config.layer], "layer")
  launch.check_positive(config, "max_filters", "max_inputs", "scale")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  w = features.filters(model, config.layer)
  layer = config.layer or features.conv_layers(model)[0]
  if w.ndim == 4 and w.shape[-1] == 3:   # RGB filters [C_out, kh, kw, 3]
    picture = features.mosaic(w)
  else:                                  # [C_out, C_in, kh, kw] grayscale
    sub = w[:config.max_filters, :config.max_inputs]
    picture = features.mosaic(sub.reshape(-1, *sub.shape[2:]),
                              ncols=sub.shape[1])
  viz.save_image(os.path.join(workdir, "filters.png"),
                 viz.enlarge(picture, config.scale))
  metrics = {"model": config.model, "layer": model.resolve(layer),
             "shape": list(w.shape)}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("filters", run)
