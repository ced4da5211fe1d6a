"""Texture and style: Gram-matrix textures (Gatys et al. 2015), style
transfer (Gatys et al. 2016, 2017) and the classical non-parametric texture
baseline (Efros & Leung 1999; Wei & Levoy 2000).

    g = style.gram_matrix(features)                          # [N, C, C]
    tex = style.texture(model, example, (128, 128), key=key)  # [1, H, W, 3]
    out = style.transfer(model, content, [painting], key=key, optimizer="lbfgs")
    el = style.texture_nonparametric(example, (64, 64), key=key)  # [H, W, 3]
    stylizer, params = style.load_stylizer()   # feed-forward, 4 paintings
    out = style.stylize(stylizer, params, images, style=[0.5, 0, 0, 0.5])
    net = style.load_adain()                   # AdaIN: any style image
    out = style.adain_stylize(net, images, [painting], alpha=0.8)

The Gram and content terms are objective terms (`gram_loss`, `style_loss`,
`content_loss`), so they compose with every other `objectives` term and run
on the one synthesis engine; `transfer_sweep` vmaps style transfer over its
weights. `Stylizer` is Johnson et al.'s feed-forward network with conditional
instance norm (Dumoulin et al. 2017), trained on the same terms (`train`);
the AdaIN decoder (Huang & Belongie 2017) takes any style image without
retraining (`adain_stylize`, trained by `train_adain` on the same loop).
"""

from cnnviz_jax.style._gram import (
    blend_grams, content_loss, gram_loss, gram_matrix, style_loss)
from cnnviz_jax.style._images import (
    COLOR_MODES, luminance_transfer, match_histograms, to_rgb)
from cnnviz_jax.style._nonparametric import causal_offsets, texture_nonparametric
from cnnviz_jax.style._transfer import (
    DEFAULT_LAYERS, GATYS_CONTENT, GATYS_STYLE, OPTIMIZERS, Problem,
    default_layers, losses, memory_estimate, pyramid, style_grams, texture,
    texture_problem, transfer, transfer_multiscale, transfer_problem,
    transfer_sweep)
from cnnviz_jax.style._stylizer import (
    CondInstanceNorm, Stylizer, architecture, instance_norm, load_stylizer,
    noise_like, save_stylizer, style_weights, stylize, stylizer_info)
from cnnviz_jax.style._fast_train import (
    CHECKPOINT, EXPORT, ContentPool, Recipe, batch_for_step, check_recipe,
    content_pool, make_loss, style_targets, train)
from cnnviz_jax.style._adain import (
    ADAIN_EXPORT, AdaIN, AdaINRecipe, Decoder, adain, adain_batch,
    adain_stylize, check_adain_recipe, decoder_plan, load_adain,
    make_adain_loss, moments, save_adain, stage_sizes, style_moments,
    train_adain)

__all__ = ["blend_grams", "content_loss", "gram_loss", "gram_matrix",
           "style_loss", "COLOR_MODES", "luminance_transfer",
           "match_histograms", "to_rgb", "causal_offsets",
           "texture_nonparametric", "DEFAULT_LAYERS", "GATYS_CONTENT",
           "GATYS_STYLE", "OPTIMIZERS", "Problem", "default_layers", "losses",
           "memory_estimate", "pyramid", "style_grams", "texture",
           "texture_problem", "transfer", "transfer_multiscale",
           "transfer_problem", "transfer_sweep", "CondInstanceNorm",
           "Stylizer", "architecture", "instance_norm", "load_stylizer",
           "noise_like", "save_stylizer", "style_weights", "stylize", "stylizer_info",
           "CHECKPOINT", "EXPORT", "ContentPool", "Recipe", "batch_for_step",
           "check_recipe", "content_pool", "make_loss", "style_targets",
           "train", "ADAIN_EXPORT", "AdaIN", "AdaINRecipe", "Decoder", "adain",
           "adain_batch", "adain_stylize", "check_adain_recipe",
           "decoder_plan", "load_adain", "make_adain_loss", "moments",
           "save_adain", "stage_sizes", "style_moments", "train_adain"]
