r"""Efros & Leung (1999) texture synthesis in scan-line order (Wei & Levoy
2000), the classical baseline.

  python experiments/texture_nonparametric.py \
      --config=experiments/configs/texture_nonparametric.py \
      --workdir=runs/texture_nonparametric

Writes texture.png, example_vs_texture.png, metrics.json (seconds, pixels per
second) and config.json. Options: experiments/configs/texture_nonparametric.py
(`:smoke` for tests).
"""

import os
import time

import jax

from cnnviz_jax import style, viz
from cnnviz_jax.data import samples
from experiments import launch


def run(config, workdir: str) -> dict:
  """Synthesizes a texture from `config.example`; writes it to `workdir`."""
  launch.check_at_least(config, size=1, example_max_side=3, window=3, tolerance=0)
  launch.prepare_workdir(workdir)
  example = samples.example_image(config.example, config.example_max_side)
  hw = (config.size, config.size)
  t = time.perf_counter()
  out = jax.block_until_ready(style.texture_nonparametric(
      example, hw, key=launch.key(config.seed, "synthesis"), window=config.window,
      tolerance=config.tolerance))
  seconds = time.perf_counter() - t
  viz.save_image(os.path.join(workdir, "texture.png"), out)
  viz.save_grid(os.path.join(workdir, "example_vs_texture.png"), [example, out],
                titles=["example", f"Efros-Leung, window {config.window}"], size=3.0)
  metrics = {"seconds": seconds, "pixels_per_second": hw[0] * hw[1] / seconds,
             "shape": list(out.shape)}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("texture_nonparametric", run)
