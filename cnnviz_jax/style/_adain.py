"""Arbitrary style in one forward pass: adaptive instance normalization
(Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive
Instance Normalization").

    net = style.load_adain()                                 # shipped decoder
    out = style.adain_stylize(net, photos, [painting])       # any new painting
    out = style.adain_stylize(net, photos, [a, b], weights=[0.3, 0.7], alpha=0.8)

A fixed encoder (a zoo model up to `layer`) maps the content and the style
image to features; AdaIN gives the content features the style features'
per-channel mean and standard deviation,

    t = std(s) * (f(c) - mean(f(c))) / std(f(c)) + mean(s),

and a trained decoder (`Decoder`, the encoder mirrored, nearest upsampling
by `ReflectConv` as in the feed-forward stylizer) maps `t` back to an image.
No style is built into the decoder: a new painting needs no training.
`alpha` trades content for style (`(1 - alpha) f(c) + alpha t`); several
styles blend by weights (the paper's interpolation: AdaIN is affine in the
style's mean and deviation, so blending those equals blending the outputs).

Training (`train_adain`, the loop of `_fast_train.run_training`) lowers
`content_weight * |f(g(t)) - t|^2 + style_weight * sum_l (|mean_l(g(t)) -
mean_l(s)|^2 + |std_l(g(t)) - std_l(s)|^2)` (mean squares over channels and
positions) at the encoder's style layers, on random crops of photographs
(content) and of style images.
"""

import dataclasses
import functools
import json
import os
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import _checks as checks
from cnnviz_jax.models import checkpoint, core, registry
from cnnviz_jax.style import _fast_train as FT
from cnnviz_jax.style import _images
from cnnviz_jax.style import _stylizer as S

Array = jax.Array

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                       "adain_decoder.safetensors")
ADAIN_EXPORT = "adain_decoder.safetensors"
FORMAT = "cnnviz_jax.adain/1"
# Added to the variance before its square root (as instance norm's).
EPS = 1e-5


# ---------------------------------------------------------------- AdaIN

def moments(features: Array, eps: float = EPS) -> tuple[Array, Array]:
  """Per image and channel mean and standard deviation over the positions.

  Args:
    features: float `[N, h, w, C]`.
    eps: added to the variance.

  Returns:
    `(mean, std)`, each `[N, 1, 1, C]`.
  """
  mean, var = S.mean_var(features)
  return mean, jnp.sqrt(var + eps)


def adain(content: Array, style_mean: Array, style_std: Array,
          eps: float = EPS) -> Array:
  """Adaptive instance norm: `content` `[N, h, w, C]` re-normalized to the
  per-channel `style_mean` and `style_std` (`[N or 1, 1, 1, C]`)."""
  mean, std = moments(content, eps)
  return style_std * (content - mean) / std + style_mean


# -------------------------------------------------------------- decoder

def decoder_plan(model, layer: str) -> tuple:
  """The encoder `model` up to `layer` mirrored: a tuple of stages, deepest
  first, each a tuple of output widths of its 3x3 convolutions; every stage
  but the first starts with a 2x-style nearest upsampling to the size the
  encoder had there. A stage the encoder had one convolution in gets one
  more of its own width (two per stage, as VGG's first stages have); the
  last width is 3 (RGB).

  Raises:
    ValueError: `layer` is not a conv-stage layer of `model`.
  """
  layer = model.resolve(layer)
  stop = model.layer_index(layer)
  hw = _probe_hw(model)
  if len(model.layer_shape(layer, hw)) != 3:
    raise ValueError(f"layer {layer} of {model.name} is not spatial; the "
                     "AdaIN encoder ends at a conv-stage layer.")
  stages, size, channels = [[]], hw, 3
  for spec in model.layers[:stop + 1]:
    shape = model.layer_shape(spec.name, hw)
    if tuple(shape[:2]) != tuple(size) and stages[-1]:
      stages.append([])
    size = tuple(shape[:2])
    if spec.kind == "conv":
      stages[-1].append((channels, shape[-1]))  # (in, out)
      channels = shape[-1]
  stages = [s for s in stages if s]
  plan = []
  for i, stage in enumerate(reversed(stages)):
    widths = [cin for cin, _ in reversed(stage)]
    if i > 0 and len(stage) < 2:
      widths = [stage[-1][1]] + widths
    plan.append(tuple(widths))
  return tuple(plan)


