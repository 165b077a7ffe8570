#!/usr/bin/env python3
"""Reference trajectories for SOAP, the teaching variant SimpleSOAP (soap-simple) and Muon (with its auxiliary AdamW).

Same format as optimizers.json. References, run from copies OUTSIDE this repository:
  SOAP_REPO  a checkout of nikhilvyas/SOAP (soap.py)
  MUON_REPO  a checkout of KellerJordan/Muon (muon.py)
Both run in float64. The authors' SOAP casts its statistics to float32 for eigh/QR and Muon runs
Newton-Schulz in bfloat16; for float64 references those two casts are removed (the methods below
restate the authors' steps without the cast), so the Swift tests can compare at 1e-9. One extra
case keeps Muon's bfloat16 Newton-Schulz to show agreement with the original within bf16 rounding.

SOAP's statistics are rank-deficient at first (one gradient's outer product), and eigenvectors of
a repeated (zero) eigenvalue are arbitrary: LAPACK builds differ there, and Adam in the rotated
basis is not invariant to that choice. So the exact cases use a square matrix (both factors of
full rank from the first step) and the case with an unrotated side a 3x5 matrix whose rotated
side (3x3) is of full rank; preconditioning 1-D parameters (rank-1 statistics) is tested for
behaviour in Swift, not against these trajectories.

Run: SOAP_REPO=/tmp/refs MUON_REPO=/tmp/refs /opt/torchenv/bin/python generate_matrix_optimizers.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.environ.get("SOAP_REPO", "/tmp/refs"))
sys.path.insert(0, os.environ.get("MUON_REPO", "/tmp/refs"))
import muon as muon_ref  # noqa: E402
from soap import SOAP  # noqa: E402

torch.set_default_dtype(torch.float64)
STEPS = 12
ORIGINAL_NEWTON_SCHULZ = muon_ref.zeropower_via_newtonschulz5


class SOAP64(SOAP):
    """The authors' SOAP with its float32 casts of the statistics removed."""

    def get_orthogonal_matrix(self, mat):
        final = []
        for m in mat:
            if len(m) == 0:
                final.append([])
                continue
            _, q = torch.linalg.eigh(m + 1e-30 * torch.eye(m.shape[0]))
            final.append(torch.flip(q, [1]))
        return final

    def get_orthogonal_matrix_QR(self, state, max_precond_dim=10000, merge_dims=False):
        shape = state["exp_avg_sq"].shape
        exp_avg_sq = self.merge_dims(state["exp_avg_sq"], max_precond_dim) if merge_dims else state["exp_avg_sq"]
        final = []
        for ind, (m, o) in enumerate(zip(state["GG"], state["Q"])):
            if len(m) == 0:
                final.append([])
                continue
            est_eig = torch.diag(o.T @ m @ o)
            sort_idx = torch.argsort(est_eig, descending=True)
            exp_avg_sq = exp_avg_sq.index_select(ind, sort_idx)
            o = o[:, sort_idx]
            q, _ = torch.linalg.qr(m @ o)
            final.append(q)
        state["exp_avg_sq"] = exp_avg_sq.reshape(shape)
        return final


