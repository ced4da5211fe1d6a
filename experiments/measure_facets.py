r"""Measures how much multifaceted facets differ (issue 13).

  python experiments/measure_facets.py --classes=3,7,8 --seeds=0,1,2

For each class and seed: k-means of the class's first `--images` training
images in fc7 space, one facet per cluster (`synthesis.multifaceted`), then
`synthesis.facet_separation` for the facets and, as references, for the real
image nearest each k-means centre and for the cluster-mean images. Prints one
JSON line per run and a summary (own-centre share, spread ratio range,
lowest class probability); `--output` also writes them as JSON.
"""

import json

from absl import app, flags
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import data, models, synthesis
from cnnviz_jax.io import write_json
from cnnviz_jax.models import predict
from experiments import launch

_CLASSES = flags.DEFINE_list("classes", ["3", "7", "8"], "Class indices (cat, horse, ship).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (launch.key(seed, ...)).")
_K = flags.DEFINE_integer("k", 4, "Facets per class.")
_IMAGES = flags.DEFINE_integer("images", 300, "Training images per class clustered.")
_STEPS = flags.DEFINE_integer("steps", 100, "Optimization steps.")
_ANCHOR = flags.DEFINE_float("anchor", synthesis.DEFAULT_ANCHOR, "Anchor weight.")
_DIVERSITY = flags.DEFINE_float("diversity", synthesis.DEFAULT_DIVERSITY,
                                "Diversity weight.")
_RECIPE = flags.DEFINE_string("recipe", "yosinski", "Synthesis recipe.")
_DATA = flags.DEFINE_string("data", data.DEFAULT_CIFAR, "CIFAR-10 location.")
_OUTPUT = flags.DEFINE_string("output", None, "Optional JSON output path.")


def measure(model, x, target: int, seed: int, *, k: int, steps: int, anchor: float,
            diversity: float, recipe: str) -> dict:
  """Facet and reference separation figures for one class and seed.

  Args:
    model: the classifier.
    x: float32 `[N, H, W, 3]` in [0, 1], images of class `target`.
    target, seed: class index and seed.
    k, steps, anchor, diversity, recipe: as `synthesis.multifaceted`.
  """
  res = synthesis.multifaceted(model, x, target, k=k, steps=steps,
                               key=launch.key(seed, "synthesis"), anchor=anchor,
                               diversity=diversity, recipe_name=recipe)
  # The real image nearest each k-means centre (a reference for real facets).
  _, acts = model.apply(model.params, x, taps=("fc7",), logits=False)
  d = jnp.linalg.norm(acts["fc7"][None] - res.centres[:, None], axis=-1)
  nearest = x[np.asarray(d.argmin(1))]
  probs = predict.class_probabilities(model, res.images, [target] * k)
  sep = lambda imgs: synthesis.facet_separation(model, imgs, x, res.assignment)
  return {"class": target, "seed": seed, "facets": sep(res.images),
          "nearest_real": sep(nearest), "cluster_means": sep(res.means),
          "class_prob": np.asarray(probs).tolist(),
          "cluster_sizes": np.bincount(np.asarray(res.assignment), minlength=k).tolist()}


def main(argv):
  launch.check_no_args(argv)
  model = models.load("cifar_vgg")
  x_all, y_all = data.load_cifar10(_DATA.value, "train", _IMAGES.value)
  rows = []
  for c in map(int, _CLASSES.value):
    x = x_all[y_all == c].astype(np.float32) / 255.0
    for s in map(int, _SEEDS.value):
      row = measure(model, jnp.asarray(x), c, s, k=_K.value, steps=_STEPS.value,
                    anchor=_ANCHOR.value, diversity=_DIVERSITY.value,
                    recipe=_RECIPE.value)
      rows.append(row)
      print(json.dumps({"class": c, "seed": s, "prob_min": min(row["class_prob"]),
                        **{f"{name}_{m}": round(row[name][m], 3)
                           for name in ("facets", "nearest_real", "cluster_means")
                           for m in ("own_centre_share", "spread_ratio")}}), flush=True)
  ratio = lambda name: [r[name]["spread_ratio"] for r in rows]
  summary = {
      "runs": len(rows),
      "facets_own_centre_share": float(np.mean([r["facets"]["own_centre_share"] for r in rows])),
      "facets_spread_ratio": [min(ratio("facets")), max(ratio("facets"))],
      "nearest_real_spread_ratio": [min(ratio("nearest_real")), max(ratio("nearest_real"))],
      "cluster_means_spread_ratio": [min(ratio("cluster_means")), max(ratio("cluster_means"))],
      "class_prob_min": min(min(r["class_prob"]) for r in rows),
      "settings": {"k": _K.value, "images": _IMAGES.value, "steps": _STEPS.value,
                   "anchor": _ANCHOR.value, "diversity": _DIVERSITY.value,
                   "recipe": _RECIPE.value}}
  print(json.dumps(summary, indent=1))
  if _OUTPUT.value:
    write_json(_OUTPUT.value, {"summary": summary, "runs": rows})


if __name__ == "__main__":
  app.run(main)
