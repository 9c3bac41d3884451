"""Benchmark: the package's AAE training step against a reference loop written the way common tutorials write it.

Run ``python -m aae_tutorial.bench --out book/results/bench_cpu.json`` (or ``--device cuda``). Both loops train the
paper's 784-1000-1000-8 AAE (chapter 3) with batch 100 and three Adam optimisers, in one process on one device; the
package's step is also timed for chapter 6's categorical AAE, and both as batched ensembles of 9 models (a
chapter's 3 seeds x 3 settings) trained as one. The report gives samples/s, s/epoch and the speed-up of
each variant of the package step over the reference, and (unless ``--check-epochs 0``) the test metrics after
``--check-epochs`` epochs of each, to show that the speed costs no accuracy. Precision, compilation and CUDA graphs
are applied from outside the model, through :mod:`aae_tutorial.engine`, exactly as training applies them.
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

from . import categorical, data, engine, metrics, priors, tables
from .aae import AAE
from .categorical import CategoricalAAE
from .train import describe_device
from .steps import reconstruction_loss
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


MODELS = {"aae": "chapter 3's AAE, 784-{h}-{h}-8", "categorical": "chapter 6's categorical AAE, 784-{h}-{h}-(10+10)"}


def make_package_model(kind: str, device: torch.device, hidden: int, compile_mode: str | None = None) -> torch.nn.Module:
    """The package's model of chapter 3 (``aae``) or 6 (``categorical``); ``compile_mode`` compiles its networks."""
    if kind == "aae":
        model, names = AAE(priors.Gaussian(8, 5.0, device=device), (hidden, hidden)), ("encoder", "decoder", "discriminator")
    else:
        model, names = CategoricalAAE(10, 10, (hidden, hidden)), ("trunk", "decoder", "d_y", "d_z")
    model.to(device)
    if compile_mode:
        for name in names:
            setattr(model, name, torch.compile(getattr(model, name), mode=compile_mode, dynamic=False))
    return model


def package_step(kind: str, model: torch.nn.Module, x: torch.Tensor, members: int = 1) -> engine.Step:
    """The training step a chapter runs: the AAE's two phases, or chapter 6's three phases, each member drawing its
    labelled minibatches from the first 100 images (labelled 0-9 in turn)."""
    if kind == "aae":
        return lambda idx: model.train_step(x[idx])
    labelled = data.LabelledSet(x[:100], torch.arange(100, device=x.device) % 10)
    return categorical.semisupervised_step(model, x, data.LabelledSet.stack([labelled] * members))


def time_package(kind: str, device: torch.device, steps: int, hidden: int, x: torch.Tensor,
                 precision: torch.dtype | None, compile_mode: str | None = None, graphs: bool = False,
                 members: int = 1) -> float:
    """Samples per second (all members together) of a package model's step, run by the engine's
    :class:`~aae_tutorial.engine.StepRunner` on device-resident data with the losses kept on the device. With
    ``members > 1`` that many models train as one batched ensemble (:func:`aae_tutorial.engine.stack`), each on its
    own minibatch of 100."""
    models = [make_package_model(kind, device, hidden, compile_mode) for _ in range(members)]
    model = engine.stack(models) if members > 1 else models[0]
    step = engine.autocast(package_step(kind, model, x, members), device, precision)
    runner = engine.StepRunner(step, model, device, kind, graphs=graphs)
    batches = zip(*(minibatches(len(x), 100, device) for _ in range(members)))
    for _ in range(engine.WARMUP_STEPS + 2 + (5 if compile_mode else 0)):  # warm-up, capture, compilation
        runner(torch.cat(next(batches)))
    runner.epoch_means(1)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        runner(torch.cat(next(batches)))
    runner.epoch_means(steps)  # the one read of the losses, as in training
    return steps * 100 * members / (time.perf_counter() - start)


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
        model = make_package_model("aae", device, hidden)
        step = engine.autocast(package_step("aae", model, mnist.x_train), device, precision)
        runner = engine.StepRunner(step, model, device, name, graphs=False)
        for _ in range(epochs):
            for idx in minibatches(len(mnist.x_train), 100, device):
                runner(idx)
        with torch.no_grad():
            bce = reconstruction_loss(model.decoder(model.encoder(x_test)).float(), x_test).item()
        torch.manual_seed(123)
        out[name] = {"test_recon_bce": bce, "mmd_to_prior": metrics.mmd(model.encode(x_test[:2000]), prior.sample(2000))}
    for v in out.values():
        v["mmd_noise_floor"] = floor
    return {k: {m: round(v, 5) for m, v in d.items()} for k, d in out.items()}


#: Members of the batched-ensemble rows: a chapter's 3 seeds x 3 settings.
ENSEMBLE = 9


