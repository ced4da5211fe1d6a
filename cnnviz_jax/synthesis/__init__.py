"""Image synthesis: one optimization engine behind class and neuron
visualization, feature inversion, DeepDream, multifaceted visualization and
sweeps.

    images = synthesis.visualize_class(model, range(10), key=key)
    recon = synthesis.invert(model, photos, "relu3_2", key=key)
    dream = synthesis.deepdream(model, photo, "relu4_2", key=key)

`param` (parameterizations), `transforms` (input transforms and between-step
operations), `engine` (the loop), `sweep` (vmapped, sharded sweeps) and
`recipes` (named settings) are the pieces; the other modules are techniques
built from them.
"""

from cnnviz_jax.synthesis import engine, param, transforms
from cnnviz_jax.synthesis._deepdream import deepdream
from cnnviz_jax.synthesis.engine import Result, Setup, optimize
from cnnviz_jax.synthesis._invert import invert, reconstruction_error
from cnnviz_jax.synthesis._multifaceted import kmeans, multifaceted
from cnnviz_jax.synthesis._recipes import (
    DEFAULT_RECIPE, RECIPES, STATIC_RECIPE_KEYS, recipe, setup, setups, sweep)
from cnnviz_jax.synthesis._visualize import (
    visualize, visualize_channel, visualize_class, visualize_neuron)
