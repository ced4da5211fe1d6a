"""Attribution: which pixels made the network decide?

Gradient saliency (Simonyan et al. 2014), deconvnet (Zeiler & Fergus 2014),
guided backprop (Springenberg et al. 2015), SmoothGrad (Smilkov et al. 2017),
integrated gradients (Sundararajan et al. 2017), Grad-CAM and guided Grad-CAM
(Selvaraju et al. 2017) and occlusion maps (Zeiler & Fergus 2014), as pure
functions of `(model, images, targets, *, key=..., ...)`; faithfulness curves
(Petsiuk et al. 2018), sanity checks (Adebayo et al. 2018) and GrabCut
segmentation. Higher attribution means more important for every method.

    model = models.load("cifar_vgg")
    grads = attribution.saliency(model, images, labels)           # [N, H, W, 3]
    ig, residual, delta = attribution.integrated_gradients(model, images, labels)
    cam = attribution.grad_cam(model, images, labels, layer="relu4_1")
    maps = viz.heatmap(grads)                                     # [N, H, W]

What is explained is an `objectives.Objective`; `targets` is one or a
shorthand: int `[N]` classes (`class_logit`), `(layer, channel)`
(`objectives.channel`: the channel's spatial mean) or `(layer, channel, y, x)`
(`objectives.neuron`: one unit). `target_objective` shows the expansion.
"""

from cnnviz_jax.attribution._cam import (
    default_cam_layer, grad_cam, guided_grad_cam)
from cnnviz_jax.image import gaussian_blur, resize as upsample
from cnnviz_jax.attribution._common import (
    FILLS, RULES, Targets, deconv_relu, fill_images, guided_relu,
    target_objective, target_scores)
from cnnviz_jax.attribution._faithfulness import (
    Curve, deletion, faithfulness, insertion, random_heatmaps)
from cnnviz_jax.attribution._gradients import (
    IG_METHODS, SMOOTHGRAD_VARIANTS, IGResult, deconvnet, gradient,
    guided_backprop, ig_steps, integrated_gradients, saliency, smoothgrad)
from cnnviz_jax.attribution._methods import METHODS, RANDOM_METHODS, explain
from cnnviz_jax.attribution._occlusion import occlusion
from cnnviz_jax.attribution._sanity import (
    RandomizationResult, randomization_check, rank_correlation)
from cnnviz_jax.attribution._segment import segment_from_saliency
from cnnviz_jax.viz._heatmaps import heatmap, normalize, overlay, save_grid
