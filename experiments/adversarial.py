r"""Adversarial attacks with evaluation, and fooling images.

  python experiments/adversarial.py --config=experiments/configs/adversarial.py \
      --workdir=runs/adversarial --config.targeted=True

Needs CIFAR-10 (../shared/data/cifar10-jpeg.tar). Attacks `n` correctly
classified test images, then turns the first `fool_images` into their
runner-up class within `fool_eps` (the lecture's elephant -> koala). Writes
fooling.png (the first `fool_show`), metrics.json (attack and fooling results,
`fooling.confident_success_rate`: the fraction reaching probability >= 0.9)
and config.json.
Options: experiments/configs/adversarial.py (`:smoke` for tests).
"""

import os

from absl import app
import jax
import numpy as np

from cnnviz_jax import adversarial, models, viz
from cnnviz_jax import data
from cnnviz_jax.models import predict
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("adversarial")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  model = models.load("cifar_vgg")
  # The model is about 90% accurate: 10 * (n // 8 + 1) images hold n correct ones.
  x, y = data.load_cifar10(config.data, "test", limit=config.n // 8 + 1)
  x, y = predict.correctly_classified(model, x.astype(np.float32) / 255.0, y, config.n)
  key = jax.random.PRNGKey(config.seed)
  targets = (predict.random_other_classes(key, y, model.num_classes)
             if config.targeted else None)
  kw = dict(eps=config.eps, norm=config.norm)
  if config.attack == "pgd":
    kw.update(steps=config.steps, step_size=config.step_size, restarts=config.restarts)
  _, attack = adversarial.attack_dataset(model, x, y, attack=config.attack, key=key,
                                         targets=targets, **kw)
  fx, fy = x[:config.fool_images], y[:config.fool_images]
  ft = predict.runner_up(model, fx)
  fooled = adversarial.fool(model, fx, ft, eps=config.fool_eps, steps=config.fool_steps)
  fooling = adversarial.evaluate(model, fx, fooled, fy, ft)
  show = config.fool_show
  fx, fy, ft, fooled = fx[:show], fy[:show], ft[:show], fooled[:show]
  probs = predict.class_probabilities(model, fooled, ft).tolist()
  names = model.class_names
  # The change, scaled so that +-fool_eps spans the full grey range.
  diff = 0.5 + (fooled - fx) / (2 * config.fool_eps)
  os.makedirs(workdir, exist_ok=True)
  viz.save_grid(
      os.path.join(workdir, "fooling.png"), list(fx) + list(diff) + list(fooled),
      titles=[names[int(c)] for c in fy] + ["change x%.0f" % (0.5 / config.fool_eps)] * len(fx)
      + [f"{names[int(t)]} {p:.2f}" for t, p in zip(ft, probs)], ncols=len(fx))
  launch.write_results(workdir, {"attack": attack, "fooling": fooling}, config)


if __name__ == "__main__":
  app.run(main)
