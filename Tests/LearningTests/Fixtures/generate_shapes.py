#!/usr/bin/env python3
"""Reference trajectories on the parameter shapes of convolutional nets and transformers, for the
Swift tests: shapes.json. Muon, SOAP and DistributedShampoo run from the authors' code, the
teaching variants (soap-simple, shampoo-simple) from their restatements in the other generators;
everything in float64, with the other generators' conventions (see generate_matrix_optimizers.py
and generate_shampoo.py, whose factories and float64 restatements are imported from them):

    SOAP_REPO=... MUON_REPO=... SHAMPOO_REPO=... python Tests/LearningTests/Fixtures/generate_shapes.py

(checkouts of nikhilvyas/SOAP, KellerJordan/Muon and facebookresearch/optimizers OUTSIDE this
repository). shapes.json was written with PyTorch 2.15 from Muon 857d1ad, SOAP a1e5535 and
optimizers f6066066.

Two parameter sets, each with the role every tensor has in its model (the Swift side registers
the tensors with these roles):

- "net": a 3x3 convolution kernel [4,3,3,3] and a 1x1 one [6,4,1,1] (hidden weights), a
  batch-norm scale [4] (norm), an embedding [12,5] and an output layer [3,5] (head). Muon takes
  the kernels flattened to [out, in*kh*kw] and scales by the reference's
  max(1, size(-2)/size(-1))**0.5 of the kernel as it is (1 here; the flattened 6x4 matrix would
  give 1.5**0.5), AdamW the rest; Shampoo merges and blocks them (see CASES); SOAP-simple
  orthogonalises a kernel per kh x kw slice (torch.linalg.svd batches); Shampoo-simple views a
  kernel as out x in*kh*kw.
- "soap": kernels whose statistics are of full rank from the first step along every
  preconditioned dimension, per dimension and merged ([4,3,3,3] -> [4,9,3] and [9,1,3,3] ->
  [9,9] at max_precond_dim 9), and a norm scale (plain Adam): SOAP's eigenvectors of a
  rank-deficient statistic are whatever the LAPACK build returns (see generate_matrix_optimizers.py).
"""
import json
import os

import torch

import generate_matrix_optimizers as matrix
import generate_shampoo as shampoo

torch.set_default_dtype(torch.float64)
STEPS = 12

SETS = {
    "net": {
        "order": ["conv", "pointwise", "norm", "embedding", "head"],
        "shapes": {"conv": [4, 3, 3, 3], "pointwise": [6, 4, 1, 1], "norm": [4], "embedding": [12, 5], "head": [3, 5]},
        "roles": {"conv": "weight", "pointwise": "weight", "norm": "norm", "embedding": "embedding", "head": "head"},
    },
    "soap": {
        "order": ["conv", "stem", "norm"],
        "shapes": {"conv": [4, 3, 3, 3], "stem": [9, 1, 3, 3], "norm": [4]},
        "roles": {"conv": "weight", "stem": "weight", "norm": "norm"},
    },
}


def muon(roles, order):
    """SingleDeviceMuonWithAuxAdam split as the reference's recipe: hidden weights of rank >= 2 by
    Muon, embeddings, the head (unless muon_output), norms and biases by AdamW."""
    def make(params, h):
        matrix.muon_ref.zeropower_via_newtonschulz5 = matrix.newton_schulz_float64
        def muon_role(name, p):
            return p.ndim >= 2 and (roles[name] == "weight" or (h.get("muon_output", False) and roles[name] == "head"))
        named = list(zip(order, params))
        groups = [
            dict(params=[p for n, p in named if muon_role(n, p)], lr=h["lr"], momentum=h.get("momentum", 0.95),
                 weight_decay=h.get("weight_decay", 0), use_muon=True),
            dict(params=[p for n, p in named if not muon_role(n, p)], lr=h.get("aux_lr", 3e-4),
                 betas=(h.get("aux_beta1", 0.9), h.get("aux_beta2", 0.95)), eps=h.get("aux_eps", 1e-10),
                 weight_decay=h.get("aux_weight_decay", 0), use_muon=False),
        ]
        return matrix.muon_ref.SingleDeviceMuonWithAuxAdam(groups)
    return make