class Decoder(nn.Module):
  """The AdaIN decoder: `plan` as `decoder_plan` gives. Reflection-padded
  3x3 convolutions with ReLU; each later stage begins with a nearest resize
  to its size fused into the first convolution (`ReflectConv`); a sigmoid
  keeps the output in (0, 1).

  Call `decoder.apply(params, t, sizes)`: `t` `[N, h, w, C]`, `sizes` a
  tuple of `(H, W)` per later stage (the last the image size).
  """
  plan: tuple

  @nn.compact
  def __call__(self, t: Array, sizes: tuple) -> Array:
    if len(sizes) != len(self.plan) - 1:
      raise ValueError(f"{len(self.plan) - 1} stage sizes needed; got {sizes}.")
    x, k = t, 0
    last = sum(len(s) for s in self.plan)
    for i, widths in enumerate(self.plan):
      for j, width in enumerate(widths):
        k += 1
        up = tuple(sizes[i - 1]) if i > 0 and j == 0 else None
        out = k == last
        x = S.ReflectConv(width, 3, upsample_to=up, name=f"conv{k}",
                          kernel_init=S._OUT_INIT if out else
                          S.conv_lib.default_kernel_init)(x)
        x = jax.nn.sigmoid(x) if out else nn.relu(x)
    return x


def stage_sizes(model, layer: str, hw: tuple[int, int]) -> tuple:
  """The `sizes` a `Decoder` of `decoder_plan(model, layer)` needs for
  images of size `hw`: the encoder's map sizes, shallower stages last."""
  stop = model.layer_index(layer)
  sizes = []
  for spec in model.layers[:stop + 1]:
    s = tuple(int(v) for v in model.layer_shape(spec.name, hw)[:2])
    if not sizes or sizes[-1] != s:
      sizes.append(s)
  sizes[0] = tuple(hw)
  return tuple(reversed(sizes[:-1]))


class AdaIN(NamedTuple):
  """A trained AdaIN network: the encoder `model` up to `layer`, the
  `decoder` and its `params`, and the file's metadata `info`."""
  model: core.Model
  layer: str
  decoder: Decoder
  params: dict
  info: dict


# ---------------------------------------------------------- stylizing

