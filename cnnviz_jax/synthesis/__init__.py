"""Image synthesis: one optimization engine behind class and neuron
visualization, feature inversion, DeepDream, multifaceted visualization,
sweeps and the attacks of `cnnviz_jax.adversarial`.

    images = synthesis.visualize_class(model, range(10), key=key)
    recon = synthesis.invert(model, photos, "relu3_2", key=key)
    dream = synthesis.deepdream(model, photo, "relu4_2", key=key)

`param` (parameterizations), `transforms` (input transforms and between-step
operations, by name through `transforms.REGISTRY`), `engine` (the loop:
`Setup`, `optimize`, `make_optimizer`), `sweep_engine` (vmapped, sharded
sweeps) and the recipes (named settings) are the pieces; the other modules
are techniques built from them.
"""

from cnnviz_jax.synthesis import engine, param, sweep_engine, transforms
from cnnviz_jax.synthesis._deepdream import deepdream, multiscale, octave_sizes
from cnnviz_jax.synthesis._generator import (
    Discriminator, Generator, GeneratorParam, GeneratorPrior, SHIPPED_GENERATOR,
    clip_code, generate, generator, load_generator, save_generator)
from cnnviz_jax.synthesis._generator_train import train_generator
from cnnviz_jax.synthesis._invert import (
    invert, invert_result, inversion_setup, reconstruction_error)
from cnnviz_jax.synthesis._multifaceted import (
    DEFAULT_ANCHOR, DEFAULT_DIVERSITY, Multifaceted, cluster_images,
    facet_separation, multifaceted)
from cnnviz_jax.synthesis._recipes import (
    DEFAULT_RECIPE, RECIPES, STATIC_RECIPE_KEYS, recipe, setup, setups, sweep)
from cnnviz_jax.synthesis._visualize import (
    visualize, visualize_channel, visualize_class, visualize_neuron)
from cnnviz_jax.synthesis.engine import (
    Result, Setup, make_optimizer, normalize_by, optimize)
