r"""Feature inversion (Mahendran & Vedaldi 2015) from a ladder of layers: lower
layers reconstruct nearly exactly, deeper ones keep shape and lose detail.

  python experiments/inversion.py --config=experiments/configs/inversion.py \
      --workdir=runs/inversion --config.steps=50

Inverts the first CIFAR-10 test image, or a project-made image when CIFAR is
absent (`--config.image=PATH` for any photo, resized to `--config.size`).
Writes inversion.png, metrics.json (relative pixel error per layer) and
config.json. Options: experiments/configs/inversion.py (`:smoke` for tests).
"""

import os

from absl import app
import jax
import jax.numpy as jnp

from cnnviz_jax import models, synthesis, viz
from cnnviz_jax import data
from cnnviz_jax.data import samples
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("inversion")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load_or_init(config.model, config.weights, key=jax.random.PRNGKey(0))
  x = jnp.asarray(data.load_image(config.image, size=(config.size, config.size))[None]
                  if config.image else samples.first_test_image(config.data, config.size))
  layers = config.layers.split(",")
  # One inversion per layer: the layers are the sweep, enumerated here.
  recons = [synthesis.invert(model, x, layer, key=jax.random.PRNGKey(config.seed),
                             steps=config.steps, tv=config.tv, beta=config.beta)
            for layer in layers]
  errors = {layer: float(synthesis.reconstruction_error(x, r)[0])
            for layer, r in zip(layers, recons)}
  os.makedirs(workdir, exist_ok=True)
  viz.save_grid(os.path.join(workdir, "inversion.png"), [x[0]] + [r[0] for r in recons],
                     titles=["original"] + [f"{l} err {errors[l]:.2f}" for l in layers])
  launch.write_results(workdir, {"relative_pixel_error": errors}, config)


if __name__ == "__main__":
  app.run(main)
