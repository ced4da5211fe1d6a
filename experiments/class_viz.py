r"""Class model visualization (Simonyan et al. 2014; Yosinski et al. 2015).

  python experiments/class_viz.py --workdir=runs/class_viz --model=cifar_vgg \
      --recipe=yosinski --steps=200
Smoke: --steps=5 --classes=0,1.
"""

import os

from absl import app, flags
import jax
import numpy as np

from cnnviz_jax import models, pictures, synthesis
from cnnviz_jax.models.checkpoint import write_json

_WORKDIR = flags.DEFINE_string("workdir", "runs/class_viz", "Output folder.")
_MODEL = flags.DEFINE_string("model", "cifar_vgg", "Model name.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Weights file (ImageNet models).")
_CLASSES = flags.DEFINE_list("classes", None, "Class indices (default: all, at most 16).")
_RECIPE = flags.DEFINE_enum("recipe", synthesis.DEFAULT_RECIPE, list(synthesis.RECIPES),
                            "Regularization recipe.")
_STEPS = flags.DEFINE_integer("steps", 200, "Optimization steps.")
_SIZE = flags.DEFINE_integer("size", None, "Image side (default: model input size).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  model = (models.load(_MODEL.value, _WEIGHTS.value) if _WEIGHTS.value or
           _MODEL.value == "cifar_vgg" else models.load(_MODEL.value, key=jax.random.PRNGKey(0)))
  classes = ([int(c) for c in _CLASSES.value] if _CLASSES.value
             else list(range(min(model.num_classes, 16))))
  size = (_SIZE.value, _SIZE.value) if _SIZE.value else None
  config = dict(model=_MODEL.value, classes=classes, steps=_STEPS.value, size=size,
                seed=_SEED.value, **synthesis.recipe(_RECIPE.value), recipe=_RECIPE.value)
  images = synthesis.visualize_class(model, classes, key=jax.random.PRNGKey(_SEED.value),
                                     steps=_STEPS.value, size=size,
                                     recipe_name=_RECIPE.value)
  probs = jax.nn.softmax(model(images)[0])[np.arange(len(classes)), np.asarray(classes)]
  os.makedirs(_WORKDIR.value, exist_ok=True)
  names = [model.class_names[c] for c in classes]
  pictures.save_grid(os.path.join(_WORKDIR.value, "classes.png"), list(images),
                     titles=[f"{n} {p:.2f}" for n, p in zip(names, probs)])
  write_json(os.path.join(_WORKDIR.value, "metrics.json"),
            {"class_prob": {n: float(p) for n, p in zip(names, probs)}})
  write_json(os.path.join(_WORKDIR.value, "config.json"), config)


if __name__ == "__main__":
  app.run(main)