def _encode(model, images: Array, layers: tuple) -> dict:
  return model.apply(model.params, images, taps=layers, logits=False)[1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _stylize(layer, decoder, sizes, model, params, images, style_mean,
             style_std, alpha):
  f = _encode(model, images, (layer,))[layer]
  t = alpha * adain(f, style_mean, style_std) + (1.0 - alpha) * f
  return decoder.apply({"params": params}, t, sizes)


@functools.partial(jax.jit, static_argnums=0)
def _style_moments(layer, model, image):
  return moments(_encode(model, image, (layer,))[layer])


def style_moments(net: AdaIN, styles: Sequence, weights=None):
  """The blended `(mean, std)` (`[1, 1, 1, C]`) of `styles` at the encoder
  layer: each style image (any size; `[h, w, 3]`, uint8 or float) encoded
  alone, its moments weighted by `weights` (>= 0, summing to 1; None: equal)."""
  if isinstance(styles, (np.ndarray, jax.Array)) and np.ndim(styles) in (3, 4):
    styles = [styles]
  styles = list(styles)
  if not styles:
    raise ValueError("styles is empty; give at least one style image.")
  w = S.style_weights(np.full(len(styles), 1.0 / len(styles), np.float32)
                      if weights is None else weights, len(styles), 1)[0]
  stats = []
  for i, s in enumerate(styles):
    x = _images.to_rgb(s, name=f"styles[{i}]")
    if min(x.shape[1:3]) < net.model.min_size:
      raise ValueError(f"styles[{i}] is {x.shape[1]}x{x.shape[2]}; the encoder "
                       f"{net.model.name} needs at least {net.model.min_size} px.")
    stats.append(_style_moments(net.layer, net.model, x))
  mean = sum(wi * m for wi, (m, _) in zip(w, stats))
  std = sum(wi * s for wi, (_, s) in zip(w, stats))
  return mean, std


def adain_stylize(net: AdaIN, images: Array, styles: Sequence, *,
                  alpha: float = 1.0, weights=None) -> Array:
  """Stylizes `images` with any style image(s) in one forward pass.

  Args:
    net: `load_adain()` or a trained `AdaIN`.
    images: float32 `[N, H, W, 3]` (or one `[H, W, 3]`) RGB in [0, 1], both
      sides at least the encoder's minimum (32 for `cifar_vgg`).
    styles: one style image or a list (any sizes; uint8 or float).
    alpha: content-style trade-off in [0, 1] (1: the full style).
    weights: per style, >= 0 and summing to 1 (None: equal).

  Returns:
    float32 images of the same shape, in [0, 1].

  Raises:
    ValueError: bad images, styles, weights or alpha, naming the problem.
  """
  x = jnp.asarray(images, jnp.float32)
  single = x.ndim == 3
  x = x[None] if single else x
  checks.check_images(x, min_size=net.model.min_size)
  if not 0.0 <= float(alpha) <= 1.0:
    raise ValueError(f"alpha must be in [0, 1] (0: the content, 1: the full "
                     f"style); got {alpha!r}.")
  mean, std = style_moments(net, styles, weights)
  sizes = stage_sizes(net.model, net.layer, tuple(x.shape[1:3]))
  out = _stylize(net.layer, net.decoder, sizes, net.model, net.params, x,
                 mean, std, jnp.float32(alpha))
  return out[0] if single else out


# ------------------------------------------------------------- files

def save_adain(path: str, net: AdaIN, *, recipe: Optional[dict] = None) -> None:
  """Writes the decoder parameters (safetensors, atomically) with the
  encoder name, layer and plan and the training recipe as metadata."""
  checkpoint.save(path, net.params, {
      "format": FORMAT, "encoder": net.model.name, "layer": net.layer,
      "plan": [list(s) for s in net.decoder.plan], "recipe": recipe or {}})


def load_adain(path: Optional[str] = None, model=None) -> AdaIN:
  """A trained AdaIN network.

  Args:
    path: a file `save_adain` (training) wrote; None: the shipped decoder
      (`weights/ADAIN_MODEL_CARD.md`).
    model: the encoder; None loads the zoo model the file names (its
      shipped or converted weights, `models.load`).

  Raises:
    FileNotFoundError: no such file.
    ValueError: not an AdaIN file, an encoder of another architecture, or
      tensors that do not match the decoder it names.
  """
  path = SHIPPED if path is None else os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"AdaIN decoder weights not found: {path}")
  meta = checkpoint.read_metadata(path)
  if meta.get("format") != FORMAT:
    raise ValueError(f"{path} is not an AdaIN decoder file (no 'format: "
                     f"{FORMAT}' metadata); write it with style.save_adain.")
  info = {"encoder": meta["encoder"], "layer": meta["layer"],
          "plan": json.loads(meta["plan"]), "recipe": json.loads(meta["recipe"])}
  if model is None:
    model = registry.load(info["encoder"])
  elif model.name != info["encoder"]:
    raise ValueError(f"{path} decodes {info['encoder']} features; got the "
                     f"encoder {model.name}.")
  plan = tuple(tuple(int(c) for c in s) for s in info["plan"])
  if plan != decoder_plan(model, info["layer"]):
    raise ValueError(f"{path}: its decoder plan {plan} does not mirror "
                     f"{model.name} up to {info['layer']}.")
  decoder = Decoder(plan)
  params, _ = checkpoint.load(path, _expected_shapes(decoder, model, info["layer"]))
  return AdaIN(model, info["layer"], decoder,
               jax.tree_util.tree_map(jnp.asarray, params), info)


def _probe_hw(model) -> tuple[int, int]:
  """An input size every layer of `model` accepts, to read shapes at."""
  side = max(64, int(model.min_size))
  return side, side


