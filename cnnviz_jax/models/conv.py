"""One 2-D convolution for every network in the library, with CPU-tuned
gradients.

    y = conv2d(x, kernel, bias, stride=1, padding=1)   # NHWC, HWIO kernel
    y = Conv(64, 3, padding=1, name="conv1_1")(x)      # the same, as Flax

Values and gradients equal `lax.conv_general_dilated` and its autodiff up to
float rounding, on every platform. Only the formulation differs, and only on
CPU. There the library first moves XLA:CPU's convolutions from YNNPACK to
Eigen (`cnnviz_jax/_xla_cpu.py`: the CIFAR VGG's layers at batch 256 ran
1.8x-3x faster), and under that setting XLA's own formulation of each pass
won on most layers. A `jax.custom_vjp` picks, from the static shapes at trace
time, the formulation measured fastest on this machine's CPU (2-core AMD
EPYC, AVX-512; `experiments/bench_conv.py`) where it is not XLA's own:

- all three passes of stride-1 3x3 layers with many channels: Winograd's
  minimal filtering (`"winograd"`, `winograd.py`: F(2x2, 3x3) forward and
  input gradient, F(3x3, 2x2) weight gradient; 2.25x fewer multiply-adds,
  1.1x-2.1x faster per pass from 128 channels; not for small layers, where
  it gains nothing for ~1.4 s more compile time, nor under XLA's -O0,
  `winograd.planned`);
- weight gradient: one GEMM per kernel row over the row's taps concatenated
  (`"rows"`, 3x3 stride 2 for up to 4 images), im2col in channel-major
  layout plus one GEMM (`"im2col_t"`, 3x3 on RGB), XLA's formulation on
  explicitly transposed operands (`"transposed"`, larger kernels on RGB);
  one GEMM per tap over a shifted view of the padded input
  (`"shift"`) and im2col plus one GEMM (`"im2col"`) are kept for
  measurement;
- input gradient: one GEMM plus col2im (`"col2im"`) for 3x3 layers on RGB
  (the saliency gradient); for stride s > 1 on large maps the s*s output
  phases as stride-1 convolutions of the output gradient with the matching
  sub-kernels (`"phase"`), instead of XLA's convolution of an s-dilated
  input;
- forward: large kernels to few outputs as one 3x3 convolution to many plus
  shifted sums (`"split"`); large kernels from RGB 2x2 output block by
  block, one convolution of the space-to-depth input to the four output
  phases (`"phases"`); unpadded
  3x3 convolutions on large maps given a ring of padding that is cropped off
  again (`"crop"`). Two formulations
  that won under YNNPACK lost under Eigen and are kept for measurement only:
  1-3 input channels padded to 4 (`"pad4"`), stride 2 as a stride-1
  convolution of the space-to-depth input (`"s2d"`).

The formulations and the rules choosing them live in `conv_plan` (re-exported
here: `FORWARD`, `INPUT_GRAD`, `WEIGHT_GRAD`, `plan`).

Gradients that nobody asked for are not computed (the kernel gradient of a
saliency map, the image gradient of a training step): the rule sees which
inputs are perturbed (`symbolic_zeros`). On GPU and TPU the convolution and its
gradients are XLA's own (`lax.platform_dependent`), which cuDNN serves well.

Only first-order reverse mode is defined (`custom_vjp`): the library's
attribution and synthesis use first-order gradients; `jax.jvp` and
second-order derivatives through `conv2d` raise. `jax.vmap` works at any level.
"""

import functools
from typing import Callable, Optional

import flax.linen as nn
from flax.linen import dtypes as flax_dtypes
import jax
from jax import lax

from cnnviz_jax.models.conv_plan import (  # noqa: F401 (re-exported)
    FORWARD, INPUT_GRAD, WEIGHT_GRAD, IntPair, Padding, _pads, _pair,
    _xla_forward, _xla_input_grad, _xla_weight_grad, plan)

Array = jax.Array


# --------------------------------------------------------------------------
# The primitive.

