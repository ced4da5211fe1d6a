r"""Intermediate-neuron visualization: one image per channel of a layer.

  python experiments/neuron_viz.py --workdir=runs/neuron_viz --layer=relu3_2 \
      --channels=0,1,2,3 --steps=200 [--mean] [--diversity=0.5]
Smoke: --steps=5 --channels=0.
"""

import os

from absl import app, flags
import jax

from cnnviz_jax import models, pictures, synthesis
from cnnviz_jax.models.checkpoint import write_json

_WORKDIR = flags.DEFINE_string("workdir", "runs/neuron_viz", "Output folder.")
_MODEL = flags.DEFINE_string("model", "cifar_vgg", "Model name.")
_LAYER = flags.DEFINE_string("layer", "relu3_2", "Layer name.")
_CHANNELS = flags.DEFINE_list("channels", ["0", "1", "2", "3"], "Channel indices.")
_MEAN = flags.DEFINE_bool("mean", False, "Channel mean instead of the center unit.")
_DIVERSITY = flags.DEFINE_float("diversity", 0.0, "Batch diversity weight (with --mean).")
_RECIPE = flags.DEFINE_enum("recipe", synthesis.DEFAULT_RECIPE, list(synthesis.RECIPES),
                            "Regularization recipe.")
_STEPS = flags.DEFINE_integer("steps", 200, "Optimization steps.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  model = models.load(_MODEL.value) if _MODEL.value == "cifar_vgg" else models.load(
      _MODEL.value, key=jax.random.PRNGKey(0))
  channels = [int(c) for c in _CHANNELS.value]
  key = jax.random.PRNGKey(_SEED.value)
  kw = dict(key=key, steps=_STEPS.value, recipe_name=_RECIPE.value)
  if _MEAN.value:
    images = synthesis.visualize_channel(model, _LAYER.value, channels,
                                         diversity=_DIVERSITY.value, **kw)
  else:
    images = synthesis.visualize_neuron(model, _LAYER.value, channels, **kw)
  acts = model(images, taps=(_LAYER.value,), logits=False)[1][_LAYER.value]
  values = [float(acts[i, ..., c].mean()) for i, c in enumerate(channels)]
  os.makedirs(_WORKDIR.value, exist_ok=True)
  pictures.save_grid(os.path.join(_WORKDIR.value, "neurons.png"), list(images),
                     titles=[f"{_LAYER.value}:{c}" for c in channels])
  write_json(os.path.join(_WORKDIR.value, "metrics.json"),
            {"channel_mean_activation": dict(zip(map(str, channels), values))})
  write_json(os.path.join(_WORKDIR.value, "config.json"),
            dict(model=_MODEL.value, layer=_LAYER.value, channels=channels,
                 mean=_MEAN.value, diversity=_DIVERSITY.value, steps=_STEPS.value,
                 seed=_SEED.value, recipe=_RECIPE.value,
                 **synthesis.recipe(_RECIPE.value)))


if __name__ == "__main__":
  app.run(main)
