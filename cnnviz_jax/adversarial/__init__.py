"""Adversarial and fooling images on the synthesis engine: FGSM (Goodfellow
et al. 2015), PGD (Madry et al. 2018) and fooling images (targeted PGD to a
chosen class, Nguyen et al. 2015; Szegedy et al. 2014), with their
evaluation. An attack is `engine.optimize` with an attack objective
(`logit_margin`, `cross_entropy`), a sign or L2-normalized step, a projection
onto the ball (`attack_setup`) and `keep_best`."""

from cnnviz_jax.adversarial._attacks import (
    ATTACKS, FOOL_STEPS, NORMS, attack_optimizer, attack_setup, fgsm, fool, pgd)
from cnnviz_jax.adversarial._evaluate import attack_dataset, evaluate, perturbation
from cnnviz_jax.adversarial._losses import LOSSES, cross_entropy, logit_margin
