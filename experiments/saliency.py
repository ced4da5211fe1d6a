r"""Attribution maps for a few images: a PNG grid (image x method) plus a JSON
of faithfulness metrics (deletion / insertion AUC, Petsiuk et al. 2018).

  python experiments/saliency.py --workdir=runs/saliency
  python experiments/saliency.py --model=vgg16 --weights=vgg16.safetensors \
      --images=../shared/data/images --methods=saliency,grad_cam

--images: a CIFAR-10 archive (default: ../shared/data/cifar10-jpeg.tar when
present), a folder or comma-separated list of image files, or "synthetic"
(shapes on smooth backgrounds, made here; used when nothing else is found).
Targets are the true labels for CIFAR, else the model's predictions.
"""

import json
import os

from absl import app, flags, logging
import jax
import numpy as np

from cnnviz_jax import attribution as A
from cnnviz_jax import data, metrics, models
from cnnviz_jax.models.checkpoint import write_json

DEFAULT_METHODS = ("saliency", "guided_backprop", "smoothgrad",
                   "integrated_gradients", "grad_cam", "guided_grad_cam",
                   "occlusion")

_MODEL = flags.DEFINE_string("model", "cifar_vgg", "Model name.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Converted weights (else shipped, "
                               "else random init with --seed).")
_IMAGES = flags.DEFINE_string("images", None, "CIFAR archive, folder, comma list "
                              "of files, or 'synthetic'.")
_METHODS = flags.DEFINE_list("methods", list(DEFAULT_METHODS),
                             f"Any of {', '.join(A.METHODS)}.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/saliency", "Output folder.")
_NUM = flags.DEFINE_integer("num_images", 8, "Images to explain.")
_LAYER = flags.DEFINE_string("layer", None, "Grad-CAM layer (default: last "
                             "spatial relu).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed (SmoothGrad, random init).")
_STEPS = flags.DEFINE_integer("metric_steps", 16, "Deletion/insertion points.")
_PATCH = flags.DEFINE_integer("metric_patch", 4, "Deletion/insertion block size "
                              "in pixels (1: single pixels, as Petsiuk et al.).")


def synthetic_images(n: int, hw, seed: int = 0) -> np.ndarray:
  """Coloured discs and squares on smooth backgrounds, float32 [n, H, W, 3]."""
  rng = np.random.RandomState(seed)
  h, w = hw
  yy, xx = np.mgrid[:h, :w] / np.array([h, w]).reshape(2, 1, 1)
  out = []
  for i in range(n):
    bg = rng.uniform(0.2, 0.8, 3) + 0.2 * (yy[..., None] - 0.5) * rng.uniform(-1, 1, 3)
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    inside = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if i % 2 == 0 else (
        (abs(yy - cy) < r) & (abs(xx - cx) < r))
    img = np.where(inside[..., None], rng.uniform(0, 1, 3), bg)
    out.append(np.clip(img, 0, 1))
  return np.asarray(out, np.float32)


def load_images(spec, model, n: int, seed: int):
  """-> (images float32 [n, H, W, 3], labels int32 [n] or None, source)."""
  if spec is None:
    spec = data.DEFAULT_CIFAR if os.path.exists(data.DEFAULT_CIFAR) else "synthetic"
  if spec == "synthetic":
    return synthetic_images(n, model.input_size, seed), None, "synthetic"
  if os.path.isfile(spec) and spec.endswith((".tar", ".gz", ".zip")):
    x, y = data.load_cifar10(spec, "test", limit=-(-n // 10))
    keep = np.arange(len(y)).reshape(-1, len(y) // 10).T.ravel()[:n]  # mix classes
    return x[keep].astype(np.float32) / 255, y[keep], spec
  files = ([os.path.join(spec, f) for f in sorted(os.listdir(spec))]
           if os.path.isdir(spec) else spec.split(","))
  imgs = [data.load_image(f, size=model.input_size) for f in files[:n]]
  return np.stack(imgs), None, spec


def run(model_name: str, weights, images_spec, methods, workdir: str,
        num_images: int = 8, layer=None, seed: int = 0,
        metric_steps: int = 16, metric_patch: int = 4) -> dict:
  """Computes the maps and metrics, writes `grid.png` and `metrics.json`."""
  key = jax.random.PRNGKey(seed)
  if weights is None and model_name not in models.SHIPPED_WEIGHTS:
    logging.warning("%s ships no weights: using a random initialization.",
                    model_name)
    model = models.load(model_name, key=key)
  else:
    model = models.load(model_name, weights)
  images, labels, source = load_images(images_spec, model, num_images, seed)
  preds = np.asarray(model(images)[0].argmax(-1), np.int32)
  targets = labels if labels is not None else preds
  maps = {m: A.explain(model, images, targets, m, key=key, layer=layer)
          for m in methods}
  results = {"model": model_name, "images": source, "num_images": len(images),
             "targets": [model.class_names[t] for t in targets],
             "predictions": [model.class_names[t] for t in preds],
             "deletion_auc": {}, "insertion_auc": {}}
  reference = dict(maps, random=metrics.random_heatmaps(key, images))
  # Deleted pixels are blurred out: on small images black single pixels act
  # like adversarial noise and make any ordering look worse than random.
  kw = dict(steps=metric_steps, patch=metric_patch, fill="blur")
  for name, m in reference.items():
    results["deletion_auc"][name] = float(metrics.deletion(
        model, images, targets, m, **kw).auc.mean())
    results["insertion_auc"][name] = float(metrics.insertion(
        model, images, targets, m, **kw).auc.mean())
  os.makedirs(workdir, exist_ok=True)
  A.save_grid(os.path.join(workdir, "grid.png"), images, maps,
              row_titles=[f"{model.class_names[t]}" for t in targets],
              overlay_alpha=0.6)
  write_json(os.path.join(workdir, "metrics.json"), results)
  return results


def main(argv):
  del argv
  unknown = [m for m in _METHODS.value if m not in A.METHODS]
  if unknown:
    raise app.UsageError(f"unknown methods {unknown}; valid: {', '.join(A.METHODS)}")
  results = run(_MODEL.value, _WEIGHTS.value, _IMAGES.value, _METHODS.value,
                _WORKDIR.value, _NUM.value, _LAYER.value, _SEED.value,
                _STEPS.value, _PATCH.value)
  print(json.dumps({k: results[k] for k in ("deletion_auc", "insertion_auc")},
                   indent=1))


if __name__ == "__main__":
  app.run(main)
