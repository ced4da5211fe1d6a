r"""Intermediate-neuron visualization: one image per channel of a layer.

  python experiments/neuron_viz.py --config=experiments/configs/neuron_viz.py \
      --workdir=runs/neuron_viz --config.steps=50 --config.mean=True

Writes neurons.png, metrics.json (each channel's mean activation on its image)
and config.json. Options: experiments/configs/neuron_viz.py (`:smoke` for
tests).
"""

import os

from absl import app
import jax

from cnnviz_jax import models, synthesis, viz
from cnnviz_jax.models import predict
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("neuron_viz")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load_or_init(config.model, config.weights, key=jax.random.PRNGKey(0))
  channels = list(config.channels)
  kw = dict(key=jax.random.PRNGKey(config.seed), steps=config.steps,
            recipe_name=config.recipe)
  if config.mean:
    images = synthesis.visualize_channel(model, config.layer, channels,
                                         diversity=config.diversity, **kw)
  else:
    images = synthesis.visualize_neuron(model, config.layer, channels, **kw)
  values = predict.channel_means(model, images, config.layer, channels).tolist()
  os.makedirs(workdir, exist_ok=True)
  viz.save_grid(os.path.join(workdir, "neurons.png"), list(images),
                     titles=[f"{config.layer}:{c}" for c in channels])
  launch.write_results(
      workdir, {"channel_mean_activation": dict(zip(map(str, channels), values))},
      dict(config.to_dict(), recipe_options=synthesis.recipe(config.recipe)))


if __name__ == "__main__":
  app.run(main)