@functools.lru_cache(maxsize=None)
def _conv_fn(stride, pads, methods: Optional[tuple[str, str, str]]):
  """`f(x, kernel)` with a custom VJP, for static stride/padding. `methods`
  forces (forward, input_grad, weight_grad) names on CPU; None uses `plan`."""

  def chosen(x_shape, kernel_shape):
    if methods is not None:
      return dict(zip(("forward", "input_grad", "weight_grad"), methods))
    return plan(x_shape, kernel_shape, stride, pads)

  def on_cpu(cpu_fn, default_fn, *args):
    # Decided when lowering for the platform: GPU/TPU get XLA's own.
    return lax.platform_dependent(*args, cpu=cpu_fn, default=default_fn)

  @jax.custom_vjp
  def f(x, kernel):
    return forward(x, kernel)

  def forward(x, kernel):
    name = chosen(x.shape, kernel.shape)["forward"]
    return on_cpu(functools.partial(FORWARD[name], stride=stride, pads=pads),
                  functools.partial(_xla_forward, stride=stride, pads=pads),
                  x, kernel)

  def fwd(x, kernel):
    y = forward(x.value, kernel.value)
    # Keep only what the requested gradients need.
    return y, (x.value if kernel.perturbed else None,
               kernel.value if x.perturbed else None,
               x.value.shape, kernel.value.shape)

  def bwd(res, g):
    x, kernel, x_shape, kernel_shape = res
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
      return None, None
    plan_ = chosen(x_shape, kernel_shape)
    dx = dk = None
    if kernel is not None:
      dx = on_cpu(
          functools.partial(INPUT_GRAD[plan_["input_grad"]], x_shape=x_shape,
                            stride=stride, pads=pads),
          functools.partial(_xla_input_grad, x_shape=x_shape, stride=stride,
                            pads=pads),
          kernel, g)
    if x is not None:
      dk = on_cpu(
          functools.partial(WEIGHT_GRAD[plan_["weight_grad"]],
                            kernel_shape=kernel_shape, stride=stride, pads=pads),
          functools.partial(_xla_weight_grad, kernel_shape=kernel_shape,
                            stride=stride, pads=pads),
          x, g)
    return dx, dk

  f.defvjp(fwd, bwd, symbolic_zeros=True)
  return f


def conv2d(x: Array, kernel: Array, bias: Optional[Array] = None, *,
           stride: IntPair = 1, padding: Padding = 0,
           _methods: Optional[tuple[str, str, str]] = None) -> Array:
  """2-D cross-correlation, as `torch.nn.functional.conv2d` and Flax `nn.Conv`.

  Args:
    x: `[N, H, W, C]`.
    kernel: `[kh, kw, C, O]` (HWIO, as Flax `nn.Conv` stores it).
    bias: `[O]` or None.
    stride: int or `(sh, sw)`.
    padding: zero padding in pixels: int, `(ph, pw)` or
      `((top, bottom), (left, right))`.
    _methods: benchmarks only: force `(forward, input_grad, weight_grad)`
      formulation names on CPU.

  Returns:
    `[N, Ho, Wo, O]`, `Ho = (H + top + bottom - kh) // sh + 1`.
  """
  if x.ndim != 4 or kernel.ndim != 4:
    raise ValueError(f"conv2d takes x [N, H, W, C] and kernel [kh, kw, C, O]; "
                     f"got shapes {x.shape} and {kernel.shape}.")
  if x.shape[-1] != kernel.shape[2]:
    raise ValueError(f"x has {x.shape[-1]} channels but the kernel expects "
                     f"{kernel.shape[2]} (kernel shape {kernel.shape}).")
  x, kernel, bias = flax_dtypes.promote_dtype(x, kernel, bias)
  y = _conv_fn(_pair(stride, "stride"), _pads(padding), _methods)(x, kernel)
  return y if bias is None else y + bias


# torchvision's conv initializer (torchvision/models/vgg.py
# `_initialize_weights`): kaiming normal with fan_out.
default_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class Conv(nn.Module):
  """Flax module over `conv2d`, with `nn.Conv`'s parameters: `kernel`
  `[kh, kw, C, features]` and `bias` `[features]` (checkpoints and the
  torchvision conversion are the same as for `nn.Conv`).

  Attributes:
    features: output channels.
    kernel_size: int or `(kh, kw)`.
    strides: int or `(sh, sw)`.
    padding: zero padding in pixels (see `conv2d`).
    use_bias: add a bias.
    kernel_init, bias_init: initializers.
  """
  features: int
  kernel_size: IntPair
  strides: IntPair = 1
  padding: Padding = 0
  use_bias: bool = True
  kernel_init: Callable = default_kernel_init
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kh, kw = _pair(self.kernel_size, "kernel_size")
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, x.shape[-1], self.features))
    bias = (self.param("bias", self.bias_init, (self.features,))
            if self.use_bias else None)
    return conv2d(x, kernel, bias, stride=self.strides, padding=self.padding)