def _init(decoder: Decoder, model, layer: str, key: Array, hw=None):
  hw = _probe_hw(model) if hw is None else hw
  c = model.layer_shape(layer, hw)
  return _jit_init(decoder, key, (1, *c), stage_sizes(model, layer, hw))


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _jit_init(decoder, key, t_shape, sizes):
  # Jitted once per decoder and size: eager, Flax ran every layer's ops one
  # by one (2.6 s a call).
  return decoder.init(key, jnp.zeros(t_shape, jnp.float32), sizes)["params"]


def _expected_shapes(decoder, model, layer) -> dict:
  shapes = jax.eval_shape(lambda k: _init(decoder, model, layer, k),
                          jax.random.PRNGKey(0))
  return {k: tuple(v.shape) for k, v in core.flatten(shapes).items()}


# ------------------------------------------------------------ training

@dataclasses.dataclass(frozen=True)
class AdaINRecipe:
  """What an AdaIN training run does (stored with the checkpoints).

  Attributes:
    encoder: zoo model name; `layer` its AdaIN layer; `style_layers` where
      the style moments are matched.
    crop: side of the square crops (content and style), pixels.
    batch: content/style pairs per step.
    steps, learning_rate: Adam's run (Huang & Belongie: 1e-4, 160k steps).
    style_weight, content_weight: the loss weights.
    scales: longer sides photographs are resized to before cropping.
    style_scales: the same for the style images.
    cifar_fraction: share of content crops that are upsampled CIFAR-10.
    style_cifar_fraction: share of style crops that are CIFAR-10 images
      (varied colour statistics where few paintings are at hand).
    seed: initialization and data order.
  """
  encoder: str = "cifar_vgg"
  layer: str = "relu3_1"
  style_layers: tuple = ("relu1_1", "relu2_1", "relu3_1")
  crop: int = 64
  batch: int = 8
  steps: int = 3000
  learning_rate: float = 5e-4
  style_weight: float = 10.0
  content_weight: float = 1.0
  scales: tuple = (96, 160, 256, 384)
  style_scales: tuple = (128, 256, 512)
  cifar_fraction: float = 0.25
  style_cifar_fraction: float = 0.25
  seed: int = 0

  def to_json(self) -> dict:
    return FT.recipe_json(self)


def check_adain_recipe(r: AdaINRecipe, model) -> None:
  """Raises ValueError naming the first invalid field (`model`: the encoder)."""
  if model.name != r.encoder:
    raise ValueError(f"recipe.encoder is {r.encoder!r} but the model is "
                     f"{model.name!r}.")
  for k in ("batch", "steps", "crop"):
    if int(getattr(r, k)) < 1:
      raise ValueError(f"{k} must be >= 1; got {getattr(r, k)!r}.")
  if r.crop < model.min_size:
    raise ValueError(f"crop {r.crop} is below {model.name}'s minimum "
                     f"{model.min_size}.")
  if not r.learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0; got {r.learning_rate!r}.")
  for k in ("style_weight", "content_weight"):
    if not getattr(r, k) >= 0:
      raise ValueError(f"{k} must be >= 0; got {getattr(r, k)!r}.")
  for k in ("cifar_fraction", "style_cifar_fraction"):
    if not 0.0 <= getattr(r, k) <= 1.0:
      raise ValueError(f"{k} must be in [0, 1]; got {getattr(r, k)!r}.")
  for k in ("scales", "style_scales"):
    if not getattr(r, k) or any(v < r.crop for v in getattr(r, k)):
      raise ValueError(f"{k} must be longer sides >= crop {r.crop}; got "
                       f"{getattr(r, k)!r}.")
  if not r.style_layers:
    raise ValueError("style_layers is empty; name at least one layer.")
  for l in (r.layer,) + tuple(r.style_layers):
    model.resolve(l)  # ValueError listing the valid names