def variants(device: torch.device, compile: bool) -> dict[str, tuple[torch.dtype | None, str | None, bool, int] | str]:
    """The package variants: name -> (autocast dtype, torch.compile mode, whole-step graph, ensemble members), or
    the reason this device cannot run it (reported as unavailable, never dropped)."""
    bf16 = torch.bfloat16 if engine.bf16_supported(device) else None
    no_bf16 = f"no bf16 matrix units on this {device.type}"
    no_cuda = "CUDA graphs need a CUDA GPU"
    cuda = device.type == "cuda"
    out = {"fp32": (None, None, False, 1), "bf16 autocast": (bf16, None, False, 1) if bf16 else no_bf16}
    if compile:
        out[f"{'bf16 autocast' if bf16 else 'fp32'} + torch.compile"] = (bf16, "default", False, 1)
    out["fp32 + whole-step CUDA graph"] = (None, None, True, 1) if cuda else no_cuda
    if cuda and bf16:
        out["bf16 autocast + whole-step CUDA graph"] = (bf16, None, True, 1)
    out[f"fp32, batched ensemble of {ENSEMBLE}"] = (None, None, False, ENSEMBLE)
    out[f"fp32 + whole-step CUDA graph, batched ensemble of {ENSEMBLE}"] = (None, None, True, ENSEMBLE) if cuda else no_cuda
    return out


def run(device: str = "cpu", steps: int = 50, hidden: int = 1000, compile: bool = True, check_epochs: int = 1,
        log: Callable[[str], None] = print) -> dict:
    dev = torch.device(device)
    root = data.ensure_mnist()
    mnist = data.load_mnist(dev, root)
    report: dict = {
        "experiment": "bench_" + dev.type, "device": describe_device(dev), "torch": torch.__version__,
        "python": platform.python_version(), "cpu_threads": torch.get_num_threads(), "batch_size": 100,
        "model": f"784-{hidden}-{hidden}-8 encoder/decoder, 8-{hidden}-{hidden}-1 discriminator", "steps": steps,
        "date": time.strftime("%Y-%m-%d"),
    }
    ref_sps = time_reference(dev, steps, hidden, root)
    log(f"reference loop: {ref_sps:,.0f} samples/s")
    rows = [{"model": "aae", "variant": "reference (DataLoader + per-batch .to)", "members": 1,
             "samples_per_s": round(ref_sps, 1),
             "s_per_epoch": round(60_000 / ref_sps, 2), "speedup": 1.0}]
    for kind in MODELS:
        for name, spec in variants(dev, compile).items():
            label = f"package {name}"
            if isinstance(spec, str):
                rows.append({"model": kind, "variant": label, "unavailable": spec})
                continue
            precision, compile_mode, graphs, members = spec
            try:
                sps = time_package(kind, dev, steps, hidden, mnist.x_train, precision, compile_mode, graphs, members)
            except Exception as e:  # noqa: BLE001 - e.g. no working compiler: report, go on
                log(f"{kind}, {label}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
                rows.append({"model": kind, "variant": label, "unavailable": type(e).__name__})
                continue
            row = {"model": kind, "variant": label, "members": members, "samples_per_s": round(sps, 1),
                   "s_per_epoch": round(60_000 * members / sps, 2)}
            if kind == "aae":
                row["speedup"] = round(sps / ref_sps, 2)
            rows.append(row)
            log(f"{kind}, {label}: {sps:,.0f} samples/s" + (f", {sps / ref_sps:.2f}x" if "speedup" in row else ""))
    report["models"] = {k: v.format(h=hidden) for k, v in MODELS.items()}
    report["rows"] = rows
    if check_epochs:
        precisions = {"package fp32": None, **({"package bf16 autocast": torch.bfloat16} if engine.bf16_supported(dev) else {})}
        report["equality_check"] = {"epochs": check_epochs,
                                    **check_equal(dev, hidden, check_epochs, mnist, root, precisions)}
        log(json.dumps(report["equality_check"], indent=1))
    return report


def markdown(report: dict) -> str:
    """The report as Markdown: the speed table (with the run's settings in a note) and the equality check."""
    def speed(r: dict) -> list[str]:
        members = r.get("members", 1)
        sps = f"{r['samples_per_s']:,.0f}" + (f" ({r['samples_per_s'] / members:,.0f} per model)" if members > 1 else "")
        return [sps, f"{r['s_per_epoch']:.1f}", f"{r['speedup']:.2f}×" if "speedup" in r else "–"]

    rows = [[r["model"], r["variant"], f"unavailable ({r['unavailable']})"] if "unavailable" in r else
            [r["model"], r["variant"], *speed(r)] for r in report["rows"]]
    models = "; ".join(f"{k} = {v}" for k, v in report["models"].items())
    note = (f"{report['device']} · torch {report['torch']} · Python {report['python']} · {report['cpu_threads']} CPU "
            f"threads · batch {report['batch_size']} · {report['steps']} timed steps per variant · {report['date']}. "
            f"Models: {models}. Speed-ups are over the reference loop of the same model, device and run. An "
            f"ensemble's samples/s counts all its members, and its s/epoch is one epoch of every member.")
    out = tables.markdown(["model", "loop", "samples/s", "s/epoch (60k)", "speed-up"], rows, note=note)
    if check := report.get("equality_check"):
        rows = [[k, f"{v['test_recon_bce']:.2f}", f"{v['mmd_to_prior']:.4f}", f"{v['mmd_noise_floor']:.4f}"]
                for k, v in check.items() if k != "epochs"]
        header = [f"after {check['epochs']} epoch(s)", "test reconstruction BCE", "MMD² to prior", "noise floor"]
        out += "\n\n" + tables.markdown(header, rows)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=50, help="timed minibatches per variant")
    p.add_argument("--hidden", type=int, default=1000, help="hidden units (1000 is the paper's)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
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
