"""Objectives: what to score, composable arithmetically (Lucid style).

    obj = 0.5 * objectives.channel("relu4_2", 7) - 1e-3 * objectives.l2()

One way to say what to score, for every technique: attribution targets,
synthesis objectives, attack losses and metrics are all `Objective`s.
`base` holds the algebra and the registry, `priors` the image priors (l2, l1,
tv) on the `"input"` tap.
"""

from cnnviz_jax.objectives._base import (
    REGISTRY, Objective, Term, channel, class_logit, class_prob, diversity,
    feature_match, layer_l2, neuron, register, resolve, term)
from cnnviz_jax.objectives._priors import CENTER, l1, l2, tv

__all__ = ["REGISTRY", "Objective", "Term", "channel", "class_logit",
           "class_prob", "diversity", "feature_match", "layer_l2", "neuron",
           "register", "resolve", "term", "CENTER", "l1", "l2", "tv"]
