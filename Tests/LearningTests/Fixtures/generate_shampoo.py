#!/usr/bin/env python3
"""Reference trajectories for `shampoo` (Meta's DistributedShampoo) and `shampoo-simple` (the
teaching variant ShampooSolution, shampoo-simple), for the Swift tests: shampoo.json, and shampoo_eigen.json for
the eigendecomposed preconditioner's kept-basis cases (square blocks; see EIGEN_CASES). Same
format as optimizers.json, plus `parameter_order` (the order the parameters are handed to the
optimizer).

`shampoo` runs the actual DistributedShampoo from a copy of facebookresearch/optimizers placed
OUTSIDE this repository (its code is not part of this project):

    git clone https://github.com/facebookresearch/optimizers /tmp/optimizers
    SHAMPOO_REPO=/tmp/optimizers /opt/torchenv/bin/python Tests/LearningTests/Fixtures/generate_shampoo.py

shampoo.json was written from its commit f6066066 with PyTorch 2.15, on the CPU in float64:
factor matrices and their inverse roots are kept in float64 (`factor_matrix_dtype`,
`inv_factor_matrix_dtype`; the reference defaults to float32). The
reference keeps the learning rate in a float32 tensor, so every case uses a learning rate that
float32 represents exactly (a power of two); otherwise its float64 run would be off by float32's
rounding of lr.

The trial keys map to the reference's arguments as follows: beta1/beta2 -> betas, beta3,
epsilon, weight_decay, use_decoupled_weight_decay -> weight_decay_type (DECOUPLED or L2),
max_preconditioner_dim, precondition_frequency, start_preconditioning_step, use_bias_correction,
inv_root_override r -> preconditioner_config.inverse_exponent_override {order: 1/r},
preconditioner root_inv / eigendecomposed -> RootInvShampooPreconditionerConfig /
EigendecomposedShampooPreconditionerConfig, whose amortized_computation_config is
EighEigendecompositionConfig (eigendecomposition eigh) or QREigendecompositionConfig (qr), with
eigendecomposition_tolerance -> tolerance and qr_max_iterations -> max_iterations,
grafting/grafting_beta2/grafting_epsilon -> grafting_config (SGD, AdaGrad, RMSprop, Adam
PreconditionerConfig), momentum/dampening/use_nesterov -> iterate_averaging_config
(ClassicMomentumConfig).

Parameters: a vector (7), a matrix (5x3), a bigger matrix (10x6) and a 3-D tensor (2x3x4), so
that with a small max_preconditioner_dim the reference's merging of small dimensions, blocking
(the 10x6 matrix in 8x6 and 2x6 blocks), 1-D factors (full-matrix AdaGrad) and order-3 factors
are all exercised; with the default 1024 every parameter is merged into one vector.
"""
import json
import logging
import os
import sys

import torch

sys.path.insert(0, os.environ.get("SHAMPOO_REPO", "/tmp/optimizers"))
from distributed_shampoo.shampoo_types import (  # noqa: E402
    AdaGradPreconditionerConfig,
    AdamPreconditionerConfig,
    ClassicMomentumConfig,
    EigendecomposedShampooPreconditionerConfig,
    RMSpropPreconditionerConfig,
    RootInvShampooPreconditionerConfig,
    SGDPreconditionerConfig,
    WeightDecayType,
)
from distributed_shampoo.distributed_shampoo import DistributedShampoo  # noqa: E402
from distributed_shampoo.preconditioner.matrix_functions_types import (  # noqa: E402
    EighEigendecompositionConfig,
    QREigendecompositionConfig,
)

logging.disable(logging.WARNING)  # the reference logs its settings at WARNING
torch.set_default_dtype(torch.float64)
STEPS = 12
ORDER = ["vector", "matrix", "big", "tensor3"]
SHAPES = {"vector": [7], "matrix": [5, 3], "big": [10, 6], "tensor3": [2, 3, 4]}


# ----------------------------------------------------------------------------------------------
# The teaching variant of Shampoo (ShampooSolution and matrix_power_solution), shampoo-simple.

def matrix_power_solution(M, p, epsilon=1e-6):
    eigenvalues, eigenvectors = torch.linalg.eigh(M)
    eigenvalues = torch.clamp(eigenvalues, min=epsilon)
    eigenvalues_p = eigenvalues ** p
    return eigenvectors @ torch.diag(eigenvalues_p) @ eigenvectors.T


