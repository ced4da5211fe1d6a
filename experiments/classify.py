r"""Classifies images with a model and saves a labelled picture.

  python experiments/classify.py --config=experiments/configs/classify.py \
      --workdir=runs/classify
  python experiments/classify.py --config=experiments/configs/classify.py \
      --workdir=runs/classify --config.images=a.jpg,b.png

Default images: CIFAR-10 test images when ../shared/data is present, else the
photographs that installed packages ship (no download). Writes
predictions.png, predictions.json (top classes per image), metrics.json
(number of images; top-1 accuracy for CIFAR-10) and config.json. Options:
experiments/configs/classify.py (`:smoke` for tests).
"""

import os

from absl import logging
import numpy as np

from cnnviz_jax import viz
from cnnviz_jax.data import samples
from cnnviz_jax.io import write_json
from cnnviz_jax.models import predict
from experiments import launch


def _images(config, size):
  """`(images [N, H, W, 3], labels [N] or None, names)` named by
  `config.images` (see the config)."""
  if config.images is None and os.path.exists(config.cifar):
    x, y, _ = samples.load_images(config.cifar, size, 10 * config.per_class)
    return x, y, [f"test #{i}" for i in range(len(x))]
  if config.images in (None, "bundled"):
    photos = samples.bundled_photos(size=size)
    return np.stack(list(photos.values())), None, list(photos)
  files = launch.split_list(config.images, "images")
  if len(files) == 1 and os.path.isdir(files[0]):
    folder = files[0]
    x, _, _ = samples.load_images(folder, size, len(os.listdir(folder)))
    return x, None, [f"{os.path.basename(os.path.normpath(folder))} #{i}"
                     for i in range(len(x))]
  x, _, _ = samples.load_images(",".join(files), size, len(files))
  return x, None, [os.path.basename(f) for f in files]


def run(config, workdir: str) -> dict:
  """Classifies the images of `config` and writes the results to `workdir`.

  Returns:
    `{"num_images": int}`, plus `"top1_accuracy"` (in [0, 1]) when the
    images have labels (CIFAR-10).
  """
  arch = launch.architecture(config)
  launch.check_at_least(config, top=1, per_class=1)
  if config.top > arch.num_classes:
    raise ValueError(f"config.top must be <= {arch.num_classes} (the classes "
                     f"of {config.model}); got {config.top}.")
  if config.images not in (None, "bundled"):
    launch.check_files(launch.split_list(config.images, "images"), "images")
  launch.prepare_workdir(workdir)
  # Seed 0: a random initialization (models without weights) is for tests.
  model = launch.load_model(config, launch.key(0, "init"))
  images, labels, names = _images(config, model.input_size)
  idx, prob = predict.top_k(model, images, config.top)
  results, titles = [], []
  for i, name in enumerate(names):
    pred = [(model.class_names[j], float(p)) for j, p in zip(idx[i], prob[i])]
    rec = {"image": name, "top": pred}
    title = f"{pred[0][0]} {pred[0][1]:.2f}"
    if labels is not None:
      rec["label"] = model.class_names[labels[i]]
      title += f"\n(true: {rec['label']})"
    results.append(rec)
    titles.append(title)
    logging.info("%s: %s", name, pred)
  viz.save_grid(os.path.join(workdir, "predictions.png"), list(images),
                titles=titles, ncols=min(len(images), 5),
                suptitle=f"{model.name}: top-1 class and probability")
  write_json(os.path.join(workdir, "predictions.json"), results)
  metrics = {"num_images": len(images)}
  if labels is not None:
    metrics["top1_accuracy"] = float(np.mean(idx[:, 0] == labels))
    logging.info("top-1 accuracy on these %d images: %.3f", len(labels),
                 metrics["top1_accuracy"])
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("classify", run)
