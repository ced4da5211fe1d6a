r"""Trains the AdaIN decoder (Huang & Belongie 2017): afterwards any style
image stylizes in one forward pass (`style.adain_stylize`).

  nice python experiments/train_adain.py \
      --config=experiments/configs/train_adain.py --workdir=runs/adain

Resumable as train_fast_style (same loop; `steps` may grow, `steps_per_run`
splits the run). Writes checkpoint.msgpack, adain_decoder.safetensors (load
with `style.load_adain`), history.json, metrics.json, config.json and, once
the run is done, preview.png (a photo with every training style, the
held-out painting at three strengths and a blend).
Options: experiments/configs/train_adain.py (`:smoke` for tests).
"""

import os

from absl import logging
import jax.numpy as jnp

from cnnviz_jax import data, models, style, viz
from cnnviz_jax.data import samples
from experiments import launch
from experiments.train_fast_style import (
    content_images, style_images, training_metrics)


def recipe_from(config) -> style.AdaINRecipe:
  return style.AdaINRecipe(
      encoder=config.encoder, layer=config.layer,
      style_layers=tuple(launch.split_list(config.style_layers, "style_layers")),
      crop=config.crop, batch=config.batch, steps=config.steps,
      learning_rate=config.learning_rate, style_weight=config.style_weight,
      content_weight=config.content_weight, scales=launch.int_list(config, "scales"),
      style_scales=launch.int_list(config, "style_scales"),
      cifar_fraction=config.cifar_fraction,
      style_cifar_fraction=config.style_cifar_fraction, seed=config.seed)


def _preview(path, net, names, styles, held_out, size):
  """A photo with every training style, the held-out painting at two
  strengths, a CIFAR-10 test image (never trained on) and a blend."""
  content = samples.bundled_photos(max_side=size).get(
      "china", samples.synthetic_pattern(size))
  runs = [(n, [s], {}) for n, s in zip(names, styles)]
  if held_out is not None:
    runs += [(f"held out, alpha {a}", [held_out], {"alpha": a}) for a in (0.5, 1.0)]
  cifar = jnp.asarray(data.load_sample()[0][:1], jnp.float32) / 255.0
  runs.append(("CIFAR-10 test image", [cifar[0]], {}))
  if len(styles) > 1:
    runs.append((f"50/50 {names[0]}/{names[1]}", list(styles[:2]),
                 {"weights": [0.5, 0.5]}))
  outs = [style.adain_stylize(net, content, s, **kw) for _, s, kw in runs]
  viz.save_grid(path, [jnp.asarray(content)] + outs,
                titles=["content"] + [t for t, _, _ in runs], size=2.5, ncols=4)


def run(config, workdir: str) -> dict:
  """Trains (or resumes) the decoder in `workdir`; returns the metrics."""
  launch.check_at_least(config, steps=1, batch=1, crop=32, steps_per_run=0,
                        steps_per_call=1,
                        checkpoint_every=1, log_every=1, preview_size=48,
                        cifar_per_class=1)
  launch.check_positive(config, "learning_rate")
  launch.check_choice(config, "encoder", models.names())
  for k in ("cifar_fraction", "style_cifar_fraction"):
    if not 0.0 <= config[k] <= 1.0:
      raise ValueError(f"config.{k} must be in [0, 1]; got {config[k]!r}.")
  recipe = recipe_from(config)
  model = models.load(config.encoder)
  launch.check_layers(model, (recipe.layer,), "layer")
  launch.check_layers(model, recipe.style_layers, "style_layers")
  styles, names = style_images(config)
  held_out = None
  if config.held_out:
    if os.path.exists(config.held_out):
      held_out = data.load_image(config.held_out, max_side=512)
    else:
      logging.warning("held-out style %s not found: no held-out preview",
                      config.held_out)
  launch.prepare_workdir(workdir)
  photos, photo_names, cifar, cifar_source = content_images(config)
  content = style.content_pool(photos, cifar, recipe.crop, recipe.scales)
  style_sources = list(styles) + (photos if config.photos_as_styles else [])
  style_pool = style.content_pool(style_sources, cifar, recipe.crop,
                                  recipe.style_scales)
  logging.info("content: %d photo scales of %s; styles: %d scales of %s%s; "
               "CIFAR-10: %d images (%s)", len(content.photos), photo_names,
               len(style_pool.photos), list(names),
               " and the photos" if config.photos_as_styles else "",
               len(cifar), cifar_source)
  out = style.train_adain(recipe, model, content, style_pool, workdir,
                          steps_per_run=config.steps_per_run or None,
                          checkpoint_every=config.checkpoint_every,
                          log_every=config.log_every,
                          steps_per_call=config.steps_per_call)
  metrics = dict(training_metrics(out, workdir, ("style", "content")),
                 content_photos=photo_names, cifar=cifar_source,
                 styles=list(names), photos_as_styles=bool(config.photos_as_styles))
  if out["done"]:
    net = style.load_adain(os.path.join(workdir, style.ADAIN_EXPORT), model)
    _preview(os.path.join(workdir, "preview.png"), net, names, styles, held_out,
             config.preview_size)
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("train_adain", run)
