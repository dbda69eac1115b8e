"""Regularization: penalties, augmentation, mixup/cutmix, adversarial examples.

These are pure functions of arrays and keys; the ``classification`` objective
(``jaxdl.train.objectives``) switches them on from the ``loss`` config section, and early
stopping lives in the training loop (``config.early_stopping``).
"""

from jaxdl.regularize.adversarial import attack, check_attack, fgsm, mix_adversarial, pgd
from jaxdl.regularize.augment import augment_batch, check_augment_options
from jaxdl.regularize.mixing import cutmix, mixup
from jaxdl.regularize.penalties import decoupled_weight_decay, kernels_only, l1_penalty, l2_penalty

__all__ = ["attack", "augment_batch", "check_attack", "check_augment_options", "cutmix",
           "decoupled_weight_decay", "fgsm", "kernels_only", "l1_penalty", "l2_penalty",
           "mix_adversarial", "mixup", "pgd"]
