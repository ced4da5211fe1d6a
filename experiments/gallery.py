r"""The whole lecture in one command: every technique of the library on the
shipped model and bundled images, as one HTML page.

  python -m experiments.gallery --workdir=runs/gallery

writes `runs/gallery/index.html` (one section per topic of the CS231n
"Visualizing and Understanding" lecture, in its order; each picture captioned
with its technique and paper, the measured figures beside it), the PNGs it
shows, `metrics.json` (every figure's numbers and each section's time) and
`config.json`. `--config.weights=vgg16.safetensors --config.images=DIR` runs
the same on a converted ImageNet network and your own photographs. Options:
experiments/configs/gallery.py (`:smoke` for tests).

A section is a function `(ctx, options) -> [viz.Figure]` registered with
`@section(name, title, text, requires=...)`; `SECTIONS` keeps the lecture's
order. `requires` names the library functions (`"module:attr"`) or packages
the section needs: when one is missing the section is skipped with a note in
the log and on the page, never imitated.
"""

import importlib
import os
import time
from typing import Callable, NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

import cnnviz_jax
from cnnviz_jax import data, models, viz
from cnnviz_jax import image as image_lib
from cnnviz_jax.data import samples
from cnnviz_jax.models import checkpoint, predict, winograd
from experiments import launch


class Spec(NamedTuple):
  """A registered section: `build(ctx, options) -> [viz.Figure]`."""
  name: str
  title: str
  text: str
  requires: tuple
  build: Callable


class Need(NamedTuple):
  """A requirement beyond code: `check(ctx, options) -> bool`, named by
  `description` when it fails (e.g. shipped weights that are not there)."""
  description: str
  check: Callable


# name -> Spec, in registration order, which is the lecture's order.
SECTIONS: dict[str, Spec] = {}


def section(name: str, title: str, text: str, requires=()):
  """Registers the decorated `build(ctx, options)` as section `name`.

  Args:
    name: the section's name (its config sub-dict, its anchor on the page).
    title: the heading.
    text: what the section shows, one or two sentences.
    requires: what it needs: `"module:attr"` library functions or
      `"module"` packages it calls, and `Need`s; a missing one skips the
      section with a note.
  """
  def register(build):
    if name in SECTIONS:
      raise ValueError(f"gallery section {name!r} registered twice.")
    SECTIONS[name] = Spec(name, title, text, tuple(requires), build)
    return build
  return register


def missing(requires, ctx=None, options=None) -> list[str]:
  """The entries of `requires` that are not met: `"module:attr"` or
  `"module"` strings that cannot be imported or looked up, then (when the
  code is all there) the descriptions of the failing `Need`s."""
  out = []
  for req in requires:
    if isinstance(req, Need):
      continue
    module, _, attr = req.partition(":")
    try:
      mod = importlib.import_module(module)
    except ImportError:
      out.append(req)
      continue
    if attr and not hasattr(mod, attr):
      out.append(req)
  if not out:
    out = [r.description for r in requires
           if isinstance(r, Need) and not r.check(ctx, options)]
  return out


class Context(NamedTuple):
  """What every section reads.

  images: float32 `[N, H, W, 3]` in [0, 1]; labels int `[N]` or None (then
  the label-based figures are left out); targets: the labels, else the
  model's predictions; photos: name -> float32 `[h, w, 3]` photographs;
  layer / feature_layer: canonical names (see the config).
  """
  config: object
  workdir: str
  model: models.Model
  images: np.ndarray
  labels: Optional[np.ndarray]
  targets: np.ndarray
  source: str
  photos: dict
  layer: str
  feature_layer: str

  def key(self, purpose: str) -> jax.Array:
    return launch.key(self.config.seed, purpose)

  def save(self, name: str, image) -> str:
    """Saves a float `[H, W(, 3)]` image in [0, 1] as `<workdir>/<name>.png`;
    returns the file name (relative to the page)."""
    viz.save_image(os.path.join(self.workdir, f"{name}.png"), np.asarray(image))
    return f"{name}.png"

  def save_grid(self, name: str, images, **kwargs) -> str:
    """A titled matplotlib grid (`viz.save_grid`) as `<name>.png`."""
    viz.save_grid(os.path.join(self.workdir, f"{name}.png"),
                  [np.asarray(i) for i in images], **kwargs)
    return f"{name}.png"

  def class_name(self, c) -> str:
    return self.model.class_names[int(c)]


# Display width of pixelated pictures: CIFAR's 32 pixels shown at 4x (what a
# reader can make out without a magnifier).
_SCALE = 4


def _width(picture) -> int:
  return int(np.asarray(picture).shape[1] * _SCALE)


def _timed(fn, *args, **kwargs):
  """`(fn(...) with its arrays ready, seconds)`."""
  t = time.perf_counter()
  out = jax.block_until_ready(fn(*args, **kwargs))
  return out, time.perf_counter() - t


# Layers chosen from the architecture, so that one config serves every model.

def relu_stack(model) -> list[str]:
  """The ReLUs of the conv stack, shallow to deep."""
  from cnnviz_jax import features
  return [l for l in features.spatial_layers(model) if l.startswith("relu")]


def default_layer(model) -> str:
  """The conv-stack ReLU three quarters of the way up: deep enough for
  object parts, shallow enough to stay spatial (cifar_vgg relu3_2, VGG
  relu4_2 of VGG11, relu5_1 of VGG16)."""
  stack = relu_stack(model)
  return stack[round(0.75 * (len(stack) - 1))]


def default_feature_layer(model) -> str:
  """The last fully connected ReLU (fc7's, the "CNN code" of Krizhevsky et
  al. 2012); the last ReLU when the model has none."""
  stack = set(relu_stack(model))
  relus = [l for l in model.layer_names if l.startswith("relu")]
  fc = [l for l in relus if l not in stack]
  return (fc or relus)[-1]


# The sections, in the lecture's order.

@section("overview", "The network and its images",
         "The classifier every section explains, on the images every section "
         "uses, with its predictions.")
