"""Benchmark: the package's AAE training step against a reference loop written the way common tutorials write it.

Run ``python -m aae_tutorial.bench --out book/results/bench_cpu.json`` (or ``--device cuda``). Both loops train the
paper's 784-1000-1000-8 AAE with batch 100 and three Adam optimisers, in one process on one device. The report gives
samples/s, s/epoch and the speed-up of each variant of the package step over the reference, and (unless
``--no-check``) the test metrics after ``--check-epochs`` epochs of each, to show that the speed costs no accuracy.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import data, metrics, nets, priors
from .aae import AAE, autocast_dtype
from .mode import describe_device
from .train import minibatches, seed_everything

TINY = 1e-8


class ReferenceAAE:
    """The tutorial-style loop: a DataLoader over torchvision's MNIST with ToTensor, per-batch ``.to(device)``,
    sigmoid outputs with hand-written log losses, a discriminator phase that backpropagates into the encoder, and a
    ``.item()`` per step for logging."""

    def __init__(self, device: torch.device, z_dim: int = 8, hidden: int = 1000, std: float = 5.0) -> None:
        self.device, self.z_dim, self.std = device, z_dim, std
        self.Q = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, z_dim)).to(device)
        self.P = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, 784), nn.Sigmoid()).to(device)
        self.D = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, 1), nn.Sigmoid()).to(device)
        self.opt_ae = torch.optim.Adam([*self.Q.parameters(), *self.P.parameters()], lr=1e-3)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=1e-3, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(self.Q.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def loader(self, root: Path, batch_size: int = 100) -> torch.utils.data.DataLoader:
        from torchvision import datasets, transforms

        ds = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True)

    def step(self, x: torch.Tensor) -> float:
        x = x.view(-1, 784).to(self.device)
        for opt in (self.opt_ae, self.opt_d, self.opt_g):
            opt.zero_grad()
        recon = F.binary_cross_entropy(self.P(self.Q(x)), x, reduction="sum") / len(x)
        recon.backward()
        self.opt_ae.step()
        self.opt_ae.zero_grad()
        z_real = torch.randn(len(x), self.z_dim, device=self.device) * self.std
        z_fake = self.Q(x)
        d_loss = -torch.mean(torch.log(self.D(z_real) + TINY) + torch.log(1 - self.D(z_fake) + TINY))
        d_loss.backward()
        self.opt_d.step()
        self.opt_d.zero_grad()
        self.opt_g.zero_grad()
        g_loss = -torch.mean(torch.log(self.D(self.Q(x)) + TINY))
        g_loss.backward()
        self.opt_g.step()
        self.opt_g.zero_grad()
        return recon.item() + d_loss.item() + g_loss.item()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.Q(x)

    @torch.no_grad()
    def recon_loss(self, x: torch.Tensor) -> float:
        return (F.binary_cross_entropy(self.P(self.Q(x)), x, reduction="sum") / len(x)).item()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_reference(device: torch.device, steps: int, hidden: int, root: Path) -> float:
    """Samples per second of the reference loop over ``steps`` minibatches (after 5 warm-up steps)."""
    ref = ReferenceAAE(device, hidden=hidden)
    batches = iter(ref.loader(root))
    for _ in range(5):
        ref.step(next(batches)[0])
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        ref.step(next(batches)[0])
    _sync(device)
    return steps * 100 / (time.perf_counter() - start)


def make_package_model(device: torch.device, hidden: int, precision: torch.dtype | None,
                       compile_mode: str | None = None) -> AAE:
    """The package's AAE; ``compile_mode`` ("default", or "reduce-overhead" for CUDA graphs) compiles its networks."""
    model = AAE(priors.Gaussian(8, 5.0, device=device), (hidden, hidden), precision=precision).to(device)
    if compile_mode:
        for name in ("encoder", "decoder", "discriminator"):
            setattr(model, name, torch.compile(getattr(model, name), mode=compile_mode, dynamic=False))
    return model


def time_package(device: torch.device, steps: int, hidden: int, x: torch.Tensor, precision: torch.dtype | None,
                 compile_mode: str | None = None) -> float:
    """Samples per second of ``AAE.train_step`` on device-resident data, losses kept on the device."""
    model = make_package_model(device, hidden, precision, compile_mode)
    batches = minibatches(len(x), 100, device)
    for _ in range(10 if compile_mode else 5):
        model.train_step(x[next(batches)])
    _sync(device)
    start = time.perf_counter()
    total = torch.zeros((), device=device)
    for _ in range(steps):
        losses = model.train_step(x[next(batches)])
        total += losses["reconstruction"].detach()
    _sync(device)
    return steps * 100 / (time.perf_counter() - start)


