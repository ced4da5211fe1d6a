r"""A synthesis sweep over a grid of settings, as one jitted computation
whose sweep axis is sharded over every device of every process.

  python experiments/sweep.py --config=experiments/configs/sweep.py --workdir=runs/sweep

Several processes (one per host of a TPU pod slice, or several on one
machine) each run the same command; `--config.coordinator=HOST:PORT
--config.num_processes=N --config.process_id=I` join them
(`jax.distributed.initialize`), or on a cluster JAX finds those itself (see
`config.distributed`). Every process computes the sweep points of its own
devices; process 0 writes `sheet.png` (one thumbnail per point, titled with
its settings), `metrics.json` (`points`: each point's settings and
`final_loss`, plus the timing) and `config.json`. Options:
experiments/configs/sweep.py (`:smoke` for tests).
"""

import itertools
import os
import time
from typing import Optional

import jax
import numpy as np

from cnnviz_jax import objectives as O
from cnnviz_jax import style, synthesis, viz
from cnnviz_jax.data import samples
from cnnviz_jax.synthesis import engine
from experiments import launch
from experiments.configs import sweep as sweep_config

# The numbers of a synthesis recipe a class_viz or deepdream grid may vary
# (every recipe entry except the parameterization, which fixes shapes).
_RECIPE_AXES = tuple(k for k in synthesis.RECIPES[synthesis.DEFAULT_RECIPE]
                     if k not in synthesis.STATIC_RECIPE_KEYS)
_STYLE_AXES = ("style_weight", "content_weight", "tv_weight", "dream_weight",
               "learning_rate")
AXES = {"class_viz": ("class",) + _RECIPE_AXES, "deepdream": _RECIPE_AXES,
        "style_transfer": _STYLE_AXES}
# Axes whose values are counts or indices.
_INT_AXES = ("class", "jitter", "roll", "blur_every")
# DeepDream's defaults (`synthesis.deepdream`), over which the grid varies:
# its pixel step and no roll unless the grid asks for one.
_DREAM_BASE = dict(l2=0.0, learning_rate=0.01)
# A 2-inch `viz.save_grid` cell fits about this many characters of its
# 8-point title on one line; longer titles wrap.
_TITLE_WIDTH = 28


# ---------------------------------------------------------------- processes

def _int_env(environ, name: str) -> int:
  try:
    return int(environ.get(name, "1"))
  except ValueError:
    return 1


def cluster_environment(environ=None) -> Optional[str]:
  """The cluster the environment names, whose process layout
  `jax.distributed.initialize()` finds by itself, or None (one process).

  Only cheap, local signs count (no metadata-server query): JAX's own
  JAX_COORDINATOR_ADDRESS, SLURM or Open MPI with more than one task, a
  TPU slice with more than one worker host.
  """
  env = os.environ if environ is None else environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "JAX_COORDINATOR_ADDRESS"
  if "SLURM_JOB_ID" in env and _int_env(env, "SLURM_NTASKS") > 1:
    return "SLURM"
  if _int_env(env, "OMPI_COMM_WORLD_SIZE") > 1:
    return "Open MPI"
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
  if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return "Cloud TPU"
  return None


def _check_processes(config) -> None:
  """Raises ValueError for a partial or malformed process layout."""
  given = {k: config[k] for k in ("coordinator", "num_processes", "process_id")}
  missing = [k for k, v in given.items() if v is None]
  if len(missing) == 3:
    return
  if missing:
    raise ValueError("config.coordinator, config.num_processes and config.process_id "
                     "go together (or none of them, on a cluster JAX detects); "
                     f"missing: {', '.join('config.' + k for k in missing)}.")
  host, _, port = str(config.coordinator).rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"config.coordinator must be HOST:PORT (process 0's address); "
                     f"got {config.coordinator!r}.")
  launch.check_at_least(config, num_processes=1, process_id=0)
  if config.process_id >= config.num_processes:
    raise ValueError(f"config.process_id must be in 0..{config.num_processes - 1}; "
                     f"got {config.process_id}.")


def initialize_distributed(config) -> bool:
  """Joins the processes of a multi-process run (`jax.distributed.initialize`),
  before anything starts JAX's backends. Returns whether it did.

  With `config.coordinator/num_processes/process_id` set, joins those; with
  none, calls `jax.distributed.initialize()` (which finds them itself) when
  `config.distributed` is True, or when it is None and `cluster_environment`
  names a cluster; otherwise a single-process run. Cross-process collectives
  on CPU use gloo (JAX's TCP implementation).
  """
  _check_processes(config)
  explicit = config.coordinator is not None
  if not explicit and (config.distributed is False or (
      config.distributed is None and cluster_environment() is None)):
    return False
  if jax.distributed.is_initialized():
    return True
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      config.coordinator, config.num_processes, config.process_id,
      initialization_timeout=config.init_timeout_s,
      heartbeat_timeout_seconds=config.heartbeat_timeout_s)
  return True


# ---------------------------------------------------------------- the grid

def parse_grid(spec: str, technique: str) -> list[tuple[str, list]]:
  """`"l2=0,0.3;class=1,2"` -> `[("l2", [0.0, 0.3]), ("class", [1, 2])]`.

  Raises:
    ValueError: naming a malformed entry, an axis `technique` does not have
      (listing the valid ones), a repeated axis or a non-integer count.
  """
  valid = AXES[technique]
  axes = []
  for part in str(spec).split(";"):
    name, eq, values = part.partition("=")
    name = name.strip()
    if not part.strip() or not eq:
      raise ValueError(f"config.grid entries are axis=v1,v2,... separated by ';'; "
                       f"got {part!r} in {spec!r}.")
    if name not in valid:
      raise ValueError(f"config.grid: {technique} has no axis {name!r}; valid: "
                       f"{', '.join(valid)}.")
    if name in dict(axes):
      raise ValueError(f"config.grid names axis {name!r} twice.")
    try:
      nums = [float(v) for v in launch.split_list(values, f"grid ({name})")]
    except ValueError as e:
      raise ValueError(f"config.grid: axis {name!r} needs numbers; got {values!r} "
                       f"({e}).") from e
    if name in _INT_AXES:
      if not all(v.is_integer() for v in nums):
        raise ValueError(f"config.grid: axis {name!r} takes integers; got {values!r}.")
      nums = [int(v) for v in nums]
    axes.append((name, nums))
  return axes


