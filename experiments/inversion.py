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

import jax.numpy as jnp

from cnnviz_jax import data, synthesis, viz
from cnnviz_jax.data import samples
from experiments import launch


def run(config, workdir: str) -> dict:
  """Inverts one image from each layer of `config.layers` and writes the
  results to `workdir`.

  Returns:
    `{"relative_pixel_error": {layer: ||x - x'|| / ||x - mean(x)||}}`.
  """
  arch = launch.architecture(config)
  layers = launch.check_layers(arch, launch.split_list(config.layers, "layers"),
                               "layers")
  launch.check_at_least(config, steps=1, size=arch.min_size, tv=0, tv_beta=1)
  launch.check_positive(config, "learning_rate")
  if config.image is not None:
    launch.check_files([config.image], "image")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  x = jnp.asarray(data.load_image(config.image, size=(config.size, config.size))[None]
                  if config.image else samples.first_test_image(config.data, config.size))
  # One inversion per layer (the layers are the sweep, enumerated here), all
  # from the same key: each starts from the same noise, so the ladder differs
  # by the layer alone.
  synthesis_key = launch.key(config.seed, "synthesis")
  recons = [synthesis.invert(model, x, layer, key=synthesis_key, steps=config.steps,
                             tv=config.tv, tv_beta=config.tv_beta,
                             learning_rate=config.learning_rate)
            for layer in layers]
  errors = {layer: float(synthesis.reconstruction_error(x, r)[0])
            for layer, r in zip(layers, recons)}
  viz.save_grid(os.path.join(workdir, "inversion.png"), [x[0]] + [r[0] for r in recons],
                titles=["original"] + [f"{l} err {errors[l]:.2f}" for l in layers])
  metrics = {"relative_pixel_error": errors}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("inversion", run)
