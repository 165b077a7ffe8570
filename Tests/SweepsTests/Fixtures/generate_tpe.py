"""Fixtures for the TPE sampler's Parzen estimators, computed by Optuna's own classes.

Run from a virtual environment with Optuna (pip install optuna; written against 5.1):

    python generate_tpe.py > tpe.json

For each case: the dimensions, observations in trial order, the mixture's log density at some
points (Optuna's `_ParzenEstimator.log_pdf` with TPESampler's default parameters), and the
`default_gamma` / `default_weights` values.
"""
import json

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_gamma, default_weights

PARAMETERS = _ParzenEstimatorParameters(
    prior_weight=1.0, consider_magic_clip=True, consider_endpoints=False, weights=default_weights, multivariate=True
)


def dimension(d):
    kind = d[0]
    if kind == "uniform":
        return FloatDistribution(d[1], d[2])
    if kind == "loguniform":
        return FloatDistribution(d[1], d[2], log=True)
    if kind == "randint":
        return IntDistribution(d[1], d[2])
    return CategoricalDistribution(list(range(d[1])))


def draw(rng, d):
    kind = d[0]
    if kind == "uniform":
        return float(rng.uniform(d[1], d[2]))
    if kind == "loguniform":
        return float(np.exp(rng.uniform(np.log(d[1]), np.log(d[2]))))
    if kind == "randint":
        return float(rng.integers(d[1], d[2] + 1))
    return float(rng.integers(0, d[1]))


def case(name, dims, n, seed):
    rng = np.random.default_rng(seed)
    space = {f"x{i}": dimension(d) for i, d in enumerate(dims)}
    observations = [[draw(rng, d) for d in dims] for _ in range(n)]
    points = [[draw(rng, d) for d in dims] for _ in range(12)]
    obs = {f"x{i}": np.array([o[i] for o in observations], dtype=float) for i in range(len(dims))}
    pe = _ParzenEstimator(obs, space, PARAMETERS)
    pts = {f"x{i}": np.array([p[i] for p in points], dtype=float) for i in range(len(dims))}
    return {
        "name": name,
        "dimensions": dims,
        "observations": observations,
        "points": points,
        "log_density": [float(v) for v in pe.log_pdf(pts)],
    }


cases = [
    case("uniform, none", [["uniform", -2.0, 3.0]], 0, 1),
    case("uniform, one", [["uniform", -2.0, 3.0]], 1, 2),
    case("uniform, five", [["uniform", -2.0, 3.0]], 5, 3),
    case("loguniform, eight", [["loguniform", 1e-5, 1e-1]], 8, 4),
    case("randint, six", [["randint", 1, 20]], 6, 5),
    case("categorical, seven", [["categorical", 4]], 7, 6),
    case("mixed, thirty", [["loguniform", 1e-4, 1.0], ["uniform", 0.0, 0.99], ["randint", 8, 512], ["categorical", 3]], 30, 7),
]
print(
    json.dumps(
        {
            "optuna": optuna.__version__,
            "gamma": {str(n): default_gamma(n) for n in [0, 1, 9, 10, 11, 100, 249, 250, 251, 1000]},
            "weights": {str(n): [float(w) for w in default_weights(n)] for n in [0, 3, 25, 26, 30]},
            "cases": cases,
        },
        indent=1,
    )
)
