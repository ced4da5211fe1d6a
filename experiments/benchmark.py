r"""Side-by-side speed: this library vs the PyTorch/Captum baseline, on the
identical network (converted weights), in one run; prints ratios.

  python experiments/benchmark.py attribution [--repeats=5] [--quick]
  python experiments/benchmark.py synthesis
  python experiments/benchmark.py            # all suites
  python experiments/benchmark.py style --winograd_min_work=16777216

Each suite lives in `experiments/bench_<suite>.py` and exposes
`run(repeats: int, quick: bool) -> list[bench_common.Row]`. Report the median
of several repeats from one run: machines here are noisy.
"""

import importlib
import os
import platform

from absl import app, flags
import jax

from experiments import bench_common, launch
from cnnviz_jax.io import write_json
from cnnviz_jax.models import winograd

SUITES = ("attribution", "synthesis", "features", "style", "conv", "train")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats per case (median).")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes: checks that it runs.")
_OUTPUT = flags.DEFINE_string("output", None, "Optional JSON file of results.")
_WINOGRAD = flags.DEFINE_bool(
    "winograd", True, "Let the CPU conv plan take Winograd convolutions.")
_WINOGRAD_MIN_WORK = flags.DEFINE_integer(
    "winograd_min_work", None, "Least output pixels x C x O that takes "
    "Winograd; None: models.winograd.MIN_WORK.")


def main(argv):
  suites = argv[1:] or SUITES
  unknown = [s for s in suites if s not in SUITES]
  if unknown:
    raise app.UsageError(f"unknown suite(s) {unknown}; valid: {SUITES}")
  launch.quiet_backend_probe()
  import torch
  results = {"device": str(jax.devices()[0].device_kind),
             "platform": platform.platform(), "cpu_count": os.cpu_count(),
             "torch_threads": torch.get_num_threads(), "suites": {}}
  print(f"jax {jax.__version__} on {results['device']}; torch "
        f"{torch.__version__} with {results['torch_threads']} threads")
  results["winograd"] = {
      "on": _WINOGRAD.value,
      "min_work": _WINOGRAD_MIN_WORK.value or winograd.MIN_WORK}
  for suite in suites:
    with winograd.use(_WINOGRAD.value, _WINOGRAD_MIN_WORK.value):
      rows = importlib.import_module(f"experiments.bench_{suite}").run(
          _REPEATS.value, _QUICK.value)
    print(bench_common.format_table(suite, rows), flush=True)
    results["suites"][suite] = bench_common.to_json(rows)
  if _OUTPUT.value:
    write_json(_OUTPUT.value, results)


if __name__ == "__main__":
  app.run(main)