def _overview(ctx: Context, o) -> list:
  (top, probs), seconds = _timed(predict.top_k, ctx.model, ctx.images, 1)
  n = min(o.show, len(ctx.images))
  titles = [f"{ctx.class_name(c)} {p:.2f}" for c, p in zip(top[:n, 0], probs[:n, 0])]
  metrics = {"model": ctx.model.name, "images": ctx.source,
             "number of images": len(ctx.images),
             "input size": list(ctx.images.shape[1:3]),
             "predict seconds (all images)": seconds}
  if ctx.labels is not None:
    metrics["top-1 accuracy on these images"] = float(np.mean(top[:, 0] == ctx.labels))
    titles = [f"{t}\n(true {ctx.class_name(c)})" for t, c in zip(titles, ctx.labels)]
  path = ctx.save_grid("overview", ctx.images[:n], titles=titles, ncols=min(n, 5))
  return [viz.Figure(path, "Predictions (top class and its softmax probability) "
                     "of the network (Krizhevsky et al. 2012; Simonyan & "
                     "Zisserman 2015)", metrics)]


@section("filters", "First-layer filters",
         "The weights of the first convolution, drawn as RGB pictures: "
         "oriented edges and colour blobs.",
         requires=("cnnviz_jax.features:filters", "cnnviz_jax.features:mosaic"))
def _filters(ctx: Context, o) -> list:
  from cnnviz_jax import features
  layer = features.conv_layers(ctx.model)[0]
  w = features.filters(ctx.model, layer)
  if w.ndim == 4 and w.shape[-1] == 3:
    picture = features.mosaic(w)
  else:   # [C_out, C_in, kh, kw]: one grey tile per input channel
    picture = features.mosaic(w[:, :3].reshape(-1, *w.shape[2:]), ncols=3)
  path = ctx.save("filters", picture)
  return [viz.Figure(path, f"{layer} filters, each scaled to its own range "
                     "(Krizhevsky et al. 2012, figure 3)",
                     {"layer": layer, "shape": list(w.shape)},
                     pixelated=True, width=max(_width(picture) * 2, 256))]


@section("neighbors", "Nearest neighbours in pixel and feature space",
         "For each query (first column), its nearest images by raw pixels, "
         "then by the network's feature vector: the features find the same "
         "class in other poses and colours.",
         requires=("cnnviz_jax.features:nearest_neighbors",
                   "cnnviz_jax.features:extract"))
