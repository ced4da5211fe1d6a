r"""Intermediate-neuron visualization: one image per channel of a layer.

  python experiments/neuron_viz.py --config=experiments/configs/neuron_viz.py \
      --workdir=runs/neuron_viz --config.steps=50 --config.mean=True

Writes neurons.png, metrics.json (each channel's mean activation on its image)
and config.json. Options: experiments/configs/neuron_viz.py (`:smoke` for
tests).
"""

import os

from cnnviz_jax import synthesis, viz
from cnnviz_jax.models import predict
from experiments import launch


def run(config, workdir: str) -> dict:
  """Visualizes the channels of `config` and writes the results to `workdir`.

  Returns:
    `{"channel_mean_activation": {channel: mean activation on its image}}`.
  """
  arch = launch.architecture(config)
  (layer,) = launch.check_layers(arch, [config.layer], "layer")
  launch.check_choice(config, "recipe", synthesis.RECIPES)
  launch.check_at_least(config, steps=1, diversity=0)
  if config.diversity and not config.mean:
    raise ValueError("config.diversity applies to channel means: set "
                     "config.mean=True, or config.diversity=0.")
  if not config.channels:
    raise ValueError("config.channels must name at least one channel.")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  channels = launch.check_indices(config.channels, model.layer_shape(layer)[-1],
                                  "channels", f"{layer} channel")
  kw = dict(key=launch.key(config.seed, "synthesis"), steps=config.steps,
            recipe_name=config.recipe)
  if config.mean:
    images = synthesis.visualize_channel(model, layer, channels,
                                         diversity=config.diversity, **kw)
  else:
    images = synthesis.visualize_neuron(model, layer, channels, **kw)
  values = predict.channel_means(model, images, layer, channels).tolist()
  viz.save_grid(os.path.join(workdir, "neurons.png"), list(images),
                titles=[f"{layer}:{c}" for c in channels])
  metrics = {"channel_mean_activation": dict(zip(map(str, channels), values))}
  launch.write_results(
      workdir, metrics,
      dict(config.to_dict(), recipe_options=synthesis.recipe(config.recipe)))
  return metrics


if __name__ == "__main__":
  launch.main("neuron_viz", run)