class ShampooSolution(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, momentum=0.0, weight_decay=0.0, epsilon=1e-4, update_freq=1, beta=0.9):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, epsilon=epsilon, update_freq=update_freq, beta=beta)
        super().__init__(params, defaults)
        self.step_count = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.step_count += 1
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if group['weight_decay'] != 0:
                    grad = grad.add(p, alpha=group['weight_decay'])
                if p.dim() == 1:
                    if 'momentum_buffer' not in state:
                        state['momentum_buffer'] = torch.zeros_like(p)
                    buf = state['momentum_buffer']
                    buf.mul_(group['momentum']).add_(grad)
                    p.add_(buf, alpha=-group['lr'])
                    continue
                original_shape = p.shape
                if p.dim() > 2:
                    grad_2d = grad.view(grad.size(0), -1)
                else:
                    grad_2d = grad
                m, n = grad_2d.shape
                if 'L' not in state:
                    state['L'] = group['epsilon'] * torch.eye(m, device=p.device, dtype=p.dtype)
                    state['R'] = group['epsilon'] * torch.eye(n, device=p.device, dtype=p.dtype)
                    state['L_inv'] = torch.eye(m, device=p.device, dtype=p.dtype)
                    state['R_inv'] = torch.eye(n, device=p.device, dtype=p.dtype)
                    if group['momentum'] > 0:
                        state['momentum_buffer'] = torch.zeros_like(grad_2d)
                beta = group['beta']
                state['L'] = beta * state['L'] + (1 - beta) * (grad_2d @ grad_2d.T)
                state['R'] = beta * state['R'] + (1 - beta) * (grad_2d.T @ grad_2d)
                if self.step_count % group['update_freq'] == 0:
                    state['L_inv'] = matrix_power_solution(state['L'], -0.25, group['epsilon'])
                    state['R_inv'] = matrix_power_solution(state['R'], -0.25, group['epsilon'])
                precond_grad = state['L_inv'] @ grad_2d @ state['R_inv']
                if group['momentum'] > 0:
                    state['momentum_buffer'].mul_(group['momentum']).add_(precond_grad)
                    update = state['momentum_buffer']
                else:
                    update = precond_grad
                if p.dim() > 2:
                    p.add_(update.view(original_shape), alpha=-group['lr'])
                else:
                    p.add_(update, alpha=-group['lr'])


def simple(params, h):
    keys = ["momentum", "weight_decay", "epsilon", "update_freq", "beta"]
    return ShampooSolution(params, lr=h["lr"], **{k: h[k] for k in keys if k in h})


# ----------------------------------------------------------------------------------------------
# Meta's DistributedShampoo from the trial keys.

def distributed(params, h):
    graft = h.get("grafting", "none")
    graft_eps = h.get("grafting_epsilon", 1e-10)
    grafting_config = {
        "none": None,
        "sgd": SGDPreconditionerConfig(),
        "adagrad": AdaGradPreconditionerConfig(epsilon=graft_eps),
        "rmsprop": RMSpropPreconditionerConfig(beta2=h.get("grafting_beta2", 0.99), epsilon=graft_eps),
        "adam": AdamPreconditionerConfig(beta2=h.get("grafting_beta2", 0.999), epsilon=graft_eps),
    }[graft]
    override = {}
    if h.get("inv_root_override", 0):
        override = {order: 1.0 / h["inv_root_override"] for order in range(5)}
    momentum = h.get("momentum", 0.0)
    return DistributedShampoo(
        params,
        lr=h["lr"],
        betas=(h.get("beta1", 0.9), h.get("beta2", 1.0)),
        beta3=h.get("beta3", -1.0),
        epsilon=h.get("epsilon", 1e-12),
        weight_decay=h.get("weight_decay", 0.0),
        weight_decay_type=WeightDecayType.DECOUPLED if h.get("use_decoupled_weight_decay", True) else WeightDecayType.L2,
        max_preconditioner_dim=h.get("max_preconditioner_dim", 1024),
        precondition_frequency=h.get("precondition_frequency", 1),
        start_preconditioning_step=h.get("start_preconditioning_step", -1),
        use_bias_correction=h.get("use_bias_correction", True),
        grafting_config=grafting_config,
        iterate_averaging_config=ClassicMomentumConfig(
            momentum=momentum, dampening=h.get("dampening", 0.0), use_nesterov=h.get("use_nesterov", False))
        if momentum > 0 else None,
        preconditioner_config=preconditioner_config(h, override),
    )


