"""Neural texture synthesis (Gatys et al. 2015) and style transfer (Gatys et
al. 2016) on the synthesis engine: the style is a sum of Gram terms, the
content a feature-match term, both ordinary objective terms, so one compiled
loop serves every weight and a sweep vmaps over them.

    out = style.transfer(model, content, [starry], key=key, steps=300)
    tex = style.texture(model, example, (256, 256), key=key, steps=300)
"""

from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import image as image_lib
from cnnviz_jax import objectives as O
from cnnviz_jax.models import predict
from cnnviz_jax.style import _gram, _images
from cnnviz_jax.synthesis import engine
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import sweep_engine

Array = jax.Array

# Gatys et al. 2016, section 2: style from conv1_1 ... conv5_1 (their "conv"
# is the layer after the ReLU), content from conv4_2, on every VGG.
GATYS_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
GATYS_CONTENT = "relu4_2"
# The same roles on the other zoo models: the first ReLU of every block for
# style, and for content the ReLU one block from the top, second conv where a
# block has two (cifar_vgg's four blocks: relu3_2 is VGG's relu4_2 one block
# lower; AlexNet's relu4 is its second-last conv).
DEFAULT_LAYERS = {
    "cifar_vgg": (("relu1_1", "relu2_1", "relu3_1", "relu4_1"), "relu3_2"),
    "alexnet": (("relu1", "relu2", "relu3", "relu4", "relu5"), "relu4"),
    "tiny": (("relu1_1", "relu2_1"), "relu2_1"),
}
OPTIMIZERS = ("adam", "lbfgs")
# Adam's step on [0, 1] pixels: 0.02 moves a pixel 5 grey levels per step;
# larger steps leave speckle, smaller ones need more steps (by eye, 256 px).
DEFAULT_LEARNING_RATE = 0.02
# Relative weights (both losses are relative errors, see `_gram`): a style
# error of 1 per layer weighs 100 times a content error of 1; with these the
# output keeps the content's layout and takes the painting's strokes (by eye
# on the README pictures). TV (mean squared neighbour difference of [0, 1]
# pixels, about 1e-3 on photographs) at 10 removes checkerboard artefacts
# without visible blur.
DEFAULT_STYLE_WEIGHT = 100.0
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_TV_WEIGHT = 10.0
# Bytes per float32 activation kept for the backward pass, counted twice
# (the value kept for the backward pass and its gradient), plus the
# optimizer's copies of the image (see `memory_estimate`).
_BYTES = 4
# L-BFGS keeps 10 pairs of image-sized vectors (optax.lbfgs memory_size=10).
_LBFGS_COPIES = 2 * 10 + 4


def default_layers(model) -> tuple[tuple[str, ...], str]:
  """`(style layers, content layer)` for `model`: the Gatys set on the VGGs
  (style relu1_1 ... relu5_1, content relu4_2), `DEFAULT_LAYERS` otherwise."""
  if model.name.startswith("vgg"):
    return GATYS_STYLE, GATYS_CONTENT
  if model.name in DEFAULT_LAYERS:
    return DEFAULT_LAYERS[model.name]
  raise ValueError(f"no default style layers for model {model.name!r}; pass "
                   f"layers=... and content_layer=... (valid: "
                   f"{', '.join(model.layer_names)}).")


def style_grams(model, styles: Sequence[Array], layers: Sequence[str],
                style_weights: Optional[Sequence[float]] = None) -> list[Array]:
  """One blended Gram target `[1, C, C]` per layer: the `style_weights`
  weighted mean over the styles (each `[1, h, w, 3]`, its own size)."""
  grams = [[_gram.gram_matrix(a)
            for a in predict.activations(model, s, layers).values()]
           for s in styles]
  w = [1.0] * len(styles) if style_weights is None else list(style_weights)
  return [_gram.blend_grams([g[i] for g in grams], w) for i in range(len(layers))]


def _check_weights(style_weights, n):
  if n == 0:
    raise ValueError("styles is empty; pass at least one style image.")
  if style_weights is None:
    return [1.0 / n] * n
  w = [float(x) for x in style_weights]
  if len(w) != n:
    raise ValueError(f"style_weights has {len(w)} entries for {n} style images.")
  if any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
    raise ValueError(f"style_weights must be >= 0 with a positive sum; got {w}.")
  return w


