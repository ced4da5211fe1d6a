r"""Classifies images with a model and saves a labelled picture.

  python experiments/classify.py --workdir=runs/classify
  python experiments/classify.py --images=a.jpg,b.png --model=cifar_vgg

Default images: CIFAR-10 test images when ../shared/data is present, else the
photographs that installed packages ship (no download).
"""

import os

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import data, models, pictures, samples
from cnnviz_jax.models.checkpoint import write_json

_MODEL = flags.DEFINE_string("model", "cifar_vgg", "Model name.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Converted weights (.safetensors).")
_IMAGES = flags.DEFINE_list("images", None, "Image files (default: samples).")
_CIFAR = flags.DEFINE_string("cifar", data.DEFAULT_CIFAR, "CIFAR-10 tar for samples.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/classify", "Output folder.")


def classify(model, images: np.ndarray, top: int = 3):
  """Returns `(top indices [N, top], top probabilities [N, top])`."""
  probs = jax.nn.softmax(jax.jit(lambda p, x: model.apply(p, x)[0])(
      model.params, jnp.asarray(images)), -1)
  idx = np.argsort(-np.asarray(probs), -1)[:, :top]
  return idx, np.take_along_axis(np.asarray(probs), idx, -1)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  model = models.load(_MODEL.value, _WEIGHTS.value)
  size = model.input_size
  labels = None
  if _IMAGES.value:
    names = [os.path.basename(p) for p in _IMAGES.value]
    images = np.stack([data.load_image(p, size=size) for p in _IMAGES.value])
  elif (cifar := samples.cifar_samples(_CIFAR.value, per_class=2)) is not None:
    images, labels = cifar
    names = [f"test #{i}" for i in range(len(images))]
  else:
    photos = samples.bundled_photos(size=size)
    names, images = list(photos), np.stack(list(photos.values()))
  idx, prob = classify(model, images)
  results, titles = [], []
  for i, name in enumerate(names):
    pred = [(model.class_names[j], float(p)) for j, p in zip(idx[i], prob[i])]
    rec = {"image": name, "top": pred}
    title = f"{pred[0][0]} {pred[0][1]:.2f}"
    if labels is not None:
      rec["label"] = model.class_names[labels[i]]
      title += f"\n(true: {rec['label']})"
    results.append(rec), titles.append(title)
    logging.info("%s: %s", name, pred)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  png = os.path.join(_WORKDIR.value, "predictions.png")
  pictures.save_grid(png, list(images), titles=titles, ncols=min(len(images), 5),
                     suptitle=f"{model.name}: top-1 class and probability")
  write_json(os.path.join(_WORKDIR.value, "predictions.json"), results)
  if labels is not None:
    acc = float(np.mean(idx[:, 0] == labels))
    logging.info("top-1 accuracy on these %d images: %.3f", len(labels), acc)
  print(f"wrote {png}")


if __name__ == "__main__":
  app.run(main)
