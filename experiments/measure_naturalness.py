r"""How natural class visualizations look: their distance in relu3_2 Gram
statistics to real images of the class (issue 13), recipe by recipe.

  python experiments/measure_naturalness.py --workdir=runs/naturalness

For each class c, the mean Gram matrix `A_c` of relu3_2 (`style.gram_matrix`)
over the first half of its real test images is the class's texture
statistics; an image's distance is `||G(x) - A_c||_F / ||A_c||_F` (lower is
more natural), and `1 - cos(G(x), A_c)`, the scale-free version (the
relative distance rewards weak activations: a flat grey image scores below
real photographs). The other half of the real images, a flat grey image and
the class's mean image are the references. Each recipe visualizes every class (`synthesis.
visualize_class`, `--steps` steps, the same key) and is scored on its image of
each class; the class probability of each image is reported too. Writes
`naturalness.json` and `naturalness.png` (recipes x classes) to --workdir and
prints a summary.
"""

import json
import os

from absl import app, flags
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import data, models, style, synthesis, viz
from cnnviz_jax.io import write_json
from cnnviz_jax.models import predict
from experiments import launch

_RECIPES = flags.DEFINE_list("recipes", ["simonyan", "yosinski", "fft", "generator"],
                             "Recipes compared.")
_STEPS = flags.DEFINE_integer("steps", 200, "Optimization steps per recipe "
                              "(class_viz's default).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (launch.key(seed, 'synthesis')).")
_IMAGES = flags.DEFINE_integer("images", 100, "Real test images per class (half "
                               "for the statistics, half as the reference).")
_DATA = flags.DEFINE_string("data", None, "CIFAR-10 location (None: the default "
                            "archive, else the bundled test sample).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/naturalness", "Output folder.")
_LAYER = "relu3_2"


def grams(model, images):
  """relu3_2 Gram matrices `[N, C, C]` of images `[N, H, W, 3]` in [0, 1]."""
  _, acts = model.apply(model.params, images, taps=(_LAYER,), logits=False)
  return style.gram_matrix(acts[_LAYER])


def distances(g, target):
  """Relative Frobenius distances `[N]` of Grams `g` `[N, C, C]` to `target`."""
  return jnp.linalg.norm((g - target).reshape(g.shape[0], -1), axis=1) / (
      jnp.linalg.norm(target))


def cosine_distances(g, target):
  """`1 - cos(G, A)` `[N]`: the scale-free comparison. The relative distance
  rewards weak activations (a flat grey image's Gram is small, so it lands
  near 1, below real photographs); the cosine compares only which channels
  co-activate."""
  flat = g.reshape(g.shape[0], -1)
  t = target.reshape(-1)
  return 1.0 - flat @ t / (jnp.linalg.norm(flat, axis=1) * jnp.linalg.norm(t) + 1e-12)


def scores(g, stats, classes):
  """Per-class `(relative, cosine)` distances of Grams `g` (image i of class
  classes[i]) to the class statistics."""
  rel = [float(distances(g[i:i + 1], stats[c])[0]) for i, c in enumerate(classes)]
  cos = [float(cosine_distances(g[i:i + 1], stats[c])[0]) for i, c in enumerate(classes)]
  return rel, cos


def summary(rel, cos, probs=None):
  out = {"gram_distance": rel, "gram_distance_mean": float(np.mean(rel)),
         "gram_cosine_distance": cos, "gram_cosine_distance_mean": float(np.mean(cos))}
  if probs is not None:
    out.update(class_prob=probs, class_prob_min=float(min(probs)))
  return out


def main(argv):
  launch.check_no_args(argv)
  workdir = launch.prepare_workdir(_WORKDIR.value)
  model = models.load("cifar_vgg")
  x, y = data.load_cifar10(_DATA.value, "test", _IMAGES.value)
  x = x.astype(np.float32) / 255.0
  classes = list(range(model.num_classes))
  stats, real_rel, real_cos, means = [], [], [], []
  for c in classes:
    xc = jnp.asarray(x[y == c])
    half = len(xc) // 2
    stats.append(grams(model, xc[:half]).mean(0))
    g = grams(model, xc[half:])
    real_rel.append(float(distances(g, stats[-1]).mean()))
    real_cos.append(float(cosine_distances(g, stats[-1]).mean()))
    means.append(xc[:half].mean(0))
  result = {"layer": _LAYER, "steps": _STEPS.value, "seed": _SEED.value,
            # References: held-out real photographs of the class (the mean
            # over them), a flat grey image and the class's mean image.
            "real_images": summary(real_rel, real_cos),
            "grey": summary(*scores(grams(model, jnp.full((len(classes), *x.shape[1:]),
                                                          0.5, jnp.float32)),
                                    stats, classes)),
            "class_mean_image": summary(*scores(grams(model, jnp.stack(means)),
                                                stats, classes))}
  pictures, titles = [], []
  for name in _RECIPES.value:
    imgs = synthesis.visualize_class(model, classes, steps=_STEPS.value,
                                     key=launch.key(_SEED.value, "synthesis"),
                                     recipe_name=name)
    rel, cos = scores(grams(model, imgs), stats, classes)
    p = np.asarray(predict.class_probabilities(model, imgs, classes)).tolist()
    result[name] = summary(rel, cos, p)
    pictures += list(imgs)
    titles += [f"{name} {model.class_names[c]} {d:.2f}" for c, d in zip(classes, cos)]
  for name, r in result.items():
    if isinstance(r, dict):
      print(json.dumps({"images": name,
                        "gram_distance_mean": round(r["gram_distance_mean"], 3),
                        "gram_cosine_distance_mean": round(r["gram_cosine_distance_mean"], 3),
                        **({"class_prob_min": round(r["class_prob_min"], 4)}
                           if "class_prob_min" in r else {})}), flush=True)
  write_json(os.path.join(workdir, "naturalness.json"), result)
  viz.save_grid(os.path.join(workdir, "naturalness.png"), pictures, titles=titles,
                ncols=len(classes), size=1.6)
  print(f"wrote {workdir}")


if __name__ == "__main__":
  app.run(main)