def newton_schulz_float64(G, steps):
    """Muon's zeropower_via_newtonschulz5 without the bfloat16 cast."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.clone()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


class SimpleSOAP(torch.optim.Optimizer):
    """SimpleSOAP (soap-simple): momentum by lerp, orthogonalised by SVD and rescaled to its Frobenius norm."""

    def __init__(self, params, lr=1e-1, b1=0.9):
        super().__init__(params, dict(lr=lr, b1=b1))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    state["momentum"] = torch.zeros_like(p)
                m = state["momentum"]
                m.lerp_(p.grad, 1 - group["b1"])
                if len(m.shape) == 1:
                    u = m
                else:
                    U, S, Vh = torch.linalg.svd(m, full_matrices=False)
                    u0 = U @ Vh
                    u = u0 * (torch.norm(m, p="fro") / (torch.norm(u0, p="fro") + 1e-16))
                p.add_(u, alpha=-group["lr"])


def muon_factory(bf16):
    def make(params, h):
        vector, matrix = params
        muon_ref.zeropower_via_newtonschulz5 = ORIGINAL_NEWTON_SCHULZ if bf16 else newton_schulz_float64
        groups = [
            dict(params=[matrix], lr=h["lr"], momentum=h.get("momentum", 0.95), weight_decay=h.get("weight_decay", 0), use_muon=True),
            dict(params=[vector], lr=h.get("aux_lr", 3e-4), betas=(h.get("aux_beta1", 0.9), h.get("aux_beta2", 0.95)),
                 eps=h.get("aux_eps", 1e-10), weight_decay=h.get("aux_weight_decay", 0), use_muon=False),
        ]
        return muon_ref.SingleDeviceMuonWithAuxAdam(groups)
    return make


# (name, optimizer, trial hyperparameters, factory(params, hyper))
CASES = [
    ("soap", "soap", {"lr": 0.01, "precondition_frequency": 3},
     lambda p, h: SOAP64(p, lr=h["lr"], precondition_frequency=h["precondition_frequency"])),
    ("soap_betas_decay", "soap", {"lr": 0.02, "betas": [0.9, 0.99], "shampoo_beta": 0.8, "weight_decay": 0.1,
                                  "precondition_frequency": 2},
     lambda p, h: SOAP64(p, lr=h["lr"], betas=tuple(h["betas"]), shampoo_beta=h["shampoo_beta"], weight_decay=h["weight_decay"],
                         precondition_frequency=h["precondition_frequency"])),
    ("soap_simple", "soap-simple", {"lr": 0.05, "beta1": 0.8}, lambda p, h: SimpleSOAP(p, lr=h["lr"], b1=h["beta1"])),
    ("muon", "muon", {"lr": 0.02, "muon_output": True}, muon_factory(False)),
    ("muon_decay_aux", "muon", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "muon_output": True, "aux_lr": 0.01,
                                "aux_beta1": 0.8, "aux_beta2": 0.9, "aux_weight_decay": 0.05}, muon_factory(False)),
]
WIDE_CASES = [
    ("soap_max_dim_normalized", "soap", {"lr": 0.01, "max_precond_dim": 4, "precondition_frequency": 4, "normalize_grads": True,
                                         "correct_bias": False},
     lambda p, h: SOAP64(p, lr=h["lr"], max_precond_dim=4, precondition_frequency=4, normalize_grads=True, correct_bias=False)),
]
BF16_CASES = [("muon_bf16_original", "muon", {"lr": 0.02, "muon_output": True}, muon_factory(True))]


def gradient_sequence(shape, generator):
    grads = []
    for t in range(STEPS):
        g = torch.randn(shape, generator=generator)
        if t == 3:
            g = torch.zeros(shape)
        if t in (6, 7):
            g = -grads[t - 1] * 2.0
        grads.append(g)
    return grads


def run(cases, starts, grads):
    out = []
    for name, optimizer, hyper, factory in cases:
        params = {k: torch.nn.Parameter(v.clone()) for k, v in starts.items()}
        opt = factory([params["vector"], params["matrix"]], hyper)
        trajectory = {k: [] for k in params}
        for t in range(STEPS):
            for k, p in params.items():
                p.grad = grads[k][t].clone()
            opt.step()
            for k, p in params.items():
                trajectory[k].append(p.detach().flatten().tolist())
        out.append({"name": name, "optimizer": optimizer, "hyperparameters": hyper, "trajectory": trajectory})
    return out


def fixture(shapes, cases, bf16_cases, seed):
    generator = torch.Generator().manual_seed(seed)
    starts = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    grads = {k: gradient_sequence(s, generator) for k, s in shapes.items()}
    return {
        "generator": "generate_matrix_optimizers.py", "torch": torch.__version__, "steps": STEPS, "shapes": shapes,
        "start": {k: v.flatten().tolist() for k, v in starts.items()},
        "gradients": {k: [g.flatten().tolist() for g in gs] for k, gs in grads.items()},
        "cases": run(cases, starts, grads), "bf16_cases": run(bf16_cases, starts, grads),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, shapes, cases, bf16 in [
        ("matrix_optimizers.json", {"vector": [7], "matrix": [4, 4]}, CASES, BF16_CASES),
        ("matrix_optimizers_wide.json", {"vector": [7], "matrix": [3, 5]}, WIDE_CASES, []),
    ]:
        with open(os.path.join(here, name), "w") as f:
            json.dump(fixture(shapes, cases, bf16, 4321), f, indent=1)
        print(f"wrote {name}: {len(cases)} cases + {len(bf16)} bf16")


if __name__ == "__main__":
    main()
