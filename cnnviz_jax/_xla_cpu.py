"""The one XLA:CPU option the library sets, before JAX starts its backend.

XLA:CPU in jax 0.10.2 hands convolutions and matrix products to YNNPACK.
YNNPACK's matrix products are the fastest here, but its convolutions were not:
on the 2-core EPYC, XLA's other convolution path (Eigen's) ran, per 3x3
convolution (ms, YNNPACK -> Eigen, median of 20, `--xla_cpu_...=individual_dot`
vs unset):

- batch 256, 16x16, 64->128 (the CIFAR VGG): forward 54.7 -> 30.5, input
  gradient 114 -> 61, weight gradient 213 -> 72;
- batch 4, 112x112, 64->128 (VGG16 conv2_1): input gradient 43 -> 39, weight
  gradient 120 -> 58; forward even (16.3 vs 17.1);
- batch 1, 64x64, 128->128 (a style network's residual block): forward even
  (2.8 vs 2.7), input gradient 6.9 -> 5.3;

while matrix products kept YNNPACK's speed (4096x4096x128: 446 GFLOP/s with
it, 412 without). So `configure` keeps YNNPACK for matrix products only:
`--xla_cpu_experimental_ynn_fusion_type=individual_dot`.

It only appends to `XLA_FLAGS`, only when the flag is not there already (a
user's own value wins: `...=individual_dot,individual_convolution` gives
convolutions back to YNNPACK) and only before the backend starts; XLA reads
`XLA_FLAGS` once, then. On GPU and TPU the flag has no effect.
"""

import logging
import os

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
VALUE = "individual_dot"


def configure() -> bool:
  """Adds `FLAG=VALUE` to `XLA_FLAGS` if it is not set and JAX has not
  started a backend yet.

  Returns:
    Whether the flag was added.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if FLAG.lstrip("-") in flags:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    started = xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):  # a JAX without this helper
    started = False
  if started:
    logging.getLogger(__name__).info(
        "JAX's backend started before cnnviz_jax was imported, so %s=%s "
        "(faster CPU convolutions, see cnnviz_jax/_xla_cpu.py) is not set; "
        "import cnnviz_jax first or put it in XLA_FLAGS.", FLAG, VALUE)
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={VALUE}".strip()
  return True