def make_adain_loss(decoder: Decoder, model, recipe: AdaINRecipe):
  """`loss(params, encoder_params, _, content, styles) -> (scalar, parts)`
  (the signature `_fast_train.make_chunk` steps): `content`, `styles`
  `[B, crop, crop, 3]` in [0, 1]; parts `{"content", "style"}`."""
  layer = model.resolve(recipe.layer)
  style_layers = tuple(model.resolve(l) for l in recipe.style_layers)
  taps = tuple(dict.fromkeys(style_layers + (layer,)))
  sizes = stage_sizes(model, layer, (recipe.crop, recipe.crop))

  def loss(params, encoder_params, _, content, styles):
    enc = lambda x: model.apply(encoder_params, x, taps=taps, logits=False)[1]
    fc = model.apply(encoder_params, content, taps=(layer,), logits=False)[1][layer]
    fs = enc(styles)
    target = [moments(fs[l]) for l in style_layers]
    t = jax.lax.stop_gradient(adain(fc, *moments(fs[layer])))
    fo = enc(decoder.apply({"params": params}, t, sizes))
    parts = {"content": jnp.mean(jnp.square(fo[layer] - t)),
             "style": sum(jnp.mean(jnp.square(a - b)) for l, tg in
                          zip(style_layers, target)
                          for a, b in zip(moments(fo[l]), tg)) / len(style_layers)}
    total = recipe.content_weight * parts["content"] + recipe.style_weight * parts["style"]
    return total, parts

  return loss


def adain_batch(content: FT.ContentPool, styles: FT.ContentPool,
                recipe: AdaINRecipe, step: int):
  """`(content [B, crop, crop, 3], styles [B, crop, crop, 3])` of step
  `step`: a function of the seed and the step only."""
  rng = np.random.default_rng((recipe.seed, step))
  c = FT.sample_batch(content, rng, recipe.batch, recipe.crop, recipe.cifar_fraction)
  s = FT.sample_batch(styles, rng, recipe.batch, recipe.crop,
                      recipe.style_cifar_fraction)
  return c, s


def train_adain(recipe: AdaINRecipe, model, content: FT.ContentPool,
                styles: FT.ContentPool, workdir: str, *,
                steps_per_run: Optional[int] = None, checkpoint_every: int = 100,
                log_every: int = 20, progress=None,
                steps_per_call: int = 10) -> dict:
  """Trains (or resumes) an AdaIN decoder for the encoder `model`.

  Raises:
    ValueError: an invalid recipe field (`check_adain_recipe`), or a
      checkpoint in `workdir` from another recipe.

  Args:
    recipe: the run (`AdaINRecipe`); `model` must be `recipe.encoder`.
    content, styles: crop pools (`content_pool`) of photographs and of style
      images (paintings).
    workdir, steps_per_run, checkpoint_every, log_every, progress,
      steps_per_call: as in `train` (the same resumable loop).

  Returns:
    `{"step", "done", "history", "seconds", "params", "net"}` (`net` an
    `AdaIN`); the decoder is at `<workdir>/adain_decoder.safetensors`.
  """
  check_adain_recipe(recipe, model)
  decoder = Decoder(decoder_plan(model, recipe.layer))
  params = _init(decoder, model, model.resolve(recipe.layer),
                 jax.random.PRNGKey(recipe.seed), (recipe.crop, recipe.crop))
  optimizer = optax.adam(recipe.learning_rate)
  chunk_fn = _cached_adain_chunk(decoder, FT._ByIdentity(model),
                                 dataclasses.replace(recipe, steps=1))

  def advance(p, o, first, active):
    c, s = FT.stacked_batches(
        lambda step: adain_batch(content, styles, recipe, step), first,
        len(active))
    return chunk_fn(p, o, model.params, (), c, s, active)

  def net(p):
    return AdaIN(model, model.resolve(recipe.layer), decoder, p, {})

  def export(p, step):
    save_adain(os.path.join(workdir, ADAIN_EXPORT), net(p),
               recipe=dict(recipe.to_json(), trained_steps=step))

  out = FT.run_training(workdir, recipe.to_json(), params, optimizer.init(params),
                        advance, export, steps_per_run=steps_per_run,
                        checkpoint_every=checkpoint_every, log_every=log_every,
                        progress=progress, steps_per_call=steps_per_call,
                        defaults=FT.recipe_defaults(type(recipe)))
  return dict(out, net=net(out["params"]))


@functools.lru_cache(maxsize=8)
def _cached_adain_chunk(decoder, model_handle, recipe):
  return FT.make_chunk(make_adain_loss(decoder, model_handle.obj, recipe),
                      optax.adam(recipe.learning_rate))
