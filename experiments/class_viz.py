r"""Class model visualization (Simonyan et al. 2014; Yosinski et al. 2015).

  python experiments/class_viz.py --config=experiments/configs/class_viz.py \
      --workdir=runs/class_viz --config.steps=50

Writes classes.png, metrics.json (each image's class probability) and
config.json. Options: experiments/configs/class_viz.py (`:smoke` for tests).
"""

import os

from absl import app
import jax

from cnnviz_jax import models, synthesis, viz
from cnnviz_jax.models import predict
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("class_viz")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load_or_init(config.model, config.weights, key=jax.random.PRNGKey(0))
  classes = list(config.classes) or list(range(min(model.num_classes, 16)))
  size = (config.size, config.size) if config.size else None
  images = synthesis.visualize_class(model, classes, key=jax.random.PRNGKey(config.seed),
                                     steps=config.steps, size=size,
                                     recipe_name=config.recipe)
  probs = predict.class_probabilities(model, images, classes).tolist()
  names = [model.class_names[c] for c in classes]
  os.makedirs(workdir, exist_ok=True)
  viz.save_grid(os.path.join(workdir, "classes.png"), list(images),
                     titles=[f"{n} {p:.2f}" for n, p in zip(names, probs)])
  launch.write_results(workdir, {"class_prob": dict(zip(names, probs))},
                       dict(config.to_dict(), classes=classes,
                            recipe_options=synthesis.recipe(config.recipe)))


if __name__ == "__main__":
  app.run(main)
