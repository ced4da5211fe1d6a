"""Adversarial and fooling images: FGSM (Goodfellow et al. 2015), PGD (Madry et
al. 2018) and fooling images (targeted PGD to a chosen class, Nguyen et al.
2015; Szegedy et al. 2014), with their evaluation."""

from cnnviz_jax.adversarial._attacks import (
    ATTACKS, FOOL_STEPS, LOSSES, NORMS, attack_dataset, evaluate, fgsm, fool,
    perturbation, pgd)