def _layer_weights(layer_weights, layers):
  if layer_weights is None:
    # Gatys et al. 2016: w_l = 1 / (number of style layers).
    return [1.0 / len(layers)] * len(layers)
  w = [float(x) for x in layer_weights]
  if len(w) != len(layers) or any(x < 0 for x in w):
    raise ValueError(f"layer_weights must be {len(layers)} numbers >= 0 (one per "
                     f"style layer {list(layers)}); got {w}.")
  return w


def _check_optimizer(optimizer):
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}.")


def _init_image(init, key, hw, content=None):
  """The starting image `[1, H, W, 3]`: "content", "noise" (uniform, as
  Gatys) or an image (resized to `hw`)."""
  if isinstance(init, str):
    if init == "noise":
      return jax.random.uniform(key, (1, *hw, 3), jnp.float32)
    if init == "content" and content is not None:
      return content
    valid = "'noise', 'content' or an image" if content is not None else "'noise' or an image"
    raise ValueError(f"init must be {valid}; got {init!r}.")
  x = _images.to_rgb(init, name="init")
  if x.shape[1:3] != tuple(hw):
    x = jnp.clip(image_lib.resize(x, hw, "linear"), 0.0, 1.0)
  return x


class Problem(NamedTuple):
  """A style problem ready for the engine: the setup, the starting image and
  the pieces needed to report per-term losses."""
  setup: engine.Setup
  init: Array
  style: O.Objective         # sum_l w_l gram_loss (maximized, <= 0)
  content: Optional[O.Objective]


def _dream(model, dream_layer):
  return O.layer_l2(model.resolve(dream_layer))


def transfer_problem(model, content: Array, styles: Sequence, *, key: Array,
                     style_weights=None, style_weight=DEFAULT_STYLE_WEIGHT,
                     content_weight=DEFAULT_CONTENT_WEIGHT,
                     tv_weight=DEFAULT_TV_WEIGHT, layers=None,
                     layer_weights=None, content_layer=None, init="content",
                     style_scale: float = 1.0, preserve_color=None,
                     dream_layer=None, dream_weight=0.0,
                     learning_rate=DEFAULT_LEARNING_RATE) -> Problem:
  """The `Problem` of `transfer` (same arguments): objective
  `style_weight * sum_l w_l gram + content_weight * content - tv_weight * tv
  + dream_weight * layer_l2(dream_layer)`, maximized."""
  content = _images.to_rgb(content, name="content")
  hw = tuple(content.shape[1:3])
  if min(hw) < model.min_size:
    raise ValueError(f"content is {hw[0]}x{hw[1]}, below the network's minimum "
                     f"{model.min_size}x{model.min_size}.")
  styles = list(styles) if not isinstance(styles, (np.ndarray, jax.Array)) else [styles]
  sw = _check_weights(style_weights, len(styles))
  for k, v in (("style_weight", style_weight), ("content_weight", content_weight),
               ("tv_weight", tv_weight), ("dream_weight", dream_weight)):
    checks.check_positive(v, k, allow_zero=True)
  if all(checks.is_concrete(v) and float(v) == 0 for v in
         (style_weight, content_weight, dream_weight)):
    raise ValueError("style_weight, content_weight and dream_weight are all 0: "
                     "nothing to optimize.")
  d_style, d_content = default_layers(model) if layers is None or content_layer is None else (None, None)
  layers = [model.resolve(l) for l in (layers or d_style)]
  if not layers:
    raise ValueError("layers is empty; pass at least one style layer.")
  content_layer = model.resolve(content_layer or d_content)
  lw = _layer_weights(layer_weights, layers)
  if preserve_color not in _images.COLOR_MODES:
    raise ValueError(f"preserve_color must be one of {_images.COLOR_MODES}; "
                     f"got {preserve_color!r}.")
  styles = _images.prepare_styles(
      styles, hw, scale=style_scale, min_size=model.min_size,
      color="histogram" if preserve_color == "histogram" else None,
      content=content)
  targets = style_grams(model, styles, layers, sw)
  style = _gram.style_loss(layers, targets, lw)
  content_obj = _gram.content_loss(
      content_layer,
      predict.activations(model, content, [content_layer])[content_layer])
  obj = style_weight * style + content_weight * content_obj - tv_weight * O.tv(2.0)
  if dream_layer is not None:
    obj = obj + dream_weight * _dream(model, dream_layer)
  start = _init_image(init, key, hw, content)
  return Problem(engine.Setup(obj, learning_rate=learning_rate), start, style,
                 content_obj)


