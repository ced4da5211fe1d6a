r"""DeepDream (Mordvintsev et al. 2015) on any photograph at any size.

  python experiments/deepdream.py --config=experiments/configs/deepdream.py \
      --workdir=runs/deepdream --config.image=../shared/data/images/tubingen.jpg

Default: cifar_vgg on a photograph an installed package ships (scikit-learn's
china.jpg), or a pattern the project makes when none is there. Writes
dream.png, before_after.png, metrics.json (the layer's activation norm before
and after) and config.json. Options: experiments/configs/deepdream.py
(`:smoke` for tests).
"""

import os

from absl import app
import jax
import jax.numpy as jnp

from cnnviz_jax import models, synthesis, viz
from cnnviz_jax import data
from cnnviz_jax.data import samples
from cnnviz_jax.models import predict
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("deepdream")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load_or_init(config.model, config.weights, key=jax.random.PRNGKey(0))
  image = jnp.asarray(data.load_image(config.image, max_side=config.max_side)
                      if config.image else samples.default_photo(config.max_side))
  out = synthesis.deepdream(model, image, config.layer, key=jax.random.PRNGKey(config.seed),
                            octaves=config.octaves, octave_scale=config.octave_scale,
                            steps=config.steps, step_size=config.step_size)
  before, after = predict.activation_norm(model, jnp.stack([image, out]), config.layer).tolist()
  os.makedirs(workdir, exist_ok=True)
  viz.save_image(os.path.join(workdir, "dream.png"), out)
  viz.save_grid(os.path.join(workdir, "before_after.png"), [image, out],
                     titles=["input", f"dream {config.layer}"], size=4.0)
  launch.write_results(workdir, {"layer_norm_before": before,
                                 "layer_norm_after": after,
                                 "shape": list(out.shape)}, config)


if __name__ == "__main__":
  app.run(main)
