r"""Trains the generator prior: a network inverting `cifar_vgg`'s fc6.

  python experiments/train_generator.py --config=experiments/configs/train_generator.py \
      --workdir=runs/generator --output=cnnviz_jax/synthesis/weights/generator.safetensors

Restarting with the same --workdir resumes from the last checkpoint (a changed
config is refused, except steps_per_run and log_every). Writes metrics.json
(steps done, the logged loss history) and config.json; --output gets the
generator once the run is finished. Smoke run:
--config=experiments/configs/train_generator.py:smoke.
"""

from absl import flags

from cnnviz_jax import synthesis
from experiments import launch


def run(config, workdir: str, output: str | None = None) -> dict:
  """Trains (or resumes) in `workdir`; see `synthesis.train_generator`."""
  launch.prepare_workdir(workdir)
  metrics = synthesis.train_generator(config, workdir, output)
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  # Defined only when run as a script (launch.py): tests import `run`.
  _OUTPUT = flags.DEFINE_string(
      "output", None, "Where to write the trained generator (safetensors).")
  launch.main("train_generator",
              lambda config, workdir: run(config, workdir, _OUTPUT.value))
