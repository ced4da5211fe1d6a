r"""Trains the feed-forward stylizer (Johnson et al. 2016, conditional
instance norm of Dumoulin et al. 2017) over several paintings.

  nice python experiments/train_fast_style.py \
      --config=experiments/configs/train_fast_style.py --workdir=runs/fast_style

Resumable: a checkpoint in the workdir is resumed (same recipe; `steps` may
grow, `steps_per_run` splits the run into sittings). Writes checkpoint.msgpack
(training state), stylizer.safetensors (load with `style.load_stylizer`),
history.json (losses), metrics.json, config.json and, once the run is done,
preview.png (a photo in every style and a blend of the first two).
Options: experiments/configs/train_fast_style.py (`:smoke` for tests).
"""

import os

from absl import logging
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import data, models, style, viz
from cnnviz_jax.data import samples
from cnnviz_jax.io import write_json
from experiments import launch


def style_images(config):
  """(style images, names): the config's files, or flower/china for smoke."""
  if config.styles:
    paths = launch.split_list(config.styles, "styles")
    launch.check_files(paths, "styles")
    images = [data.load_image(p, max_side=1024) for p in paths]
    default = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  else:
    photos = samples.bundled_photos(max_side=512)
    default = ["flower", "china"]
    images = [photos[k] for k in default]
  names = launch.split_list(config.style_names, "style_names") if config.style_names else default
  if len(names) != len(images):
    raise ValueError(f"config.style_names has {len(names)} names for "
                     f"{len(images)} style images.")
  return images, names


def content_images(config):
  """(photos, names, cifar uint8 [M, 32, 32, 3], cifar source)."""
  if config.content:
    launch.check_files([config.content], "content")
    files = data.image_files(config.content)
    if not files:
      raise ValueError(f"config.content: no images in {config.content!r}.")
    photos = {os.path.basename(f): data.load_image(f, max_side=1024) for f in files}
  else:
    photos = samples.bundled_photos(max_side=1024)
    extra = launch.split_list(config.extra_photos, "extra_photos") if config.extra_photos else []
    for p in extra:
      if os.path.exists(p):
        photos[os.path.splitext(os.path.basename(p))[0]] = data.load_image(p, max_side=1024)
      else:
        logging.warning("extra photo %s not found: skipped", p)
  cifar, source = np.zeros((0, 32, 32, 3), np.uint8), "none"
  if config.cifar_fraction > 0:
    path = config.cifar or None
    try:
      cifar = data.load_cifar10(path, "train", config.cifar_per_class)[0]
      source = f"{data.resolve_cifar(path)} train, {config.cifar_per_class}/class"
    except FileNotFoundError:
      if path is not None:
        raise
      cifar = data.load_sample()[0]
      cifar = cifar.reshape(10, -1, 32, 32, 3)[:, :config.cifar_per_class].reshape(-1, 32, 32, 3)
      source = f"bundled CIFAR-10 test sample, {len(cifar) // 10}/class"
  return list(photos.values()), sorted(photos), cifar, source


def training_metrics(out: dict, workdir: str, parts) -> dict:
  """Writes `out["history"]` to `<workdir>/history.json`; returns the
  metrics every style-network launcher reports (step, done, time, the last
  logged loss and its `parts`)."""
  write_json(os.path.join(workdir, "history.json"), out["history"])
  last = out["history"][-1] if out["history"] else {}
  return {"step": out["step"], "done": out["done"],
          "seconds_this_run": round(out["seconds"], 1),
          "final": {k: last[k] for k in ("loss",) + tuple(parts) if k in last}}


def recipe_from(config, style_names) -> style.Recipe:
  return style.Recipe(
      style_names=tuple(style_names), channels=launch.int_list(config, "channels"),
      num_residual=config.num_residual, noise_channels=config.noise_channels,
      crop=config.crop, batch=config.batch,
      steps=config.steps, learning_rate=config.learning_rate,
      style_weight=config.style_weight, content_weight=config.content_weight,
      tv_weight=config.tv_weight, style_size=config.style_size,
      scales=launch.int_list(config, "scales"), cifar_fraction=config.cifar_fraction,
      loss_network=config.loss_network, seed=config.seed)


def run(config, workdir: str) -> dict:
  """Trains (or resumes) the stylizer in `workdir`; returns the metrics."""
  launch.check_at_least(config, steps=1, batch=1, crop=32, steps_per_run=0,
                        steps_per_call=1,
                        checkpoint_every=1, log_every=1, preview_size=2,
                        cifar_per_class=1, num_residual=0, noise_channels=0,
                        style_size=32)
  launch.check_positive(config, "learning_rate")
  launch.check_choice(config, "loss_network", models.names())
  styles, names = style_images(config)
  recipe = recipe_from(config, names)
  style.check_recipe(recipe)
  launch.prepare_workdir(workdir)
  photos, photo_names, cifar, cifar_source = content_images(config)
  pool = style.content_pool(photos, cifar, recipe.crop, recipe.scales)
  logging.info("content: %d photo scales of %s; CIFAR-10: %d images (%s)",
               len(pool.photos), photo_names, len(cifar), cifar_source)
  model = models.load(config.loss_network)
  out = style.train(recipe, model, styles, pool, workdir,
                    steps_per_run=config.steps_per_run or None,
                    checkpoint_every=config.checkpoint_every,
                    log_every=config.log_every,
                    steps_per_call=config.steps_per_call)
  metrics = dict(training_metrics(out, workdir, ("style", "content", "tv")),
                 content_photos=photo_names, cifar=cifar_source,
                 styles=list(names))
  if out["done"]:
    content = samples.bundled_photos(max_side=config.preview_size).get(
        "china", samples.synthetic_pattern(config.preview_size))
    stylizer, params = style.load_stylizer(os.path.join(workdir, style.EXPORT))
    n = stylizer.num_styles
    outs = [style.stylize(stylizer, params, content, style=i) for i in range(n)]
    titles = list(names)
    if n > 1:
      outs.append(style.stylize(stylizer, params, content,
                                style=[0.5, 0.5] + [0.0] * (n - 2)))
      titles.append(f"50/50 {names[0]}/{names[1]}")
    viz.save_grid(os.path.join(workdir, "preview.png"),
                  [jnp.asarray(content)] + outs, titles=["content"] + titles,
                  size=2.5)
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("train_fast_style", run)
