r"""Adversarial attacks with evaluation, and fooling images.

  python experiments/adversarial.py --config=experiments/configs/adversarial.py \
      --workdir=runs/adversarial --config.targeted=True

Reads CIFAR-10 from `config.data` (../shared/data/cifar10-jpeg.tar; without
it, the bundled 1,000-image test sample). Attacks `n` correctly
classified test images, then turns the first `fool_images` into their
runner-up class within `fool_eps` (the lecture's elephant -> koala). Writes
fooling.png (the first `fool_show`), metrics.json (attack and fooling results,
`fooling.confident_success_rate`: the fraction reaching probability >= 0.9)
and config.json.
Options: experiments/configs/adversarial.py (`:smoke` for tests).
"""

import os

import numpy as np

from cnnviz_jax import adversarial, data, viz
from cnnviz_jax.models import predict
from experiments import launch


def run(config, workdir: str) -> dict:
  """Attacks and fools CIFAR-10 test images; writes the results to `workdir`.

  Returns:
    `{"attack": adversarial.evaluate(...) of the attack, "fooling": the same
    for the fooling images}`, each with `"n"`, the number of images.
  """
  arch = launch.architecture(config)
  launch.check_cifar_classifier(arch)
  launch.check_choice(config, "attack", adversarial.ATTACKS)
  launch.check_choice(config, "norm", adversarial.NORMS)
  launch.check_at_least(config, n=1, steps=1, restarts=1, fool_steps=1,
                        fool_images=1, fool_show=1)
  launch.check_positive(config, "eps", "step_size", "fool_eps")
  if config.fool_images > config.n:
    raise ValueError(f"config.fool_images ({config.fool_images}) must be <= "
                     f"config.n ({config.n}): fooling images are attacked images.")
  source = data.resolve_cifar(config.data)
  launch.check_files([source], "data")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  # cifar_vgg is about 90% accurate: 10 * (n // 8 + 1) images hold n correct
  # ones; the bundled sample has 100 per class.
  per_class = config.n // 8 + 1
  if source == data.SAMPLE_CIFAR:
    per_class = min(per_class, 100)
  x, y = data.load_cifar10(source, "test", limit=per_class)
  x, y = predict.correctly_classified(model, x.astype(np.float32) / 255.0, y, config.n)
  if len(x) == 0:
    raise ValueError(f"{config.model} classifies none of the "
                     f"{10 * (config.n // 8 + 1)} test images read correctly: "
                     "nothing to attack.")
  targets = (predict.random_other_classes(launch.key(config.seed, "targets"), y,
                                          model.num_classes)
             if config.targeted else None)
  kw = dict(eps=config.eps, norm=config.norm)
  if config.attack == "pgd":
    kw.update(steps=config.steps, step_size=config.step_size, restarts=config.restarts)
  _, attack = adversarial.attack_dataset(
      model, x, y, attack=config.attack, key=launch.key(config.seed, "attack"),
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
  viz.save_grid(
      os.path.join(workdir, "fooling.png"), list(fx) + list(diff) + list(fooled),
      titles=[names[int(c)] for c in fy]
      + ["change x%.0f" % (0.5 / config.fool_eps)] * len(fx)
      + [f"{names[int(t)]} {p:.2f}" for t, p in zip(ft, probs)], ncols=len(fx))
  metrics = {"attack": dict(attack, n=len(x)), "fooling": dict(fooling, n=len(fy)),
             "data": source}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("adversarial", run)
