r"""Nearest neighbours of query images in pixel space and in a layer's
feature space, drawn side by side as in the lecture, and how often each
shares the query's class (precision@k).

  python experiments/neighbors.py --config=experiments/configs/neighbors.py \
      --workdir=runs/neighbors

With CIFAR-10 the queries are test images and the database the training
images. Writes neighbors.png (query | pixel-space | feature-space
neighbours), metrics.json (precision@k in both spaces, timings) and
config.json. Options: experiments/configs/neighbors.py (`:smoke` for tests).
"""

import os
import time

import numpy as np

from cnnviz_jax import features, viz
from cnnviz_jax.data import samples
from experiments import launch


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
  """Row i of `idx [Q, k + 1]` without database entry i (the query itself)."""
  keep = idx != np.arange(len(idx))[:, None]
  keep[keep.sum(1) > k, -1] = False   # self not found: drop the farthest
  return idx[keep].reshape(len(idx), k)


def run(config, workdir: str) -> dict:
  """Searches the queries' `config.k` nearest database images in pixel and
  in feature space and draws the first `config.show` side by side.

  Returns:
    `{"model", "data", "layer", "metric", "k", "num_queries",
    "num_database", "precision_at_<k>_pixel", "precision_at_<k>_feature"
    (labelled data only), "extract_s", "search_pixel_s",
    "search_feature_s"}`.
  """
  arch = launch.architecture(config)
  launch.check_layers(arch, [config.layer], "layer")
  launch.check_choice(config, "metric", features.METRICS)
  launch.check_positive(config, "num_queries", "num_database", "k",
                        "batch_size")
  launch.check_at_least(config, show=0)
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  hw = model.input_size
  queries = samples.load_dataset(config.data, "test", config.num_queries, hw,
                              config.seed)
  same_set = queries.labels is None   # an image folder: searched against itself
  database = samples.load_dataset(config.data, "test" if same_set else "train",
                               config.num_database, hw, config.seed)
  k = config.k + same_set
  spaces, timings = {}, {}
  t = time.perf_counter()
  spaces["pixel"] = (queries.images.reshape(len(queries.images), -1),
                     database.images.reshape(len(database.images), -1))
  feats = [features.extract(model, d.images, config.layer,
                            batch_size=config.batch_size)
           for d in (queries, database)]
  timings["extract_s"] = time.perf_counter() - t
  spaces["feature"] = tuple(feats)
  neighbours, metrics = {}, {
      "model": config.model, "data": queries.source, "layer": config.layer,
      "metric": config.metric, "k": config.k,
      "num_queries": len(queries.images), "num_database": len(database.images)}
  for space, (q, db) in spaces.items():
    t = time.perf_counter()
    _, idx = features.nearest_neighbors(q, db, k=k, metric=config.metric)
    timings[f"search_{space}_s"] = time.perf_counter() - t
    neighbours[space] = _drop_self(idx, config.k) if same_set else idx
    if not same_set:
      metrics[f"precision_at_{config.k}_{space}"] = features.precision_at_k(
          neighbours[space], database.labels, queries.labels)
  metrics.update(timings)

  name = lambda d, i: d.class_names[d.labels[i]] if d.labels is not None else str(i)
  tiles, titles = [], []
  for i in range(min(config.show, len(queries.images))):
    tiles.append(queries.images[i])
    titles.append(f"query: {name(queries, i)}")
    for space in ("pixel", "feature"):
      for j in neighbours[space][i]:
        tiles.append(database.images[j])
        titles.append(f"{space}: {name(database, j)}")
  viz.save_grid(os.path.join(workdir, "neighbors.png"),
                [t.astype(np.float32) / 255 for t in tiles], titles=titles,
                ncols=1 + 2 * config.k, size=1.2,
                suptitle=f"query | {config.k} nearest in pixel space | "
                         f"{config.k} nearest in {config.layer} space")
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("neighbors", run)
