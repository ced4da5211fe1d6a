r"""Class model visualization (Simonyan et al. 2014; Yosinski et al. 2015).

  python experiments/class_viz.py --config=experiments/configs/class_viz.py \
      --workdir=runs/class_viz --config.steps=50

Writes classes.png, metrics.json (each image's class probability) and
config.json. Options: experiments/configs/class_viz.py (`:smoke` for tests).
"""

import os

from cnnviz_jax import synthesis, viz
from cnnviz_jax.models import predict
from experiments import launch

# Classes drawn when `config.classes` is empty: a 4x4 grid's worth.
_DEFAULT_CLASSES = 16


def run(config, workdir: str) -> dict:
  """Visualizes the classes of `config` and writes the results to `workdir`.

  Returns:
    `{"class_prob": {class name: softmax probability of its image}}`.
  """
  arch = launch.architecture(config)
  launch.check_choice(config, "recipe", synthesis.RECIPES)
  launch.check_at_least(config, steps=1)
  if config.size is not None:
    launch.check_at_least(config, size=arch.min_size)
  classes = (launch.check_indices(config.classes, arch.num_classes, "classes", "class")
             or list(range(min(arch.num_classes, _DEFAULT_CLASSES))))
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  size = (config.size, config.size) if config.size else None
  images = synthesis.visualize_class(
      model, classes, key=launch.key(config.seed, "synthesis"),
      steps=config.steps, size=size, recipe_name=config.recipe)
  probs = predict.class_probabilities(model, images, classes).tolist()
  names = [model.class_names[c] for c in classes]
  viz.save_grid(os.path.join(workdir, "classes.png"), list(images),
                titles=[f"{n} {p:.2f}" for n, p in zip(names, probs)])
  metrics = {"class_prob": dict(zip(names, probs))}
  launch.write_results(workdir, metrics,
                       dict(config.to_dict(), classes=classes,
                            recipe_options=synthesis.recipe(config.recipe)))
  return metrics


if __name__ == "__main__":
  launch.main("class_viz", run)
