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

import jax.numpy as jnp

from cnnviz_jax import data, synthesis, viz
from cnnviz_jax.data import samples
from cnnviz_jax.models import predict
from experiments import launch


def run(config, workdir: str) -> dict:
  """Dreams on the image of `config` and writes the results to `workdir`.

  Returns:
    `{"layer_norm_before", "layer_norm_after"}` (L2 norms of the layer's
    activation on the input and on the dream) and `"shape"` `[H, W, 3]`.
  """
  arch = launch.architecture(config)
  (layer,) = launch.check_layers(arch, [config.layer], "layer")
  launch.check_at_least(config, steps=1, octaves=1, max_side=arch.min_size)
  launch.check_positive(config, "learning_rate")
  if not config.octave_scale > 1:
    raise ValueError(f"config.octave_scale must be > 1; got {config.octave_scale!r}.")
  if config.roll is not None:
    launch.check_at_least(config, roll=0)
  if config.image is not None:
    launch.check_files([config.image], "image")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  image = jnp.asarray(data.load_image(config.image, max_side=config.max_side)
                      if config.image else samples.default_photo(config.max_side))
  out = synthesis.deepdream(model, image, layer, key=launch.key(config.seed, "synthesis"),
                            octaves=config.octaves, octave_scale=config.octave_scale,
                            steps=config.steps, learning_rate=config.learning_rate,
                            roll=config.roll)
  before, after = predict.activation_norm(model, jnp.stack([image, out]), layer).tolist()
  viz.save_image(os.path.join(workdir, "dream.png"), out)
  viz.save_grid(os.path.join(workdir, "before_after.png"), [image, out],
                titles=["input", f"dream {layer}"], size=4.0)
  metrics = {"layer_norm_before": before, "layer_norm_after": after,
             "shape": list(out.shape)}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("deepdream", run)