def _run(model, problem: Problem, *, key, steps, optimizer, chunk, unroll,
         progress):
  _check_optimizer(optimizer)
  hw = tuple(problem.init.shape[1:3])
  return engine.optimize(model, problem.setup, P.pixels(1, hw), key=key,
                         steps=steps, optimizer=optimizer, init=problem.init,
                         chunk=chunk, unroll=unroll, progress=progress)


def losses(model, problem: Problem, images: Array) -> dict:
  """`{"style": [N], "content": [N]}`: the weighted-sum style error (the
  relative Gram errors, >= 0) and the relative content error of `images`."""
  out = {"style": -engine.objective_values(model, problem.style, images)}
  if problem.content is not None:
    out["content"] = -engine.objective_values(model, problem.content, images)
  return out


def _finish(out, content, preserve_color):
  if preserve_color == "luminance":
    return _images.luminance_transfer(out, content)
  return out


def transfer(model, content: Array, styles: Sequence, *, key: Array,
             style_weights: Optional[Sequence[float]] = None, steps: int = 300,
             optimizer: str = "adam", chunk: Optional[int] = None,
             unroll: Optional[int] = None, progress=None,
             return_result: bool = False, **kwargs):
  """Style transfer (Gatys et al. 2016): an image with the content's layout
  and the styles' Gram statistics.

  Args:
    model: the loss network (`models.load(...)`); see `default_layers`.
    content: the content image `[1, H, W, 3]` (or `[H, W, 3]`, grayscale,
      RGBA, uint8: converted) in [0, 1]; the output has its size.
    styles: a list of style images, any sizes (same formats), or one image.
    key: PRNG key (the noise start and the loop).
    style_weights: one weight >= 0 per style (positive sum; default equal):
      the target Grams are their weighted mean.
    steps: optimizer steps.
    optimizer: "adam" (learning rate `learning_rate`) or "lbfgs" (Gatys'
      choice, optax's L-BFGS with its line search), both in the jitted loop.
    chunk, unroll, progress: as in `synthesis.engine.optimize` (on a GPU, a
      long chunk with `unroll=1` compiles once and runs as fast).
    return_result: also return the engine `Result` and the `Problem`.
    **kwargs: `style_weight` (100), `content_weight` (1), `tv_weight` (10),
      `layers` (style layers), `layer_weights` (per style layer, default
      equal), `content_layer`, `init` ("content", "noise" or an image),
      `style_scale` (style size relative to the content's longer side, 1),
      `preserve_color` (None, "luminance": the output's luminance with the
      content's colours, Gatys et al. 2017; "histogram": the styles' colour
      histograms matched to the content before transfer), `dream_layer` and
      `dream_weight` (adds `dream_weight * layer_l2(dream_layer)`, DeepDream
      in the style objective), `learning_rate` (Adam, 0.02).

  Returns:
    float32 `[1, H, W, 3]` in [0, 1] (and `(result, problem)` when
    `return_result`).

  Raises:
    ValueError: an empty style list, a style smaller than the network's
      minimum after `style_scale`, all weights zero, unknown layers, a bad
      optimizer name.
  """
  problem = transfer_problem(model, content, styles, key=jax.random.fold_in(key, 1),
                             style_weights=style_weights, **kwargs)
  res = _run(model, problem, key=key, steps=steps, optimizer=optimizer,
             chunk=chunk, unroll=unroll, progress=progress)
  content = _images.to_rgb(content, name="content")
  out = _finish(res.images, content, kwargs.get("preserve_color"))
  return (out, res, problem) if return_result else out


