r"""A 2-D map of a layer's feature space: t-SNE (or PCA) of the features of
some images, drawn as a scatter coloured by class and as a full grid of the
images themselves (each cell one image, each image at most once).

  python experiments/embedding.py --config=experiments/configs/embedding.py \
      --workdir=runs/embedding

Writes scatter.png, grid.png, coords.npy (the 2-D map), metrics.json
(timings) and config.json. Options: experiments/configs/embedding.py
(`:smoke` for tests).
"""

import math
import os
import time

from absl import logging
import matplotlib
matplotlib.use("Agg")  # no display on servers / CI
import matplotlib.pyplot as plt
import numpy as np

from cnnviz_jax import features, io, viz
from cnnviz_jax.data import samples
from experiments import launch

METHODS = ("tsne", "pca")


def save_scatter(path, coords, labels, class_names, title):
  """Scatter of 2-D points, coloured by label (one colour without labels)."""
  fig, ax = plt.subplots(figsize=(7, 7))
  if labels is None:
    ax.scatter(coords[:, 0], coords[:, 1], s=6)
  else:
    cmap = plt.get_cmap("tab10")
    for c in np.unique(labels):
      m = labels == c
      ax.scatter(coords[m, 0], coords[m, 1], s=6, color=cmap(int(c) % 10),
                 label=class_names[c])
    ax.legend(markerscale=3, fontsize=8, loc="best")
  ax.set_xticks([]), ax.set_yticks([])
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  try:
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
  finally:
    plt.close(fig)


def run(config, workdir: str) -> dict:
  """Maps the features of `config.num_images` images to 2-D and draws the
  scatter and the image grid.

  Returns:
    `{"model", "data", "layer", "method", "num_images", "grid",
    "extract_s", "<method>_s", "grid_layout_s"}`.
  """
  arch = launch.architecture(config)
  launch.check_layers(arch, [config.layer], "layer")
  launch.check_choice(config, "method", METHODS)
  launch.check_positive(config, "num_images", "perplexity", "grid",
                        "batch_size")
  launch.check_at_least(config, max_iter=250)
  if config.grid ** 2 > config.num_images:
    raise ValueError(f"config.grid={config.grid} needs grid^2 = "
                     f"{config.grid ** 2} images; config.num_images is "
                     f"{config.num_images}.")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  ds = samples.load_dataset(config.data, config.split, config.num_images,
                         model.input_size, config.seed)
  t = time.perf_counter()
  feats = features.extract(model, ds.images, config.layer,
                           batch_size=config.batch_size)
  timings = {"extract_s": time.perf_counter() - t}
  t = time.perf_counter()
  if config.method == "tsne":
    coords = features.tsne(feats, key=launch.key(config.seed, "tsne"), perplexity=config.perplexity,
                           max_iter=config.max_iter)
  else:
    coords = features.pca(feats, 2).coords
  timings[f"{config.method}_s"] = time.perf_counter() - t
  os.makedirs(workdir, exist_ok=True)
  io.atomic_write(os.path.join(workdir, "coords.npy"),
                  lambda tmp: np.save(tmp, np.asarray(coords)))
  title = (f"{config.method} of {config.model} {config.layer}, "
           f"{len(ds.images)} images")
  save_scatter(os.path.join(workdir, "scatter.png"), coords, ds.labels,
               ds.class_names, title)
  # A data source smaller than config.num_images (the bundled sample's 500
  # images per half) fills the largest square grid it can.
  grid = min(config.grid, math.isqrt(len(ds.images)))
  if grid < config.grid:
    logging.warning("%d images fill a %dx%d grid, not %dx%d.", len(ds.images),
                    grid, grid, config.grid, config.grid)
  t = time.perf_counter()
  cells = features.grid_layout(coords, grid, grid)
  timings["grid_layout_s"] = time.perf_counter() - t
  picture = features.mosaic(ds.images[cells.ravel()].astype(np.float32) / 255,
                            ncols=grid, pad=0)
  viz.save_image(os.path.join(workdir, "grid.png"), picture)
  metrics = {"model": config.model, "data": ds.source, "layer": config.layer,
             "method": config.method, "num_images": len(ds.images),
             "grid": [grid, grid], **timings}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("embedding", run)
