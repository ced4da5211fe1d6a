r"""Style transfer (Gatys et al. 2016, 2017): content, styles with weights,
colour preservation, DeepDream term, and sweeps over style x TV weight.

  python experiments/style_transfer.py --config=experiments/configs/style_transfer.py \
      --workdir=runs/style_transfer

Writes stylized.png, content_style_output.png, losses.json (the objective per
step), metrics.json (style and content losses at the start and the end) and
config.json; with `sweep_style_weight` and `sweep_tv_weight`, also
sweep.png, a contact sheet of the grid computed as one vmapped call.
Options: experiments/configs/style_transfer.py (`:smoke` for tests).
"""

import os

import jax.numpy as jnp

from cnnviz_jax import style, viz
from cnnviz_jax.data import samples
from cnnviz_jax.io import write_json
from experiments import launch


def _floats(config, key):
  return [float(x) for x in launch.split_list(config[key], key)] if config[key] else []


def run(config, workdir: str) -> dict:
  """Stylizes `config.content` with `config.styles`; writes to `workdir`."""
  arch = launch.architecture(config)
  launch.check_at_least(config, steps=1, max_side=arch.min_size, style_weight=0,
                        content_weight=0, tv_weight=0, dream_weight=0)
  launch.check_positive(config, "learning_rate", "style_scale")
  launch.check_choice(config, "optimizer", style.OPTIMIZERS)
  launch.check_choice(config, "init", ("content", "noise"))
  launch.check_choice(config, "preserve_color", ("", "luminance", "histogram"))
  layers = (launch.check_layers(arch, launch.split_list(config.layers, "layers"), "layers")
            if config.layers else None)
  content_layer = (launch.check_layers(arch, [config.content_layer], "content_layer")[0]
                   if config.content_layer else None)
  dream_layer = (launch.check_layers(arch, [config.dream_layer], "dream_layer")[0]
                 if config.dream_layer else None)
  style_paths = launch.split_list(config.styles, "styles") if config.styles else []
  launch.check_files(style_paths + ([config.content] if config.content else []),
                     "styles/content")
  sweep_s, sweep_t = _floats(config, "sweep_style_weight"), _floats(config, "sweep_tv_weight")
  if bool(sweep_s) != bool(sweep_t):
    raise ValueError("config.sweep_style_weight and config.sweep_tv_weight go "
                     "together (their product is the grid); set both or neither.")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  content = samples.photo(config.content, config.max_side, "china")
  styles = ([samples.photo(p, 4 * config.max_side, "") for p in style_paths]
            or [samples.photo(None, 4 * config.max_side, "flower")])
  kwargs = dict(style_weights=_floats(config, "style_weights") or None,
                layers=layers, content_layer=content_layer, init=config.init,
                style_scale=config.style_scale,
                preserve_color=config.preserve_color or None,
                dream_layer=dream_layer, dream_weight=config.dream_weight)
  weights = dict(style_weight=config.style_weight, content_weight=config.content_weight,
                 tv_weight=config.tv_weight, learning_rate=config.learning_rate)
  key = launch.key(config.seed, "synthesis")
  out, res, problem = style.transfer(
      model, content, styles, key=key, steps=config.steps, optimizer=config.optimizer,
      return_result=True, **kwargs, **weights)
  start = {k: float(v[0]) for k, v in style.losses(model, problem, problem.init).items()}
  end = {k: float(v[0]) for k, v in style.losses(model, problem, res.images).items()}
  viz.save_image(os.path.join(workdir, "stylized.png"), out[0])
  viz.save_grid(os.path.join(workdir, "content_style_output.png"),
                [content, *styles, out[0]],
                titles=["content"] + [f"style {i}" for i in range(len(styles))]
                + [f"output ({model.name})"], size=3.0)
  write_json(os.path.join(workdir, "losses.json"),
             {"objective": res.history["objective"][:, 0].tolist()})
  metrics = {"loss_start": start, "loss_end": end, "shape": list(out.shape)}
  if sweep_s:
    points = [dict(weights, style_weight=s, tv_weight=t) for s in sweep_s for t in sweep_t]
    swept = style.transfer_sweep(model, content, styles, points, key=key,
                                 steps=config.steps, **kwargs)
    viz.save_grid(os.path.join(workdir, "sweep.png"), list(swept.images[:, 0]),
                  titles=[f"style {p['style_weight']:g}, tv {p['tv_weight']:g}"
                          for p in points], ncols=len(sweep_t), size=2.5)
    metrics["sweep_final_objective"] = jnp.asarray(
        swept.history["objective"][:, -1, 0]).tolist()
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("style_transfer", run)