def _neighbors(ctx: Context, o) -> list:
  from cnnviz_jax import features
  q = min(o.num_queries, len(ctx.images) // 2)
  labelled = ctx.labels is not None
  # Queries against the other images; unlabelled: against all, minus itself.
  queries, database = ctx.images[:q], (ctx.images[q:] if labelled else ctx.images)
  # At most every other image (a folder of a few photographs).
  shown_k = min(o.k, len(database) - (not labelled))
  k = shown_k + (not labelled)
  spaces, metrics = {}, {"feature layer": ctx.feature_layer, "k": shown_k,
                         "queries": q, "database": len(database)}
  (fq, fdb), seconds = _timed(lambda: (features.extract(ctx.model, queries, ctx.feature_layer),
                                       features.extract(ctx.model, database, ctx.feature_layer)))
  metrics["extract seconds"] = seconds
  for space, (a, b) in {"pixel": (queries.reshape(q, -1), database.reshape(len(database), -1)),
                        "feature": (fq, fdb)}.items():
    (_, idx), seconds = _timed(features.nearest_neighbors, a, b, k=k)
    idx = np.asarray(idx)
    if not labelled:
      idx = np.stack([row[row != i][:shown_k] for i, row in enumerate(idx)])
    spaces[space] = idx
    metrics[f"search seconds ({space})"] = seconds
    if labelled:
      metrics[f"precision@{shown_k} ({space} space)"] = features.precision_at_k(
          idx, ctx.labels[q:], ctx.labels[:q])
  rows = []
  for i in range(min(o.show, q)):
    rows += [queries[i], *database[spaces["pixel"][i]], *database[spaces["feature"][i]]]
  picture = features.mosaic(np.stack(rows), ncols=1 + 2 * shown_k)
  path = ctx.save("neighbors", picture)
  return [viz.Figure(path, f"Query | {shown_k} nearest by L2 on pixels | {shown_k} "
                     f"nearest by L2 on {ctx.feature_layer} features "
                     "(Krizhevsky et al. 2012, figure 4)", metrics,
                     pixelated=True, width=_width(picture))]


@section("tsne", "t-SNE map of the feature space",
         "Images placed by a 2-D t-SNE embedding of their feature vectors, "
         "snapped to a grid: similar images sit together.",
         requires=("cnnviz_jax.features:tsne", "cnnviz_jax.features:grid_layout"))
def _tsne(ctx: Context, o) -> list:
  from cnnviz_jax import features
  side = int(np.sqrt(min(o.num_images, len(ctx.images))))
  x = ctx.images[:side * side]
  feats, t_extract = _timed(features.extract, ctx.model, x, ctx.feature_layer)
  xy, t_tsne = _timed(features.tsne, feats, key=ctx.key("tsne"),
                      perplexity=min(o.perplexity, (len(x) - 1) / 3),
                      max_iter=o.max_iter)
  cells = features.grid_layout(xy, side, side)
  picture = features.mosaic(x[np.asarray(cells).ravel()], ncols=side, pad=0)
  metrics = {"images": len(x), "feature layer": ctx.feature_layer,
             "extract seconds": t_extract, "t-SNE seconds": t_tsne}
  if ctx.labels is not None:
    # Do the map's neighbours share a class? precision@5 in the 2-D map.
    _, idx = features.nearest_neighbors(xy, xy, k=6)
    y = ctx.labels[:len(x)]
    metrics["precision@5 in the 2-D map"] = features.precision_at_k(
        np.asarray(idx)[:, 1:], y, y)
  path = ctx.save("tsne", picture)
  return [viz.Figure(path, f"t-SNE (van der Maaten & Hinton 2008) of "
                     f"{ctx.feature_layer} features, as in Karpathy's CNN-codes "
                     "maps", metrics, pixelated=True,
                     width=max(_width(picture) // 2, 512))]


@section("activations", "Activation maps",
         "One image and the strongest channels of an intermediate layer: each "
         "map lights up where its feature is present.",
         requires=("cnnviz_jax.features:activation_maps",))
def _activations(ctx: Context, o) -> list:
  from cnnviz_jax import features
  image = ctx.images[0]
  maps = features.activation_maps(ctx.model, image, ctx.layer)
  top = min(o.top, len(maps))
  channels = features.strongest_channels(maps, top)
  tiles = np.stack([m / max(float(m.max()), 1e-8) for m in np.asarray(maps)[channels]])
  picture = features.mosaic(tiles, ncols=min(8, top))
  a = ctx.save("activations_image", image)
  b = ctx.save("activations", picture)
  means = np.asarray(maps).mean(axis=(1, 2))
  return [viz.Figure(a, "Input: the first image", {}, pixelated=True, width=_width(image)),
          viz.Figure(b, f"{ctx.layer}: the {top} channels with the largest mean, "
                     "each scaled to its maximum (Yosinski et al. 2015, deep "
                     "visualization toolbox)",
                     {"layer": ctx.layer, "channels": list(map(int, channels)),
                      "channel means": means[channels].tolist(),
                      "map shape": list(maps.shape)},
                     pixelated=True, width=max(_width(picture), 384))]


@section("max_patches", "Maximally activating patches",
         "For each channel (a row), the image patches that excite it most "
         "over all the images, cropped to the unit's receptive field.",
         requires=("cnnviz_jax.features:top_activations",
                   "cnnviz_jax.features:patches"))
def _max_patches(ctx: Context, o) -> list:
  from cnnviz_jax import features
  width = ctx.model.layer_shape(ctx.layer)[-1]
  channels = list(range(min(o.channels, width)))
  top, seconds = _timed(features.top_activations, ctx.model, ctx.images,
                        ctx.layer, channels, k=o.k)
  crops = features.patches(ctx.model, ctx.images, top)
  picture = features.mosaic(crops.reshape(-1, *crops.shape[2:]), ncols=o.k, pad=2)
  field = features.receptive_field(ctx.model, top.layer, top.image_hw)
  path = ctx.save("max_patches", picture)
  return [viz.Figure(path, f"Top {o.k} patches of {ctx.layer} channels "
                     f"{channels[0]}..{channels[-1]} (Girshick et al. 2014; "
                     "Zeiler & Fergus 2014)",
                     {"receptive field": field._asdict(), "images searched":
                      len(ctx.images), "search seconds": seconds,
                      "top activations (row 1)": top.values[0].tolist()},
                     pixelated=True, width=max(_width(picture), 384))]


@section("occlusion", "Occlusion",
         "Slide a grey square over the image and record how much the "
         "probability of the class drops: the hot regions are what the "
         "network needs to see.",
         requires=("cnnviz_jax.attribution:occlusion",))
def _occlusion(ctx: Context, o) -> list:
  from cnnviz_jax import attribution as A
  n = min(ctx.config.show, len(ctx.images))
  x, t = jnp.asarray(ctx.images[:n]), ctx.targets[:n]
  # f(x) - f(occluded) on probabilities: positive where occluding hurts.
  maps, seconds = _timed(A.occlusion, ctx.model, x, t, window=o.window,
                         stride=o.stride, fill="mean")
  p = predict.class_probabilities(ctx.model, x, t)
  path = ctx.save_grid("occlusion", list(ctx.images[:n]) + list(
      viz.overlay(x, maps, alpha=0.6)), ncols=n,
      titles=[f"{ctx.class_name(c)} {q:.2f}" for c, q in zip(t, np.asarray(p))]
      + [f"max drop {float(m.max()):.2f}" for m in np.asarray(maps)])
  return [viz.Figure(path, f"Occlusion maps, {o.window}-pixel grey (image mean) "
                     f"square every {o.stride} pixels (Zeiler & Fergus 2014, "
                     "section 4.2)",
                     {"p(target class)": np.asarray(p).tolist(),
                      "largest probability drop": np.asarray(maps).max(axis=(1, 2)).tolist(),
                      "seconds": seconds})]


# The saliency section's methods and their papers, for the caption.
_PAPERS = {
    "saliency": "Simonyan et al. 2014", "deconvnet": "Zeiler & Fergus 2014",
    "guided_backprop": "Springenberg et al. 2015",
    "smoothgrad": "Smilkov et al. 2017",
    "integrated_gradients": "Sundararajan et al. 2017",
    "grad_cam": "Selvaraju et al. 2017", "guided_grad_cam": "Selvaraju et al. 2017",
    "occlusion": "Zeiler & Fergus 2014",
}


@section("saliency", "Saliency maps and their relatives",
         "The gradient of the class score with respect to the pixels, and "
         "the methods that refine it; deletion / insertion AUC measure how "
         "faithful each map is (lower deletion, higher insertion is better).",
         requires=("cnnviz_jax.attribution:explain",
                   "cnnviz_jax.attribution:faithfulness"))
def _saliency(ctx: Context, o) -> list:
  from cnnviz_jax import attribution as A
  methods = (launch.split_list(o.methods, "saliency.methods") if o.methods
             else [m for m in A.METHODS if m != "occlusion"])
  unknown = sorted(set(methods) - set(A.METHODS))
  if unknown:
    raise ValueError(f"unknown config.saliency.methods {unknown}; valid: "
                     f"{', '.join(A.METHODS)}.")
  n = min(ctx.config.show, len(ctx.images))
  x, t = jnp.asarray(ctx.images[:n]), ctx.targets[:n]
  extra = {"smoothgrad": dict(samples=o.samples),
           "integrated_gradients": dict(steps=o.ig_steps)}
  maps, seconds = {}, {}
  for m in methods:
    maps[m], seconds[m] = _timed(A.explain, ctx.model, x, t, m,
                                 key=ctx.key(f"explain/{m}"), **extra.get(m, {}))
  scores = A.faithfulness(ctx.model, x, t, maps, key=ctx.key("random_map"),
                          steps=o.metric_steps)
  viz.save_attribution_grid(os.path.join(ctx.workdir, "saliency.png"), x, maps,
                            row_titles=[ctx.class_name(c) for c in t])
  papers = "; ".join(f"{m} ({_PAPERS.get(m, '')})" for m in methods)
  return [viz.Figure("saliency.png", f"Columns: image, then {papers}",
                     {"deletion AUC": scores["deletion_auc"],
                      "insertion AUC": scores["insertion_auc"],
                      "seconds": seconds,
                      **({"smoothgrad samples": o.samples}
                         if "smoothgrad" in methods else {}),
                      **({"IG steps": o.ig_steps}
                         if "integrated_gradients" in methods else {})})]


@section("grabcut", "Segmentation from saliency (GrabCut)",
         "Seed GrabCut with the most and least salient pixels: the saliency "
         "of a classifier yields an object mask without any mask labels.",
         requires=("cv2", "cnnviz_jax.attribution:segment_from_saliency",
                   "cnnviz_jax.attribution:saliency"))
def _grabcut(ctx: Context, o) -> list:
  from cnnviz_jax import attribution as A
  n = min(ctx.config.show, len(ctx.images))
  x = jnp.asarray(ctx.images[:n])
  sal = np.asarray(viz.heatmap(A.saliency(ctx.model, x, ctx.targets[:n])))
  masks, seconds = _timed(lambda: np.stack([
      A.segment_from_saliency(ctx.images[i], sal[i], iterations=o.iterations)
      for i in range(n)]))
  cut = ctx.images[:n] * masks[..., None] + 0.5 * ~masks[..., None]
  path = ctx.save_grid("grabcut", list(ctx.images[:n]) + list(
      np.asarray(viz.normalize(jnp.asarray(sal)))) + list(cut), ncols=n, cmap="gray")
  return [viz.Figure(path, "Rows: image, saliency, GrabCut foreground seeded "
                     "above the 95% and below the 30% saliency quantiles "
                     "(Simonyan et al. 2014, section 3.2; Rother et al. 2004)",
                     {"foreground fraction": masks.mean(axis=(1, 2)).tolist(),
                      "GrabCut seconds": seconds})]


@section("inner_units", "Guided backprop of inner units",
         "For the patch that excites a channel most, guided backpropagation "
         "of that one unit shows which pixels of the patch it responds to.",
         requires=("cnnviz_jax.attribution:guided_backprop",
                   "cnnviz_jax.features:top_activations"))
def _inner_units(ctx: Context, o) -> list:
  from cnnviz_jax import attribution as A
  from cnnviz_jax import features
  width = ctx.model.layer_shape(ctx.layer)[-1]
  channels = list(range(min(o.channels, width)))
  top = features.top_activations(ctx.model, ctx.images, ctx.layer, channels, k=1)
  crops = features.patches(ctx.model, ctx.images, top)[:, 0]
  t = time.perf_counter()
  grads = []
  for row, c in enumerate(channels):
    i, y, x = (int(top.image_index[row, 0]), int(top.y[row, 0]), int(top.x[row, 0]))
    g = A.guided_backprop(ctx.model, jnp.asarray(ctx.images[i:i + 1]),
                          (ctx.layer, c, y, x))
    grads.append(np.asarray(g[0]))
  seconds = time.perf_counter() - t
  # Gradients shown signed around grey, scaled to their largest magnitude.
  shown = [0.5 + 0.5 * g / max(float(np.abs(g).max()), 1e-12) for g in grads]
  full = [ctx.images[int(top.image_index[r, 0])] for r in range(len(channels))]
  path = ctx.save_grid("inner_units", full + list(shown) + list(crops),
                       ncols=len(channels),
                       titles=[f"{ctx.layer}:{c}" for c in channels]
                       + ["guided backprop"] * len(channels)
                       + ["top patch"] * len(channels))
  return [viz.Figure(path, f"Rows: the image holding each {ctx.layer} "
                     "channel's strongest unit, guided backprop of that unit "
                     "(Springenberg et al. 2015), its receptive-field patch",
                     {"unit activations": top.values[:, 0].tolist(),
                      "seconds": seconds})]


_RECIPE_PAPERS = {
    "simonyan": "Simonyan et al. 2014: L2-regularized gradient ascent",
    "yosinski": "Yosinski et al. 2015: L2, jitter, blur, clipping",
    "fft": "Olah et al. 2017: decorrelated Fourier parameterization",
    "mahendran": "Mahendran & Vedaldi 2016: total-variation prior",
}


@section("class_viz", "Class visualization",
         "Images optimized from noise to maximize one class score, with each "
         "regularization recipe; the caption gives the probability the "
         "network assigns each image to its class.",
         requires=("cnnviz_jax.synthesis:visualize_class",))
def _class_viz(ctx: Context, o) -> list:
  from cnnviz_jax import synthesis
  classes = list(range(min(o.classes, ctx.model.num_classes)))
  figures = []
  # A recipe with a section of its own (the generator prior) is shown there.
  for name in [r for r in synthesis.RECIPES if r not in SECTIONS]:
    images, seconds = _timed(synthesis.visualize_class, ctx.model, classes,
                             key=ctx.key("class_viz"), steps=o.steps,
                             recipe_name=name)
    probs = np.asarray(predict.class_probabilities(ctx.model, images, classes))
    path = ctx.save_grid(f"class_viz_{name}", images, ncols=min(len(classes), 10),
                         titles=[f"{ctx.class_name(c)} {p:.2f}"
                                 for c, p in zip(classes, probs)])
    figures.append(viz.Figure(
        path, f"Recipe {name!r} ({_RECIPE_PAPERS.get(name, 'synthesis.RECIPES')})",
        {"class probabilities": probs.tolist(), "mean": float(probs.mean()),
         "steps": o.steps, "seconds": seconds}))
  return figures


@section("multifaceted", "Multifaceted visualization",
         "A class's images clustered in feature space; one visualization per "
         "cluster, started from the cluster's mean image, shows the class's "
         "different faces.",
         requires=("cnnviz_jax.synthesis:multifaceted",
                   "cnnviz_jax.synthesis:facet_separation"))
def _multifaceted(ctx: Context, o) -> list:
  from cnnviz_jax import synthesis
  target = o.target if o.target < ctx.model.num_classes else int(
      np.bincount(ctx.targets).argmax())
  x = ctx.images[ctx.targets == target]
  if len(x) < o.k:   # too few images of the class: the most common one
    target = int(np.bincount(ctx.targets).argmax())
    x = ctx.images[ctx.targets == target]
  k = min(o.k, len(x))
  res, seconds = _timed(
      synthesis.multifaceted, ctx.model, jnp.asarray(x), target, k=k,
      key=ctx.key("multifaceted"), steps=o.steps, layer=ctx.feature_layer,
      diversity_layer=ctx.layer)
  facets, means = res.images, res.means
  probs = np.asarray(predict.class_probabilities(ctx.model, facets, [target] * k))
  counts = np.bincount(np.asarray(res.assignment), minlength=k)
  metrics = {"cluster sizes": counts.tolist(),
             "facet class probability": probs.tolist()}
  if k >= 2:
    sep = synthesis.facet_separation(ctx.model, facets, jnp.asarray(x),
                                     res.assignment, layer=ctx.feature_layer)
    metrics["facets nearest their own cluster"] = sep["own_centre_share"]
    metrics["facet spread / class spread"] = sep["spread_ratio"]
  metrics.update(steps=o.steps, seconds=seconds)
  path = ctx.save_grid("multifaceted", list(means) + list(facets), ncols=k,
                       titles=[f"mean of {c}" for c in counts]
                       + [f"facet p={p:.2f}" for p in probs])
  return [viz.Figure(path, f"{ctx.class_name(target)}: cluster means (top) and "
                     f"facets (bottom), k-means in {ctx.feature_layer} space "
                     "(Nguyen et al. 2016)", metrics)]


def _shipped_generator(ctx, o) -> bool:
  from cnnviz_jax import synthesis
  return ctx.model.name == "cifar_vgg" and os.path.isfile(synthesis.SHIPPED_GENERATOR)


@section("generator", "Class visualization with a generator prior",
         "Optimize the code of a generator network trained to invert the "
         "classifier's features, instead of the pixels: the images stay "
         "close to what the generator learnt from real photographs.",
         requires=("cnnviz_jax.synthesis:load_generator",
                   "cnnviz_jax.synthesis:visualize_class",
                   Need("the shipped generator (it inverts cifar_vgg, the "
                        "model of this run must be cifar_vgg)", _shipped_generator)))
def _generator(ctx: Context, o) -> list:
  from cnnviz_jax import synthesis
  classes = list(range(min(o.classes, ctx.model.num_classes)))
  images, seconds = _timed(synthesis.visualize_class, ctx.model, classes,
                           key=ctx.key("generator"), steps=o.steps,
                           recipe_name="generator")
  probs = np.asarray(predict.class_probabilities(ctx.model, images, classes))
  path = ctx.save_grid("generator", images, ncols=min(len(classes), 10),
                       titles=[f"{ctx.class_name(c)} {p:.2f}"
                               for c, p in zip(classes, probs)])
  return [viz.Figure(path, "Class visualization through a generator prior "
                     "(Nguyen et al. 2016, deep generator networks; generator "
                     "trained as Dosovitskiy & Brox 2016)",
                     {"class probabilities": probs.tolist(),
                      "mean": float(probs.mean()), "steps": o.steps,
                      "seconds": seconds})]


@section("fooling", "Adversarial and fooling images",
         "An invisible change flips the decision: PGD within an L-inf ball, "
         "and fooling images pushed to the runner-up class.",
         requires=("cnnviz_jax.adversarial:pgd", "cnnviz_jax.adversarial:fool",
                   "cnnviz_jax.adversarial:evaluate"))
def _fooling(ctx: Context, o) -> list:
  from cnnviz_jax import adversarial
  x, y = predict.correctly_classified(ctx.model, ctx.images, ctx.targets, o.n)
  attacked = "correctly classified images"
  if len(x) == 0:
    # A model right on none of the images (a random initialization): attack
    # its own decisions, and say so beside the figures.
    x, y = ctx.images[:o.n], ctx.targets[:o.n]
    attacked = "images (none classified correctly: their predictions attacked)"
  x = jnp.asarray(x)
  adv, t_pgd = _timed(adversarial.pgd, ctx.model, x, y, eps=o.eps, steps=o.steps,
                      step_size=o.step_size, key=ctx.key("pgd"))
  attack = adversarial.evaluate(ctx.model, x, adv, y)
  fx, fy = x[:o.fool_n], y[:o.fool_n]
  ft = predict.runner_up(ctx.model, fx)
  fooled, t_fool = _timed(adversarial.fool, ctx.model, fx, ft, eps=o.fool_eps,
                          steps=o.fool_steps)
  fooling = adversarial.evaluate(ctx.model, fx, fooled, fy, ft)
  show = min(ctx.config.show, len(fx))
  probs = np.asarray(predict.class_probabilities(ctx.model, fooled[:show], ft[:show]))
  diff = 0.5 + (fooled[:show] - fx[:show]) / (2 * o.fool_eps)
  path = ctx.save_grid(
      "fooling", list(fx[:show]) + list(diff) + list(fooled[:show]), ncols=show,
      titles=[ctx.class_name(c) for c in fy[:show]]
      + [f"change x{0.5 / o.fool_eps:.0f}"] * show
      + [f"{ctx.class_name(c)} {p:.2f}" for c, p in zip(ft[:show], probs)])
  shown_adv = adv[:show]
  adv_top, adv_p = predict.top_k(ctx.model, shown_adv, 1)
  pgd_path = ctx.save_grid(
      "pgd", list(0.5 + (shown_adv - x[:show]) / (2 * o.eps)) + list(shown_adv),
      ncols=show, titles=[f"change x{0.5 / o.eps:.0f}"] * show
      + [f"{ctx.class_name(c)} {p:.2f}" for c, p in zip(adv_top[:, 0], adv_p[:, 0])])
  return [viz.Figure(path, f"Rows: image, change (amplified), fooling image "
                     f"classified as its runner-up class; L-inf "
                     f"{o.fool_eps * 255:.0f}/255, {o.fool_steps} steps "
                     "(Szegedy et al. 2014; Nguyen et al. 2015)",
                     {"fooled to target (p >= 0.9)": fooling["confident_success_rate"],
                      "target probability (mean)": fooling["target_prob_mean"],
                      "PSNR dB": fooling["mean_psnr"], "images": len(fy),
                      "seconds": t_fool}),
          viz.Figure(pgd_path, f"PGD (Madry et al. 2018; FGSM steps of Goodfellow et "
                     f"al. 2015), L-inf {o.eps * 255:.0f}/255, {o.steps} steps "
                     f"of {o.step_size * 255:.0f}/255, on {len(x)} {attacked}; rows: "
                     "change (amplified), adversarial image and its class",
                     {"attack success rate": attack["success_rate"],
                      "accuracy under attack": attack["adv_accuracy"],
                      "PSNR dB": attack["mean_psnr"], "seconds": t_pgd})]


@section("deepdream", "DeepDream",
         "Gradient ascent on the norm of a layer's activations, over octaves "
         "of scale: the photograph grows the patterns the layer detects.",
         requires=("cnnviz_jax.synthesis:deepdream",))
def _deepdream(ctx: Context, o) -> list:
  from cnnviz_jax import synthesis
  name, photo = next(iter(ctx.photos.items()))
  photo = _fit(photo, o.max_side, ctx.model.min_size)
  out, seconds = _timed(synthesis.deepdream, ctx.model, jnp.asarray(photo),
                        ctx.layer, key=ctx.key("deepdream"), octaves=o.octaves,
                        steps=o.steps, learning_rate=o.learning_rate)
  before, after = np.asarray(predict.activation_norm(
      ctx.model, jnp.stack([jnp.asarray(photo), out]), ctx.layer)).tolist()
  a, b = ctx.save("deepdream_input", photo), ctx.save("deepdream", out)
  return [viz.Figure(a, f"Input: {name}", {"shape": list(photo.shape)},
                     width=2 * photo.shape[1]),
          viz.Figure(b, f"DeepDream on {ctx.layer}, {o.octaves} octaves of "
                     f"{o.steps} steps (Mordvintsev et al. 2015)",
                     {f"{ctx.layer} norm before": before,
                      f"{ctx.layer} norm after": after, "seconds": seconds},
                     width=2 * out.shape[1])]


def _fit(photo: np.ndarray, max_side: int, min_side: int) -> np.ndarray:
  """`photo` resized (linear) so that its longer side is at most `max_side`
  and its shorter side at least `min_side` (the model's smallest input);
  the minimum wins when both cannot hold."""
  h, w = photo.shape[:2]
  s = max(min(1.0, max_side / max(h, w)), min_side / min(h, w))
  if s == 1.0:
    return photo
  size = (max(min_side, round(h * s)), max(min_side, round(w * s)))
  out = image_lib.resize(jnp.asarray(photo)[None], size, "linear")[0]
  return np.clip(np.asarray(out), 0.0, 1.0)


def inversion_layers(model) -> list[str]:
  """Up to four conv-stack ReLUs evenly spaced from the first to the last,
  then the feature layer: the ladder of Mahendran & Vedaldi's figure 6."""
  stack = relu_stack(model)
  picks = sorted({round(i * (len(stack) - 1) / 3) for i in range(4)})
  return [stack[i] for i in picks] + [default_feature_layer(model)]


@section("inversion", "Feature inversion by layer",
         "An image optimized so that its features at one layer match the "
         "original's: shallow layers keep the pixels, deep ones only what "
         "the network needs.",
         requires=("cnnviz_jax.synthesis:invert",
                   "cnnviz_jax.synthesis:reconstruction_error"))
def _inversion(ctx: Context, o) -> list:
  from cnnviz_jax import synthesis
  layers = (launch.check_layers(ctx.model, launch.split_list(o.layers, "inversion.layers"),
                                "inversion.layers")
            if o.layers else inversion_layers(ctx.model))
  x = jnp.asarray(ctx.images[:1])
  recons, errors, seconds = [], {}, {}
  for layer in layers:
    # The same key for every layer: each starts from the same noise, so the
    # ladder differs by the layer alone.
    r, seconds[layer] = _timed(synthesis.invert, ctx.model, x, layer,
                               key=ctx.key("inversion"), steps=o.steps, tv=o.tv,
                               tv_beta=o.tv_beta, learning_rate=o.learning_rate)
    recons.append(r[0])
    errors[layer] = float(synthesis.reconstruction_error(x, r)[0])
  path = ctx.save_grid("inversion", [x[0]] + recons,
                       titles=["original"] + [f"{l}\nerr {errors[l]:.2f}" for l in layers])
  return [viz.Figure(path, f"Reconstructions from each layer, {o.steps} steps, "
                     f"TV^{o.tv_beta:g} prior {o.tv:g} (Mahendran & Vedaldi "
                     "2015)", {"relative pixel error": errors, "seconds": seconds})]


def _texture_example(ctx: Context, side: int) -> np.ndarray:
  """A square texture example: the centre of the flower photograph (petals)
  or of the first photograph, resized to `side`."""
  photo = ctx.photos.get("flower", next(iter(ctx.photos.values())))
  h, w = photo.shape[:2]
  s = min(h, w) // 2
  crop = photo[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
  out = image_lib.resize(jnp.asarray(crop)[None], (side, side), "linear")[0]
  return np.clip(np.asarray(out), 0.0, 1.0)


@section("texture_classical", "Texture synthesis: classical",
         "Non-parametric sampling: each new pixel copies one whose "
         "neighbourhood in the example matches, pixel by pixel.",
         requires=("cnnviz_jax.style:texture_nonparametric",))
def _texture_classical(ctx: Context, o) -> list:
  from cnnviz_jax import style
  example = _texture_example(ctx, o.example_max_side)
  out, seconds = _timed(style.texture_nonparametric, example, (o.size, o.size),
                        key=ctx.key("texture_classical"), window=o.window)
  a, b = ctx.save("texture_example", example), ctx.save("texture_classical", out)
  return [viz.Figure(a, "Input: the example (centre of a photograph)",
                     {"shape": list(example.shape)}, pixelated=True,
                     width=3 * example.shape[1]),
          viz.Figure(b, f"Efros & Leung 1999, window {o.window}",
                     {"seconds": seconds, "pixels per second": o.size ** 2 / seconds},
                     pixelated=True, width=3 * o.size)]


@section("texture_neural", "Texture synthesis: neural (Gram matrices)",
         "Match the Gram matrices of the example's features at several "
         "layers: the statistics of the texture without its layout.",
         requires=("cnnviz_jax.style:texture", "cnnviz_jax.style:losses"))
def _texture_neural(ctx: Context, o) -> list:
  from cnnviz_jax import style
  example = _texture_example(ctx, o.example_max_side)
  (out, res, problem), seconds = _timed(
      style.texture, ctx.model, example, (o.size, o.size),
      key=ctx.key("texture_neural"), steps=o.steps, return_result=True)
  start = float(style.losses(ctx.model, problem, problem.init)["style"][0])
  end = float(style.losses(ctx.model, problem, out)["style"][0])
  b = ctx.save("texture_neural", out[0])
  return [viz.Figure(b, f"Gatys et al. 2015, {o.steps} steps, from "
                     f"{ctx.model.name}'s features", {
                         "style loss start": start, "style loss end": end,
                         "seconds": seconds}, pixelated=True, width=3 * o.size)]


@section("style_transfer", "Style transfer",
         "Keep the content's features at one layer and the style's Gram "
         "matrices at several: the photograph repainted.",
         requires=("cnnviz_jax.style:transfer", "cnnviz_jax.style:losses"))
def _style_transfer(ctx: Context, o) -> list:
  from cnnviz_jax import style
  names = list(ctx.photos)
  content = _fit(ctx.photos[names[0]], o.max_side, ctx.model.min_size)
  style_name = "flower" if "flower" in ctx.photos and names[0] != "flower" else names[-1]
  painting = _fit(ctx.photos[style_name], 2 * o.max_side, ctx.model.min_size)
  (out, res, problem), seconds = _timed(
      style.transfer, ctx.model, jnp.asarray(content), [jnp.asarray(painting)],
      key=ctx.key("style_transfer"), steps=o.steps, return_result=True)
  start = {k: float(v[0]) for k, v in style.losses(ctx.model, problem, problem.init).items()}
  end = {k: float(v[0]) for k, v in style.losses(ctx.model, problem, res.images).items()}
  path = ctx.save_grid("style_transfer", [content, painting, out[0]], size=3.0,
                       titles=["content", "style", "output"])
  return [viz.Figure(path, f"Gatys et al. 2016: content {names[0]}, style "
                     f"{style_name}, {o.steps} Adam steps",
                     {"losses at start": start, "losses at end": end,
                      "seconds": seconds})]


def _weights_file(module: str) -> Callable:
  """A `Need` check: the section's `weights` file, else `module`'s shipped
  `SHIPPED` file, exists (imported late, as every section's library)."""
  def check(ctx, o) -> bool:
    return os.path.isfile(o.weights or importlib.import_module(module).SHIPPED)
  return check


@section("fast_style", "Fast style transfer",
         "A feed-forward network trained to stylize in one pass, one network "
         "for several paintings; blending their normalization parameters "
         "mixes the styles.",
         requires=("cnnviz_jax.style:load_stylizer", "cnnviz_jax.style:stylize",
                   "cnnviz_jax.style:stylizer_info",
                   Need("stylizer weights (shipped, or config.fast_style.weights)",
                        _weights_file("cnnviz_jax.style._stylizer"))))
def _fast_style(ctx: Context, o) -> list:
  from cnnviz_jax import style
  stylizer, params = style.load_stylizer(o.weights)
  names = style.stylizer_info(o.weights)["style_names"]
  photo_name = next(iter(ctx.photos))
  content = jnp.asarray(_fit(ctx.photos[photo_name], o.max_side, 2))
  n = stylizer.num_styles
  # One image per style, then an equal blend of the first and the last.
  weights = np.concatenate([np.eye(n), 0.5 * (np.eye(n)[:1] + np.eye(n)[-1:])])
  batch = jnp.broadcast_to(content, (len(weights), *content.shape))
  weights = jnp.asarray(weights, jnp.float32)
  # The second call is timed: the first one compiles.
  jax.block_until_ready(style.stylize(stylizer, params, batch, style=weights))
  out, seconds = _timed(style.stylize, stylizer, params, batch, style=weights)
  titles = ["content"] + list(names) + [f"blend {names[0]} + {names[-1]}"]
  path = ctx.save_grid("fast_style", [content] + list(out), titles=titles,
                       size=2.5, ncols=min(len(titles), 6))
  return [viz.Figure(path, f"Feed-forward stylization of {photo_name} "
                     "(Johnson et al. 2016) with conditional instance norm, "
                     "styles blended (Dumoulin et al. 2017)",
                     {"styles": list(names), "images per second":
                      len(weights) / seconds, "image shape": list(content.shape)})]


@section("adain", "Arbitrary style (AdaIN)",
         "One trained decoder for every style: the content's features take "
         "the style image's channel means and deviations, and the decoder "
         "paints them; a new style needs no training.",
         requires=("cnnviz_jax.style:load_adain", "cnnviz_jax.style:adain_stylize",
                   Need("AdaIN decoder weights (shipped, or config.adain.weights)",
                        _weights_file("cnnviz_jax.style._adain"))))
def _adain(ctx: Context, o) -> list:
  from cnnviz_jax import style
  net = style.load_adain(o.weights)
  names = list(ctx.photos)
  content = jnp.asarray(_fit(ctx.photos[names[0]], o.max_side, net.model.min_size))
  styles = {n: _fit(ctx.photos[n], o.max_side, net.model.min_size)
            for n in names[1:3]} or {names[0]: np.asarray(content)}
  first = next(iter(styles))
  runs = [(f"{n}, alpha 1", dict(styles=[s])) for n, s in styles.items()]
  runs.append((f"{first}, alpha 0.5", dict(styles=[styles[first]], alpha=0.5)))
  if len(styles) > 1:
    runs.append(("blend 50/50", dict(styles=list(styles.values()),
                                     weights=[0.5, 0.5])))
  # The second call is timed: the first one compiles.
  style.adain_stylize(net, content, **runs[0][1])
  outs, seconds = [], 0.0
  for _, kw in runs:
    out, t = _timed(style.adain_stylize, net, content, **kw)
    outs.append(out)
    seconds += t
  titles = ["content"] + [f"style: {n}" for n in styles] + [t for t, _ in runs]
  path = ctx.save_grid("adain", [content] + list(styles.values()) + outs,
                       titles=titles, size=2.5, ncols=min(len(titles), 6))
  return [viz.Figure(path, f"AdaIN (Huang & Belongie 2017) on {names[0]}: "
                     f"{net.model.name} features at {net.layer}, styles the "
                     "decoder never trained on",
                     {"styles": list(styles), "seconds per image":
                      seconds / len(runs), "image shape": list(content.shape)})]


def resolve_model_name(config) -> str:
  """`config.model`, else the `arch` in `config.weights`' metadata, else
  "cifar_vgg"."""
  if config.model:
    return config.model
  if config.weights:
    launch.check_files([config.weights], "weights")
    arch = checkpoint.read_metadata(config.weights).get("arch")
    if not arch:
      raise ValueError(f"config.weights {config.weights!r} records no arch in "
                       "its metadata: set config.model (one of "
                       f"{', '.join(models.names())}).")
    return arch
  return "cifar_vgg"


def load_inputs(config, model) -> tuple:
  """`(images, labels or None, source, photos)` for `config` (see the config
  file)."""
  spec = config.images or data.SAMPLE_CIFAR
  if config.images:
    launch.check_files([config.images], "images")
  size = (config.size, config.size) if config.size else model.input_size
  images, labels, source = samples.load_images(spec, size, config.num_images,
                                               config.seed)
  if labels is not None and model.num_classes != len(data.CIFAR10_CLASSES):
    labels = None   # CIFAR-10 labels mean nothing to an ImageNet network
  photos = {}
  folder = config.photos or (config.images if config.images and
                             os.path.isdir(config.images) else None)
  if folder:
    for f in data.image_files(folder)[:3]:
      photos[os.path.splitext(os.path.basename(f))[0]] = data.load_image(f)
  if not photos:
    photos = samples.bundled_photos()
  if not photos:
    photos = {"pattern": samples.synthetic_pattern(128)}
  return images.astype(np.float32), labels, source, photos


def selected(config) -> list[str]:
  """The section names `config.sections` picks, in the lecture's order."""
  if not config.sections:
    return list(SECTIONS)
  names = launch.split_list(config.sections, "sections")
  unknown = [n for n in names if n not in SECTIONS]
  if unknown:
    raise ValueError(f"unknown config.sections {unknown}; valid: "
                     f"{', '.join(SECTIONS)}.")
  return [n for n in SECTIONS if n in names]


def run(config, workdir: str) -> dict:
  """`_run` with Winograd convolutions as `config.winograd` says (off by
  default: see the config)."""
  with winograd.use(config.winograd):
    return _run(config, workdir)


def _run(config, workdir: str) -> dict:
  """Runs every selected section and writes `index.html`, its pictures,
  `metrics.json` and `config.json` into `workdir`.

  Returns:
    `{"index": the page's path, "model", "images", "seconds",
    "section_seconds": {name: seconds or None}, "skipped": {name: why}}`;
    `metrics.json` holds the same with every figure's caption and numbers
    (`"sections": [{"name", "title", "seconds", "note", "figures": [{"path",
    "caption", "metrics"}]}]`).
  """
  names = selected(config)
  launch.check_at_least(config, num_images=2, show=1)
  model_name = resolve_model_name(config)
  arch = models.build(model_name, None)
  if config.layer is not None:
    launch.check_layers(arch, [config.layer], "layer")
  if config.feature_layer is not None:
    launch.check_layers(arch, [config.feature_layer], "feature_layer")
  launch.prepare_workdir(workdir)
  start = time.perf_counter()
  if config.weights is not None:
    launch.check_files([config.weights], "weights")
  model = models.load_or_init(model_name, config.weights,
                              key=launch.key(config.seed, "init"))
  images, labels, source, photos = load_inputs(config, model)
  preds = np.asarray(predict.top_k(model, jnp.asarray(images), 1)[0][:, 0])
  ctx = Context(config=config, workdir=workdir, model=model, images=images,
                labels=labels, targets=labels if labels is not None else preds,
                source=source, photos=photos,
                layer=(model.resolve(config.layer) if config.layer
                       else default_layer(model)),
                feature_layer=(model.resolve(config.feature_layer)
                               if config.feature_layer
                               else default_feature_layer(model)))
  logging.info("gallery: %s on %d images from %s; %d sections", model.name,
               len(images), source, len(names))
  sections, skipped = [], {}
  for i, name in enumerate(names):
    spec = SECTIONS[name]
    options = config[name] if name in config else None
    absent = missing(spec.requires, ctx, options)
    if absent:
      skipped[name] = f"needs {', '.join(absent)}, which is not available"
      logging.warning("gallery [%d/%d] %s: skipped (%s)", i + 1, len(names),
                      name, skipped[name])
      print(f"[{i + 1}/{len(names)}] {name}: skipped ({skipped[name]})", flush=True)
      sections.append(viz.Section(name, spec.title, spec.text,
                                  note=f"Skipped: {skipped[name]}."))
      continue
    t = time.perf_counter()
    figures = spec.build(ctx, options)
    seconds = time.perf_counter() - t
    cnnviz_jax.release_compiled()   # XLA:CPU's code areas (see its docstring)
    sections.append(viz.Section(name, spec.title, spec.text, figures, seconds))
    print(f"[{i + 1}/{len(names)}] {name}: {seconds:.1f} s "
          f"(total {time.perf_counter() - start:.0f} s)", flush=True)
  total = time.perf_counter() - start
  weights = config.weights or ("shipped" if model_name in models.SHIPPED_WEIGHTS
                                else "random initialization")
  summary = {"model": model.name, "weights": weights,
             "images": f"{len(images)} from {source}",
             "sections": f"{len(names) - len(skipped)} run, {len(skipped)} skipped",
             "total seconds": total}
  metrics = {"model": model.name, "images": source, "seconds": total,
             "sections": viz.sections_json(sections), "skipped": skipped}
  launch.write_results(workdir, metrics, config)
  viz.save_html_gallery(
      os.path.join(workdir, "index.html"), sections,
      title="Visualizing and understanding CNNs: the gallery",
      intro=("Every technique of cnnviz_jax, in the order of the CS231n "
             "lecture \"Visualizing and Understanding\", run by "
             "`python -m experiments.gallery`. A section whose code or "
             "weights are missing here says so instead of showing a picture."),
      summary=summary,
      links=[("metrics.json (every number on this page)", "metrics.json"),
             ("config.json (the options of this run)", "config.json")])
  print(f"gallery: {total:.0f} s; open {os.path.join(workdir, 'index.html')}",
        flush=True)
  return {"index": os.path.join(workdir, "index.html"), "model": model.name,
          "images": source, "seconds": total,
          "section_seconds": {s.name: s.seconds for s in sections},
          "skipped": skipped}


if __name__ == "__main__":
  launch.main("gallery", run)
