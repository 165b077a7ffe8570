"""PyTorch's optimizers stepping the MLP 784-256-128-10 and VAE 784-400-20 parameter shapes with
fixed random gradients: the side-by-side half of `engine-benchmark --optimizers`. Prints one JSON
object per optimizer and model: median and mean milliseconds per `step()`."""
import argparse, json, statistics, time

import torch

SHAPES = {
    "mlp": [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)],
    "vae": [(400, 784), (400,), (20, 400), (20,), (20, 400), (20,), (400, 20), (400,), (784, 400), (784,)],
}


def optimizers(params):
    """Name → optimizer over `params` (the hidden 2-D weights for Muon, as its recipe)."""
    made = {
        "AdamW": lambda: torch.optim.AdamW(params, lr=1e-3),
        "Adam": lambda: torch.optim.Adam(params, lr=1e-3),
        "SGD": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        "RMSprop": lambda: torch.optim.RMSprop(params, lr=1e-3),
        "Adagrad": lambda: torch.optim.Adagrad(params, lr=1e-3),
        "NAdam": lambda: torch.optim.NAdam(params, lr=1e-3),
    }
    if hasattr(torch.optim, "Adafactor"):
        made["Adafactor"] = lambda: torch.optim.Adafactor(params, lr=1e-2)
    if hasattr(torch.optim, "Muon"):
        hidden = [p for p in params[:-2] if p.ndim == 2]
        made["Muon"] = lambda: torch.optim.Muon(hidden, lr=0.02)
    return made


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    for model, shapes in SHAPES.items():
        params = [torch.nn.Parameter(torch.randn(s) * 0.05) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 0.01
        for name, make in optimizers(params).items():
            opt = make()
            for _ in range(3):
                opt.step()
            times = []
            started = time.perf_counter()
            while len(times) < args.steps or (len(times) < 5 * args.steps and time.perf_counter() - started < 0.5):
                t0 = time.perf_counter()
                opt.step()
                times.append(time.perf_counter() - t0)
            print(json.dumps({"optimizer": name, "model": model, "torch": torch.__version__,
                              "median_ms": statistics.median(times) * 1e3, "mean_ms": statistics.fmean(times) * 1e3}), flush=True)


if __name__ == "__main__":
    main()
