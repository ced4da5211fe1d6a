"""Objectives: what to score, composable arithmetically (Lucid style).

    obj = 0.5 * objectives.channel("relu4_2", 7) - 1e-3 * objectives.l2()
    value = objectives.evaluate(objectives.resolve(obj, model, (224, 224)),
                                model, images)               # [N]

One way to say what to score, for every technique: attribution targets,
synthesis objectives, attack losses and metrics are all `Objective`s.
`_base` holds the algebra, the registry, `resolve` and `evaluate`;
`_activations` the terms on activations and logits; `_priors` the image
priors (l2, l1, tv) on the `"input"` tap. A new kind of term
registers itself (`register(name, taps=..., check=...)`) in its own module.

Positions: `channel(layer, c)` is the channel's spatial mean;
`neuron(layer, c)` without `y, x` is the centre unit of the layer's map.
"""

from cnnviz_jax.objectives._base import (
    REGISTRY, Objective, Term, TermKind, activations, check_integer,
    check_layer, evaluate, register, resolve, term)
from cnnviz_jax.objectives._activations import (
    channel, class_logit, class_prob, diversity, feature_match, layer_l2, neuron)
from cnnviz_jax.objectives._priors import CENTER, l1, l2, tv

__all__ = ["REGISTRY", "Objective", "Term", "TermKind", "activations", "channel",
           "check_integer", "check_layer", "class_logit", "class_prob",
           "diversity", "evaluate", "feature_match", "layer_l2", "neuron",
           "register", "resolve", "term", "CENTER", "l1", "l2", "tv"]