def check_equal(device: torch.device, hidden: int, epochs: int, mnist: data.MNIST, root: Path,
                precisions: dict[str, torch.dtype | None]) -> dict[str, dict[str, float]]:
    """Train the reference and each package variant for ``epochs`` and compare test metrics: reconstruction BCE and
    the MMD between test codes and prior samples (a noise floor: MMD between two prior samples)."""
    out: dict[str, dict[str, float]] = {}
    x_test = mnist.x_test
    prior = priors.Gaussian(8, 5.0, device=device)
    torch.manual_seed(123)
    floor = metrics.mmd(prior.sample(2000), prior.sample(2000))
    seed_everything(0)
    ref = ReferenceAAE(device, hidden=hidden)
    for _ in range(epochs):
        for xb, _ in ref.loader(root):
            ref.step(xb)
    torch.manual_seed(123)
    out["reference"] = {"test_recon_bce": ref.recon_loss(x_test),
                        "mmd_to_prior": metrics.mmd(ref.encode(x_test[:2000]), prior.sample(2000))}
    for name, precision in precisions.items():
        seed_everything(0)
        model = make_package_model(device, hidden, precision)
        for _ in range(epochs):
            for idx in minibatches(len(mnist.x_train), 100, device):
                model.train_step(mnist.x_train[idx])
        with torch.no_grad():
            bce = nets.reconstruction_loss(model.decoder(model.encoder(x_test)).float(), x_test).item()
        torch.manual_seed(123)
        out[name] = {"test_recon_bce": bce, "mmd_to_prior": metrics.mmd(model.encode(x_test[:2000]), prior.sample(2000))}
    for v in out.values():
        v["mmd_noise_floor"] = floor
    return {k: {m: round(v, 5) for m, v in d.items()} for k, d in out.items()}


def run(device: str = "cpu", steps: int = 50, hidden: int = 1000, compile: bool = True, check_epochs: int = 1,
        log: Callable[[str], None] = print) -> dict:
    dev = torch.device(device)
    root = data.ensure_mnist()
    mnist = data.load_mnist(dev, root)
    bf16_ok = dev.type == "cpu" or autocast_dtype(dev) is not None  # CPUs: bf16 matmul units (AMX) are measured
    fast = torch.bfloat16 if bf16_ok else None
    prefix = "package bf16 autocast" if bf16_ok else "package fp32"
    variants: dict[str, tuple[torch.dtype | None, str | None]] = {"package fp32": (None, None)}
    if bf16_ok:
        variants["package bf16 autocast"] = (torch.bfloat16, None)
    if compile:
        variants[f"{prefix} + torch.compile"] = (fast, "default")
        if dev.type == "cuda":
            variants[f"{prefix} + torch.compile + CUDA graphs"] = (fast, "reduce-overhead")
    report: dict = {
        "experiment": "bench_" + dev.type, "device": describe_device(dev), "torch": torch.__version__,
        "python": platform.python_version(), "cpu_threads": torch.get_num_threads(), "batch_size": 100,
        "model": f"784-{hidden}-{hidden}-8 encoder/decoder, 8-{hidden}-{hidden}-1 discriminator", "steps": steps,
        "date": time.strftime("%Y-%m-%d"),
    }
    ref_sps = time_reference(dev, steps, hidden, root)
    log(f"reference loop: {ref_sps:,.0f} samples/s")
    rows = [{"variant": "reference (DataLoader + per-batch .to)", "samples_per_s": round(ref_sps, 1),
             "s_per_epoch": round(60_000 / ref_sps, 2), "speedup": 1.0}]
    for name, (precision, compile_mode) in variants.items():
        try:
            sps = time_package(dev, steps, hidden, mnist.x_train, precision, compile_mode)
        except Exception as e:  # noqa: BLE001 - e.g. no working compiler, or CUDA graphs refused: report, go on
            log(f"{name}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
            rows.append({"variant": name, "unavailable": f"{type(e).__name__}"})
            continue
        rows.append({"variant": name, "samples_per_s": round(sps, 1), "s_per_epoch": round(60_000 / sps, 2),
                     "speedup": round(sps / ref_sps, 2)})
        log(f"{name}: {sps:,.0f} samples/s, {sps / ref_sps:.2f}x")
    report["rows"] = rows
    if check_epochs:
        precisions = {"package fp32": None, **({"package bf16 autocast": torch.bfloat16} if bf16_ok else {})}
        report["equality_check"] = {"epochs": check_epochs,
                                    **check_equal(dev, hidden, check_epochs, mnist, root, precisions)}
        log(json.dumps(report["equality_check"], indent=1))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=50, help="timed minibatches per variant")
    p.add_argument("--hidden", type=int, default=1000, help="hidden units (1000 is the paper's)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile (and CUDA graph) variants")
    p.add_argument("--check-epochs", type=int, default=1, help="epochs for the equality check (0 skips it)")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    args = p.parse_args(argv)
    report = run(args.device, args.steps, args.hidden, not args.no_compile, args.check_epochs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