def preconditioner_config(h, override):
    if h.get("preconditioner", "root_inv") == "root_inv":
        return RootInvShampooPreconditionerConfig(
            factor_matrix_dtype=torch.float64, inv_factor_matrix_dtype=torch.float64, inverse_exponent_override=override)
    if h.get("eigendecomposition", "eigh") == "eigh":
        amortized = EighEigendecompositionConfig(tolerance=h.get("eigendecomposition_tolerance", 0.0))
    else:
        amortized = QREigendecompositionConfig(
            max_iterations=h.get("qr_max_iterations", 1), tolerance=h.get("eigendecomposition_tolerance", 0.01))
    return EigendecomposedShampooPreconditionerConfig(
        amortized_computation_config=amortized, factor_matrix_dtype=torch.float64,
        factor_matrix_eigenvectors_dtype=torch.float64, factor_matrix_eigenvalues_dtype=torch.float64,
        inverse_exponent_override=override)


# (fixture name, optimizer key as trials name it, trial hyperparameters, factory)
#
# Epsilon: the 1-D factors (full-matrix AdaGrad, inverse square roots) are rank-deficient for the
# first steps (a 7-vector sees 3 non-zero gradients before step 5). Their null space gets
# eigenvalues epsilon + rounding noise (~1e-16 of the factor's norm), and with the default 1e-12
# that noise is ~0.1% of epsilon: wherever the direction has a component there (a gradient
# outside the span of stale roots, or eigenvectors mixed by rounding across a small gap) the
# reference itself is only reproducible to ~1e-3. The cases that reach that regime use
# epsilon 1e-4; the two with the default 1e-12 stay in the well-defined regime (fresh roots every
# step, direction in the factors' span) and are compared in float64 only.
CASES = [
    # Default max_preconditioner_dim: every parameter is merged into one vector (full-matrix AdaGrad-like).
    ("shampoo_defaults_merged", "shampoo", {"lr": 0.03125}, distributed),
    # Blocking and 2-D factors; no grafting; sums of outer products (beta2 = 1).
    ("shampoo_blocked", "shampoo", {"lr": 0.03125, "max_preconditioner_dim": 8}, distributed),
    ("shampoo_adagrad_grafting", "shampoo",
     {"lr": 0.0625, "max_preconditioner_dim": 8, "grafting": "adagrad", "grafting_epsilon": 1e-8, "epsilon": 1e-4}, distributed),
    ("shampoo_adam_grafting_ema_decay", "shampoo",
     {"lr": 0.0078125, "max_preconditioner_dim": 8, "beta2": 0.999, "grafting": "adam", "weight_decay": 0.01,
      "epsilon": 1e-4},
     distributed),
    # Refresh every 3 steps, Shampoo from step 4 (grafting alone before), in 12 steps.
    ("shampoo_delayed_start_adam", "shampoo",
     {"lr": 0.0078125, "max_preconditioner_dim": 8, "beta2": 0.999, "precondition_frequency": 3,
      "start_preconditioning_step": 4, "grafting": "adam", "grafting_beta2": 0.99, "epsilon": 1e-4}, distributed),
    ("shampoo_delayed_start_no_grafting", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 8, "precondition_frequency": 3, "start_preconditioning_step": 4,
      "epsilon": 1e-4},
     distributed),
    ("shampoo_nesterov_l2_rmsprop", "shampoo",
     {"lr": 0.015625, "max_preconditioner_dim": 8, "beta1": 0.0, "momentum": 0.5, "use_nesterov": True,
      "weight_decay": 0.01, "use_decoupled_weight_decay": False, "grafting": "rmsprop", "grafting_beta2": 0.95,
      "epsilon": 1e-4},
     distributed),
    ("shampoo_momentum_beta3_no_bias_correction_root2", "shampoo",
     {"lr": 0.015625, "max_preconditioner_dim": 8, "beta2": 0.99, "beta3": 0.8, "use_bias_correction": False,
      "inv_root_override": 2, "momentum": 0.9, "dampening": 0.1, "grafting": "sgd", "epsilon": 1e-4}, distributed),
    # Order-3 factors (the 2x3x4 tensor keeps its three dims) and blocks everywhere.
    ("shampoo_order3_blocks", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "grafting": "adam", "weight_decay": 0.001, "epsilon": 1e-4}, distributed),
    # The eigendecomposed preconditioner with eigh at every refresh: the same maths as root_inv.
    ("shampoo_eigendecomposed_eigh", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 8, "preconditioner": "eigendecomposed", "grafting": "adam",
      "epsilon": 1e-4}, distributed),
    ("simple_defaults", "shampoo-simple", {"lr": 0.1}, simple),
    ("simple_momentum_decay_freq", "shampoo-simple",
     {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "update_freq": 3, "beta": 0.95, "epsilon": 1e-3}, simple),
]