def grid_points(axes: list[tuple[str, list]]) -> list[dict]:
  """The product of the axes, the last axis fastest."""
  names = [a for a, _ in axes]
  return [dict(zip(names, vals)) for vals in itertools.product(*[v for _, v in axes])]


def label(point: dict, class_names) -> str:
  """A thumbnail's title: the point's settings, the class by name."""
  parts = [class_names[v] if k == "class" else f"{k}={v:g}" for k, v in point.items()]
  lines, line = [], ""
  for p in parts:
    if line and len(line) + 1 + len(p) > _TITLE_WIDTH:
      lines.append(line)
      line = p
    else:
      line = f"{line} {p}".strip()
  return "\n".join(lines + [line])


# ---------------------------------------------------------------- techniques

def _class_viz(model, config, points, key, **kwargs) -> engine.Result:
  recipes = [synthesis.recipe(config.recipe, **{k: v for k, v in p.items() if k != "class"})
             for p in points]
  targets = [O.class_logit(p.get("class", 0)) for p in points]
  size = (config.size, config.size) if config.size else None
  return synthesis.sweep(model, targets, 1, recipes, steps=config.steps, size=size,
                         keys=jax.random.split(key, len(points)), **kwargs)


def _deepdream(model, config, points, key, **kwargs) -> engine.Result:
  photo = samples.photo(config.image, config.max_side, "china")
  recipes = [synthesis.recipe("simonyan", **{**_DREAM_BASE, **p}) for p in points]
  return synthesis.sweep(
      model, O.layer_l2(model.resolve(config.layer)), 1, recipes,
      keys=jax.random.split(key, len(points)), steps=config.steps,
      size=photo.shape[:2], init=np.asarray(photo)[None],
      optimizer=engine.make_optimizer("sgd", "mean_abs"), **kwargs)


def _style_transfer(model, config, points, key, **kwargs) -> engine.Result:
  content = samples.photo(config.image, config.max_side, "china")
  example = samples.example_image(config.style, config.max_side)
  return style.transfer_sweep(model, content, [example], points, key=key,
                              steps=config.steps, **kwargs)


_TECHNIQUES = {"class_viz": _class_viz, "deepdream": _deepdream,
               "style_transfer": _style_transfer}


# ---------------------------------------------------------------- run

def run(config, workdir: str) -> dict:
  """Runs the sweep of `config`; process 0 writes `workdir`.

  Returns:
    `{"points": [{<axis>: value, ..., "final_loss": float}], "axes",
    "num_points", "image_hw", "num_devices", "num_processes", "seconds",
    "points_per_second", "steady_points_per_second"}`: `final_loss` is minus
    the objective (which the engine maximizes) at the last step, the mean
    over the point's images; `seconds` the whole sweep with compilation;
    `steady_points_per_second` the rate after the first compiled chunk
    (None with a single chunk).
  """
  launch.check_choice(config, "technique", sweep_config.TECHNIQUES)
  axes = parse_grid(config.grid, config.technique)
  points = grid_points(axes)
  launch.check_at_least(config, steps=1, heartbeat_timeout_s=1, init_timeout_s=1)
  if config.chunk is not None:
    launch.check_at_least(config, chunk=1)
  # Before anything starts JAX's backends (the model below does).
  initialize_distributed(config)
  arch = launch.architecture(config)
  if "class" in dict(axes):
    launch.check_indices(dict(axes)["class"], arch.num_classes, "grid (class)", "class")
  if config.technique == "class_viz":
    launch.check_choice(config, "recipe", synthesis.RECIPES)
  if config.technique == "deepdream":
    launch.check_layers(arch, [config.layer], "layer")
  for path, key in ((config.image, "image"), (config.style, "style")):
    if path is not None:
      launch.check_files([path], key)
  writer = jax.process_index() == 0
  if writer:
    launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))

  marks = []

  def progress(done, history):
    # Chunks are dispatched asynchronously: wait, so the times are real.
    jax.block_until_ready(history)
    marks.append((done, time.perf_counter()))

  t0 = time.perf_counter()
  result = _TECHNIQUES[config.technique](
      model, config, points, launch.key(config.seed, "synthesis"),
      chunk=config.chunk, progress=progress)
  images = np.asarray(result.images)
  losses = -np.asarray(result.history["objective"])[:, -1].mean(axis=-1)
  seconds = time.perf_counter() - t0
  steady = None
  if len(marks) >= 2:
    per_step = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
    steady = len(points) / (per_step * config.steps)
  metrics = {
      "technique": config.technique,
      "axes": dict(axes),
      "points": [dict(p, final_loss=float(l)) for p, l in zip(points, losses)],
      "num_points": len(points),
      "image_hw": list(images.shape[2:4]),
      "num_devices": jax.device_count(),
      "num_processes": jax.process_count(),
      "seconds": seconds,
      "points_per_second": len(points) / seconds,
      "steady_points_per_second": steady,
  }
  if writer:
    viz.save_grid(os.path.join(workdir, "sheet.png"), list(images[:, 0]),
                  titles=[label(p, model.class_names) for p in points],
                  ncols=len(axes[-1][1]))
    launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("sweep", run)