def texture_problem(model, example, hw, *, key: Array, layers=None,
                    layer_weights=None, tv_weight=0.0, scale: float = 1.0,
                    init="noise", dream_layer=None, dream_weight=0.0,
                    learning_rate=DEFAULT_LEARNING_RATE) -> Problem:
  """The `Problem` of `texture` (same arguments)."""
  ex = _images.to_rgb(example, name="example")
  ex = _images.scale_to(ex, ex.shape[1:3], scale, model.min_size)
  if len(hw) != 2 or min(hw) < model.min_size:
    raise ValueError(f"hw must be (H, W) >= the network's minimum "
                     f"{model.min_size}; got {hw!r}.")
  checks.check_positive(tv_weight, "tv_weight", allow_zero=True)
  hw = (int(hw[0]), int(hw[1]))
  layers = [model.resolve(l) for l in (layers or default_layers(model)[0])]
  lw = _layer_weights(layer_weights, layers)
  targets = style_grams(model, [ex], layers)
  style = _gram.style_loss(layers, targets, lw)
  obj = style - tv_weight * O.tv(2.0)
  if dream_layer is not None:
    obj = obj + dream_weight * _dream(model, dream_layer)
  return Problem(engine.Setup(obj, learning_rate=learning_rate),
                 _init_image(init, key, hw), style, None)


def texture(model, example, hw: tuple[int, int], *, key: Array, steps: int = 300,
            layers: Optional[Sequence[str]] = None, optimizer: str = "adam",
            chunk: Optional[int] = None, unroll: Optional[int] = None,
            progress=None, return_result: bool = False, **kwargs):
  """Neural texture synthesis (Gatys et al. 2015): from noise, an image whose
  Gram matrices at `layers` match the example's.

  Args:
    model: the loss network.
    example: the texture `[h, w, 3]` or `[1, h, w, 3]` (grayscale, RGBA,
      uint8 converted), any size >= the network's minimum.
    hw: output `(H, W)`, any size >= the network's minimum.
    key: PRNG key.
    steps: optimizer steps.
    layers: style layers (default `default_layers(model)[0]`).
    optimizer: "adam" or "lbfgs".
    **kwargs: `layer_weights`, `tv_weight` (0), `scale` (resize the example
      by this factor first), `init` ("noise" or an image), `dream_layer`,
      `dream_weight`, `learning_rate`.

  Returns:
    float32 `[1, H, W, 3]` in [0, 1] (and `(result, problem)` when
    `return_result`).
  """
  problem = texture_problem(model, example, hw, key=jax.random.fold_in(key, 1),
                            layers=layers, **kwargs)
  res = _run(model, problem, key=key, steps=steps, optimizer=optimizer,
             chunk=chunk, unroll=unroll, progress=progress)
  return (res.images, res, problem) if return_result else res.images


def transfer_sweep(model, content, styles, points: Sequence[dict], *, key: Array,
                   steps: int = 300, chunk: Optional[int] = None,
                   unroll: Optional[int] = None, progress=None,
                   **kwargs) -> engine.Result:
  """Style transfer at S settings of its numbers as one vmapped computation
  (`synthesis.sweep_engine.sweep`, sharded over devices like other sweeps).

  Args:
    points: S dicts of `style_weight`, `content_weight`, `tv_weight`,
      `dream_weight`, `learning_rate` (missing keys: `kwargs` or defaults),
      e.g. `[dict(style_weight=s, tv_weight=t) for s in ... for t in ...]`.
    key: one key; point `s` uses `fold_in(key, s)`.
    **kwargs: the other `transfer` arguments (layers, init, ...), shared.

  Returns:
    `Result` with images `[S, 1, H, W, 3]` and history `[S, steps, 1]`.
  """
  numeric = ("style_weight", "content_weight", "tv_weight", "dream_weight",
             "learning_rate")
  points = list(points)
  if not points:
    raise ValueError("transfer_sweep needs at least one point.")
  for p in points:
    bad = set(p) - set(numeric)
    if bad:
      raise ValueError(f"sweep points may set {numeric}; got {sorted(bad)}.")
  problems = [transfer_problem(model, content, styles, key=jax.random.fold_in(key, 1),
                               **{**kwargs, **p}) for p in points]
  init = problems[0].init
  return sweep_engine.sweep(
      model, [p.setup for p in problems], P.pixels(1, init.shape[1:3]),
      keys=jnp.stack([jax.random.fold_in(key, s) for s in range(len(points))]),
      steps=steps, optimizer="adam", init=init, chunk=chunk, unroll=unroll,
      progress=progress)


# ------------------------------------------------------------- multiscale