# Eigendecomposed cases whose basis outlives a refresh: eigh with a tolerance (the basis is kept
# while it still diagonalises the factor to the tolerance, so some refreshes only update the
# eigenvalues) and QR iterations warm-started from the last basis. They run on square blocks only
# (a 6x6 matrix in four 3x3 blocks, a 3x3 matrix, a 3x3x3 tensor with three 3x3 factors), whose
# factors are full rank from the first step: a rank-deficient factor's null-space eigenvectors are
# whatever basis the LAPACK build returns, and a kept basis carries that choice forward.
EIGEN_ORDER = ["square", "matrix", "cube"]
EIGEN_SHAPES = {"square": [6, 6], "matrix": [3, 3], "cube": [3, 3, 3]}
EIGEN_CASES = [
    ("shampoo_eigendecomposed_eigh_tolerance", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "preconditioner": "eigendecomposed",
      "eigendecomposition_tolerance": 0.2, "grafting": "adam", "epsilon": 1e-4}, distributed),
    ("shampoo_eigendecomposed_eigh_tolerance_ema", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "preconditioner": "eigendecomposed", "beta2": 0.9,
      "eigendecomposition_tolerance": 0.05, "epsilon": 1e-4}, distributed),
    # The filtered gradient's look-ahead weight beta3 with Nesterov momentum, and no filtered gradient:
    # the two other ways the eigenbasis sees the gradient.
    ("shampoo_eigendecomposed_eigh_tolerance_beta3", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "preconditioner": "eigendecomposed", "beta3": 0.8,
      "momentum": 0.9, "use_nesterov": True, "eigendecomposition_tolerance": 0.1, "grafting": "adam", "epsilon": 1e-4},
     distributed),
    ("shampoo_eigendecomposed_eigh_tolerance_unfiltered", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "preconditioner": "eigendecomposed", "beta1": 0,
      "eigendecomposition_tolerance": 0.1, "grafting": "sgd", "epsilon": 1e-4}, distributed),
    ("shampoo_eigendecomposed_qr", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "preconditioner": "eigendecomposed", "eigendecomposition": "qr",
      "beta2": 0.99, "epsilon": 1e-4}, distributed),
    ("shampoo_eigendecomposed_qr_iterations", "shampoo",
     {"lr": 0.03125, "max_preconditioner_dim": 3, "preconditioner": "eigendecomposed", "eigendecomposition": "qr",
      "qr_max_iterations": 4, "eigendecomposition_tolerance": 0.001, "grafting": "rmsprop", "epsilon": 1e-4},
     distributed),
]


def gradient_sequence(shape, generator):
    grads = []
    for t in range(STEPS):
        g = torch.randn(shape, generator=generator)
        if t == 3:
            g = torch.zeros(shape)  # a zero gradient
        if t in (6, 7):
            g = -grads[t - 1] * 2.0  # sign flips
        grads.append(g)
    return grads


def write(file, cases_spec, order, shapes, seed):
    generator = torch.Generator().manual_seed(seed)
    starts = {k: torch.randn(shapes[k], generator=generator) for k in order}
    grads = {k: gradient_sequence(shapes[k], generator) for k in order}
    cases = []
    for name, optimizer, hyper, factory in cases_spec:
        params = {k: torch.nn.Parameter(starts[k].clone()) for k in order}
        opt = factory([params[k] for k in order], hyper)
        trajectory = {k: [] for k in order}
        for t in range(STEPS):
            for k in order:
                params[k].grad = grads[k][t].clone()
            opt.step()
            for k in order:
                trajectory[k].append(params[k].detach().flatten().tolist())
        cases.append({"name": name, "optimizer": optimizer, "hyperparameters": hyper, "trajectory": trajectory})
    fixture = {
        "generator": "generate_shampoo.py",
        "torch": torch.__version__,
        "steps": STEPS,
        "parameter_order": order,
        "shapes": shapes,
        "start": {k: v.flatten().tolist() for k, v in starts.items()},
        "gradients": {k: [g.flatten().tolist() for g in gs] for k, gs in grads.items()},
        "cases": cases,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), file)
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}: {len(cases)} cases")


def main():
    write("shampoo.json", CASES, ORDER, SHAPES, 4321)
    write("shampoo_eigen.json", EIGEN_CASES, EIGEN_ORDER, EIGEN_SHAPES, 8765)


if __name__ == "__main__":
    main()
