"""cnnviz_jax: visualizing and understanding convolutional networks in JAX.

Every technique is a pure function of `(model or params, images, ...)` on
float32 NHWC RGB images in [0, 1].
"""

from cnnviz_jax import _xla_cpu

# Before anything imports a module that starts JAX's backend: XLA:CPU's
# convolutions through Eigen rather than YNNPACK, and large temporaries kept
# mapped between calls (glibc's malloc thresholds); both measured in
# `_xla_cpu`.
_xla_cpu.configure()
_xla_cpu.configure_malloc()

# Long processes that compile many programs: see its docstring.
release_compiled = _xla_cpu.release_compiled

__version__ = "0.1.0"
