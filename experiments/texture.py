r"""Neural texture synthesis (Gatys et al. 2015): Gram matching from noise.

  python experiments/texture.py --config=experiments/configs/texture.py \
      --workdir=runs/texture

Writes texture.png, example_vs_texture.png, losses.json (the objective per
step), metrics.json (style loss at the start and the end) and config.json.
Options: experiments/configs/texture.py (`:smoke` for tests).
"""

import os

from cnnviz_jax import style, viz
from cnnviz_jax.data import samples
from cnnviz_jax.io import write_json
from experiments import launch


def run(config, workdir: str) -> dict:
  """Synthesizes a texture from `config.example`; writes it to `workdir`."""
  arch = launch.architecture(config)
  launch.check_at_least(config, steps=1, size=arch.min_size,
                        example_max_side=arch.min_size, tv_weight=0)
  launch.check_positive(config, "learning_rate")
  launch.check_choice(config, "optimizer", style.OPTIMIZERS)
  layers = (launch.check_layers(arch, launch.split_list(config.layers, "layers"), "layers")
            if config.layers else None)
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  example = samples.example_image(config.example, config.example_max_side)
  out, res, problem = style.texture(
      model, example, (config.size, config.size), key=launch.key(config.seed, "synthesis"),
      steps=config.steps, layers=layers, optimizer=config.optimizer,
      learning_rate=config.learning_rate, tv_weight=config.tv_weight,
      return_result=True)
  start = float(style.losses(model, problem, problem.init)["style"][0])
  end = float(style.losses(model, problem, out)["style"][0])
  viz.save_image(os.path.join(workdir, "texture.png"), out[0])
  viz.save_grid(os.path.join(workdir, "example_vs_texture.png"), [example, out[0]],
                titles=["example", f"Gram texture ({model.name})"], size=3.0)
  write_json(os.path.join(workdir, "losses.json"),
             {"objective": res.history["objective"][:, 0].tolist()})
  metrics = {"style_loss_start": start, "style_loss_end": end,
             "layers": list(layers or style.default_layers(model)[0])}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("texture", run)
