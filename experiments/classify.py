r"""Classifies images with a model and saves a labelled picture.

  python experiments/classify.py --config=experiments/configs/classify.py \
      --workdir=runs/classify
  python experiments/classify.py --config=experiments/configs/classify.py \
      --workdir=runs/classify --config.images=a.jpg,b.png

Default images: CIFAR-10 test images when ../shared/data is present, else the
photographs that installed packages ship (no download). Writes
predictions.png, predictions.json (top classes per image), metrics.json (top-1
accuracy, CIFAR-10 only) and config.json. Options:
experiments/configs/classify.py (`:smoke` for tests).
"""

import os

from absl import app, logging
import numpy as np

from cnnviz_jax import models, viz
from cnnviz_jax import data
from cnnviz_jax.data import samples
from cnnviz_jax.models import predict
from cnnviz_jax.io import write_json
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("classify")


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load(config.model, config.weights)
  labels = None
  cifar = (samples.cifar_samples(config.cifar, per_class=config.per_class)
           if config.images is None else None)
  if config.images not in (None, "bundled"):
    files = config.images.split(",")
    names = [os.path.basename(p) for p in files]
    images = np.stack([data.load_image(p, size=model.input_size) for p in files])
  elif cifar is not None:
    images, labels = cifar
    names = [f"test #{i}" for i in range(len(images))]
  else:
    photos = samples.bundled_photos(size=model.input_size)
    names, images = list(photos), np.stack(list(photos.values()))
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
  os.makedirs(workdir, exist_ok=True)
  png = os.path.join(workdir, "predictions.png")
  viz.save_grid(png, list(images), titles=titles, ncols=min(len(images), 5),
                     suptitle=f"{model.name}: top-1 class and probability")
  write_json(os.path.join(workdir, "predictions.json"), results)
  acc = None
  if labels is not None:
    acc = float(np.mean(idx[:, 0] == labels))
    logging.info("top-1 accuracy on these %d images: %.3f", len(labels), acc)
  launch.write_results(workdir, None if acc is None else {"top1_accuracy": acc},
                       config)
  print(f"wrote {png}")


if __name__ == "__main__":
  app.run(main)