def memory_estimate(model, hw: tuple[int, int], layers: Sequence[str],
                    optimizer: str = "adam") -> int:
  """Bytes a style step at `hw` needs, estimated: every activation up to the
  deepest of `layers` kept once for the backward pass and once as its
  gradient, plus the optimizer's image-sized buffers (Adam 4, L-BFGS 24).
  An upper-side estimate (XLA fuses conv and ReLU and frees early); it has
  not yet been checked against a measured device peak."""
  deepest = max(model.layer_index(l) for l in layers)
  names = model.layer_names[:deepest + 1]
  x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  _, acts = jax.eval_shape(
      lambda p, x: model.apply(p, x, taps=names, logits=False), model.params, x)
  act = sum(int(np.prod(a.shape)) for a in acts.values()) * _BYTES
  copies = _LBFGS_COPIES if optimizer == "lbfgs" else 4
  return 2 * act + copies * int(np.prod(x.shape)) * _BYTES


def pyramid(hw: tuple[int, int], start_side: int, min_size: int) -> list[tuple[int, int]]:
  """Sizes from the coarsest (longer side about `start_side`) to `hw`, each
  twice the previous (Gatys et al. 2017, section 5: coarse-to-fine)."""
  sizes = [tuple(hw)]
  while max(sizes[0]) / 2 >= start_side and min(sizes[0]) / 2 >= min_size:
    sizes.insert(0, (round(sizes[0][0] / 2), round(sizes[0][1] / 2)))
  return sizes


def transfer_multiscale(model, content: Array, styles: Sequence, *, key: Array,
                        steps: Union[int, Sequence[int]] = 200,
                        start_side: int = 256, memory_limit: float = 20e9,
                        optimizer: str = "adam", **kwargs):
  """Coarse-to-fine style transfer for large outputs (Gatys et al. 2017,
  section 5): transfer at `start_side`, then at twice the size starting from
  the upsampled result, up to the content's size. The coarse passes fix the
  large-scale arrangement cheaply; the fine ones need few steps.

  Memory: a step at the full size dominates. Before running, the full size is
  checked against `memory_limit` bytes (`memory_estimate`); over it, a
  ValueError names the estimate and the largest size that fits. The default
  20e9 leaves room on a 24 GB accelerator.

  Args:
    content: `[1, H, W, 3]` at the output size.
    steps: per level (int, or one per level, coarsest first).
    start_side: the coarsest level's longer side.
    memory_limit: bytes available to one step.
    **kwargs: as `transfer` (styles are rescaled per level by `style_scale`).

  Returns:
    float32 `[1, H, W, 3]` in [0, 1].
  """
  content = _images.to_rgb(content, name="content")
  hw = tuple(content.shape[1:3])
  layers = kwargs.get("layers") or default_layers(model)[0]
  need = memory_estimate(model, hw, list(layers) + [kwargs.get("content_layer") or
                                                    default_layers(model)[1]], optimizer)
  if need > memory_limit:
    side = max(hw)
    while side > model.min_size and memory_estimate(
        model, (round(hw[0] * side / max(hw)), round(hw[1] * side / max(hw))),
        layers, optimizer) > memory_limit:
      side = int(side * 0.9)
    raise ValueError(f"a style step at {hw[0]}x{hw[1]} needs about {need / 1e9:.1f} GB "
                     f"(memory_estimate) > memory_limit {memory_limit / 1e9:.1f} GB; "
                     f"the largest output that fits has a longer side of about {side}.")
  sizes = pyramid(hw, start_side, model.min_size)
  per = [steps] * len(sizes) if isinstance(steps, int) else list(steps)
  if len(per) != len(sizes):
    raise ValueError(f"steps has {len(per)} entries for {len(sizes)} levels {sizes}.")
  kwargs.setdefault("init", "content")
  init = kwargs.pop("init")
  out = None
  for level, (size, n) in enumerate(zip(sizes, per)):
    c = jnp.clip(image_lib.resize(content, size, "linear"), 0.0, 1.0)
    start = init if out is None else jnp.clip(image_lib.resize(out, size, "linear"), 0.0, 1.0)
    out = transfer(model, c, styles, key=jax.random.fold_in(key, level), steps=n,
                   optimizer=optimizer, init=start, **kwargs)
  return out