def soap(params, h):
    keys = {"betas": "betas", "weight_decay": "weight_decay", "precondition_frequency": "precondition_frequency",
            "max_precond_dim": "max_precond_dim", "merge_dims": "merge_dims"}
    args = {keys[k]: (tuple(v) if k == "betas" else v) for k, v in h.items() if k in keys}
    return matrix.SOAP64(params, lr=h["lr"], **args)


# (fixture name, optimizer key as trials name it, trial hyperparameters, factory(params, hyper, set))
CASES = {
    "net": [
        ("muon_conv_embedding", "muon", {"lr": 0.02}, "muon"),
        ("muon_output_decay", "muon",
         {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "muon_output": True, "aux_lr": 0.01, "aux_weight_decay": 0.05}, "muon"),
        # The kernel merged to [4, 27], the 1x1 kernel to a vector of 24, the head to 15, the
        # embedding [12, 5] kept; the norm scale one full factor.
        ("shampoo_conv_merged", "shampoo",
         {"lr": 0.03125, "max_preconditioner_dim": 32, "grafting": "adam", "epsilon": 1e-4}, shampoo.distributed),
        # Nothing merges: order-4 factors for the kernel (root 8), the embedding in 8x5 and 4x5 blocks.
        ("shampoo_conv_order4_blocks", "shampoo",
         {"lr": 0.03125, "max_preconditioner_dim": 8, "grafting": "adam", "weight_decay": 0.001, "epsilon": 1e-4},
         shampoo.distributed),
        ("shampoo_simple_conv", "shampoo-simple", {"lr": 0.05, "momentum": 0.9, "epsilon": 1e-3}, shampoo.simple),
        ("soap_simple_conv", "soap-simple", {"lr": 0.05, "beta1": 0.8},
         lambda p, h: matrix.SimpleSOAP(p, lr=h["lr"], b1=h["beta1"])),
    ],
    "soap": [
        ("soap_conv_per_dimension", "soap", {"lr": 0.01, "precondition_frequency": 3}, soap),
        ("soap_conv_merge_dims", "soap", {"lr": 0.01, "precondition_frequency": 3, "merge_dims": True, "max_precond_dim": 9}, soap),
        # The kernels' first dimension (4, 9) stays unrotated.
        ("soap_conv_max_dim", "soap", {"lr": 0.02, "betas": [0.9, 0.99], "weight_decay": 0.1, "precondition_frequency": 2,
                                       "max_precond_dim": 3}, soap),
    ],
}


def run(spec, cases, starts, grads):
    out = []
    for name, optimizer, hyper, factory in cases:
        if factory == "muon":
            factory = muon(spec["roles"], spec["order"])
        params = {k: torch.nn.Parameter(starts[k].clone()) for k in spec["order"]}
        opt = factory([params[k] for k in spec["order"]], hyper)
        trajectory = {k: [] for k in spec["order"]}
        for t in range(STEPS):
            for k in spec["order"]:
                params[k].grad = grads[k][t].clone()
            opt.step()
            for k in spec["order"]:
                trajectory[k].append(params[k].detach().flatten().tolist())
        out.append({"name": name, "optimizer": optimizer, "hyperparameters": hyper, "trajectory": trajectory})
    return out


def main():
    fixture = {"generator": "generate_shapes.py", "torch": torch.__version__, "steps": STEPS, "sets": {}}
    for set_name, spec in SETS.items():
        generator = torch.Generator().manual_seed(2468)
        starts = {k: torch.randn(spec["shapes"][k], generator=generator) for k in spec["order"]}
        grads = {k: shampoo.gradient_sequence(spec["shapes"][k], generator) for k in spec["order"]}
        fixture["sets"][set_name] = {
            "steps": STEPS,
            "parameter_order": spec["order"],
            "roles": spec["roles"],
            "shapes": spec["shapes"],
            "start": {k: v.flatten().tolist() for k, v in starts.items()},
            "gradients": {k: [g.flatten().tolist() for g in gs] for k, gs in grads.items()},
            "cases": run(spec, CASES[set_name], starts, grads),
        }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shapes.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}: " + ", ".join(f"{k} {len(v)} cases" for k, v in CASES.items()))


if __name__ == "__main__":
    main()
