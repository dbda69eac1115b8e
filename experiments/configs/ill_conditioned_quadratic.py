"""GD vs heavy-ball momentum vs Newton vs natural gradient on an ill-conditioned quadratic.

Least squares with a Gaussian likelihood in d = 50 dimensions, Hessian eigenvalues log-spaced
in [1, kappa] (whose Fisher equals the Hessian: natural gradient with step 1 is Newton);
iterations until ||w - w*|| <= 1e-6 ||w0 - w*||, optimal fixed rates from the closed forms.

Command:   python -m experiments.analyze --config ill_conditioned_quadratic
Output:    runs/ill_conditioned_quadratic/{ill_conditioned_quadratic.png, results.json}
Runtime:   40 s wall (almost all Python/JAX start-up; the iterations are NumPy float64), on
           the shared 2-core VM under heavy load (~13), 2026-11-30.
Result (seed 0): iterations to tol, measured (closed form in brackets)
           kappa   GD             heavy ball    Newton  nat. grad.  nat. grad. step 0.5
           100     612 (<= 691)   85 (~69)      1       1           20 (20)
           1000    6107 (<= 6908) 288 (~219)    1       1           20 (20)
           GD stays below its worst-case bound by the head start of w0 spreading its error
           over 50 eigenvectors; heavy ball scales with sqrt(kappa); Newton and the natural
           gradient (here F = H) do not depend on kappa.
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "ill_conditioned_quadratic"
    config.seed = 0
    config.kappas = (100.0, 1000.0)
    config.dim = 50
    config.tol = 1e-6
    config.max_iters = 50000
    return config
