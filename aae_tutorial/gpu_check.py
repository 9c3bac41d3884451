"""The GPU self-check: every chapter's training step, captured whole as a CUDA graph, against the same step run eagerly.

    python -m aae_tutorial.gpu_check            # on a CUDA GPU, paper widths: well under a minute
    python -m aae_tutorial.gpu_check --dry      # anywhere: small widths, both runs eager (checks the check itself)

For every kind of step the chapters train, single and as batched ensembles of 3 and 9 (:func:`aae_tutorial.engine.stack`),
the same models (same seed, same minibatches) take ``STEPS`` steps eagerly and ``STEPS`` steps through
:class:`~aae_tutorial.engine.StepRunner` with CUDA graphs. The graphed run must really capture (no fallback) and end
at the same losses and weights, up to ``TOLERANCE`` (relative): kernels captured in a graph may order a reduction
differently, and the random numbers drawn inside a graph come from the same generator, so the runs agree closely but
need not agree bit for bit. Then each graphed step is timed, single and as the ensemble: the step times that
``python -m aae_tutorial.full_course --plan`` projects the full-mode course from. Last, a probe: a step that reads a
value back to the host must run eagerly with one warning, and a later run must still capture.

The record goes to ``book/results/gpu_check_<gpu>.json`` (``--out`` elsewhere); the exit code is 1 if any case
fails. A GPU loan starts here too: ``python -m aae_tutorial.run --budget MINUTES`` calls :func:`loan`, which runs this
check and then trains what the plan projects to fit, headline experiments first.
"""
from __future__ import annotations

import argparse
import math
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import categorical, engine, experiments, kinds, nets, plan, recipes, steps, tables
from . import run as runner
from .data import LabelledSet, load_mnist
from .experiments import get
from .files import check_writable
from .kinds import build_model, prior_named
from .train import describe_device
from .results import write_json

#: Steps per run compared, and steps timed; the largest relative difference allowed between graphed and eager.
STEPS, TIMED_STEPS, TOLERANCE = 12, 50, 1e-3
#: Members of the ensemble each step is also checked and timed as.
MEMBERS = (3, 9)
RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"


class Inputs:
    """What the steps read, on one device: images, labels, labels with a third "no label" (chapter 4) and, per
    member, a labelled set of 100 (chapters 6 and 8)."""

    def __init__(self, device: torch.device, n: int = 2000) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 784, generator=g).to(device)
        self.y = torch.randint(10, (n,), generator=g).to(device)
        self.partly = self.y.clone()
        self.partly[::3] = 10
        self.labelled = [LabelledSet(self.x[100 * m: 100 * (m + 1)], self.y[100 * m: 100 * (m + 1)])
                         for m in range(max(MEMBERS))]


class AutoencoderPair(nn.Module):
    """Chapter 1's autoencoder as the chapter builds it: an encoder and a decoder with one optimiser."""

    def __init__(self, hidden: tuple[int, ...], kind: str) -> None:
        super().__init__()
        self.kind, self.encoder, self.decoder = kind, nets.encoder(2, hidden), nets.decoder(2, hidden)
        self.opt = recipes.adam(self.parameters(), lr=1e-3)

    def train_step(self, x: Tensor) -> dict[str, Tensor]:
        loss = steps.reconstruction_loss(self.decoder(self.encoder(x)), x, self.kind)
        steps.update(self.opt, loss)
        return {self.kind: loss}


Build = Callable[[tuple[int, ...], torch.device], nn.Module]
MakeStep = Callable[[nn.Module, Inputs, LabelledSet], engine.Step]


def _images(model: nn.Module, data: Inputs, _: LabelledSet) -> engine.Step:
    return lambda idx: model.train_step(data.x[idx])


def _built(name: str) -> Build:
    """The model of the catalogue's experiment ``name`` (:func:`aae_tutorial.kinds.build_model`), at the width asked
    for."""
    return lambda h, d: build_model(get(name), h, d)


#: Every kind of step the chapters train: (chapters, model builder, step builder), each model with the recipe and
#: settings of an experiment of the catalogue (:mod:`aae_tutorial.experiments`). The plan refers to these names.
CASES: dict[str, tuple[str, Build, MakeStep]] = {
    "autoencoder": ("1", lambda h, d: AutoencoderPair(h, get("autoencoder_bce").settings["loss"]), _images),
    "vae": ("2, 3", _built("prior_match_gaussian_vae"), _images),
    "vae-mixture": ("3", _built("prior_match_mixture_vae"), _images),
    "aae": ("3", _built("parzen_loglik"), _images),
    "aae-reseeded": ("3", _built("prior_match_gaussian_aae"), _images),
    "aae-paper-recipe": ("3", _built("prior_match_gaussian_aae_paper_recipe"), _images),
    "aae-mixture": ("3", _built("prior_match_mixture_aae"), _images),
    "aae-swiss-roll": ("3", _built("prior_match_swiss-roll_aae"), _images),
    "label-conditioned": ("4", _built("label_prior_mixture-10k-labels"),
                          lambda m, data, _: lambda idx: m.train_step(data.x[idx], labels=data.partly[idx])),
    "supervised": ("5", _built("content_follows_label_05_supervised"),
                   lambda m, data, _: lambda idx: m.train_step(data.x[idx], classes=data.y[idx])),
    "judge": ("5, 6", lambda h, d: build_model(get("digit_judge"), get("digit_judge").full.hidden, d),
              lambda m, data, _: lambda idx: m.train_step(data.x[idx], data.y[idx])),
    "semi-supervised": ("6", _built("semisupervised_100_labels"),
                        lambda m, data, s: categorical.semisupervised_step(m, data.x, s)),
    "semi-supervised-paper-recipe": ("6", _built("semisupervised_100_labels_paper_recipe"),
                                     lambda m, data, s: categorical.semisupervised_step(m, data.x, s)),
    "labels-only": ("6", _built("semisupervised_100_labels_labels_only"),
                    lambda m, data, s: categorical.labels_only_step(m, s)),
    "clustering": ("7", _built("clustering_k16"), _images),
    "clustering-paper-recipe": ("7", _built("clustering_k16_paper_recipe"), _images),
    "cluster-heads": ("8", _built("dimred_2d_unsupervised"), _images),
    "cluster-heads-labelled": ("8", _built("dimred_2d_100_labels"),
                               lambda m, data, s: categorical.semisupervised_step(m, data.x, s)),
}


#: Cases run with chapter 3's per-epoch callback between steps: it forks the random state, reseeds it and draws prior
#: samples (:func:`aae_tutorial.metrics.prior_match_tracker`), which a graph's random offsets must survive.
RESEEDED = {"aae-reseeded"}


def reseed_and_draw(device: torch.device) -> None:
    """What chapter 3's MMD callback does to the random state between epochs, here between steps."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(12345)
        prior_named("gaussian", device).sample(2000)


def _build(case: str, members: int, hidden: tuple[int, ...], device: torch.device,
           data: Inputs) -> tuple[nn.Module, engine.Step]:
    _, build, make_step = CASES[case]
    torch.manual_seed(1)
    models = [build(hidden, device).to(device) for _ in range(members)]
    model = models[0] if members == 1 else engine.stack(models)
    return model.train(), make_step(model, data, LabelledSet.stack(data.labelled[:members]))


def _batches(members: int, data: Inputs, count: int) -> list[Tensor]:
    g = torch.Generator(device=data.x.device).manual_seed(2)
    return [torch.cat([torch.randperm(len(data.x), device=data.x.device, generator=g)[:100] for _ in range(members)])
            for _ in range(count)]


def _train(case: str, members: int, hidden: tuple[int, ...], device: torch.device, data: Inputs, graphs: bool,
           batches: list[Tensor]) -> tuple[nn.Module, list[dict[str, float]], engine.StepRunner, list[str]]:
    model, step = _build(case, members, hidden, device, data)
    torch.manual_seed(3)  # the same random numbers inside the steps, graphed or not
    runner = engine.StepRunner(step, model, device, case, graphs=graphs)
    losses = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for idx in batches:
            runner(idx)
            losses.append(runner.epoch_means(1))
            if case in RESEEDED:
                reseed_and_draw(device)
    fell_back = [str(w.message) for w in caught if "running eagerly" in str(w.message)]
    return model, losses, runner, fell_back


def relative_difference(a: list[dict[str, float]], b: list[dict[str, float]], model_a: nn.Module,
                        model_b: nn.Module) -> tuple[float, float]:
    """The largest relative difference between two runs' per-step losses, and between their final weights."""
    loss = max(abs(u[k] - v[k]) / (1e-6 + abs(u[k])) for u, v in zip(a, b) for k in u)
    weight = max(((p - q).abs().max() / (1e-6 + p.abs().max())).item()
                 for p, q in zip(model_a.state_dict().values(), model_b.state_dict().values()) if p.is_floating_point())
    return loss, weight


def _time_steps(runner: engine.StepRunner, batches: list[Tensor], device: torch.device) -> float:
    """Milliseconds per step of ``runner`` (already warmed up and captured)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for idx in batches:
        runner(idx)
    runner.epoch_means(len(batches))
    return 1000 * (time.perf_counter() - start) / len(batches)


def check_case(case: str, members: int, hidden: tuple[int, ...], device: torch.device, data: Inputs,
               graphs: bool, compared: int = STEPS, timed: int = TIMED_STEPS) -> dict:
    """Graphed vs eager for one case: did it capture, how close are the runs after ``compared`` steps, and the step
    times (over ``timed`` steps)."""
    batches = _batches(members, data, compared + timed)
    eager_model, eager_losses, eager_runner, _ = _train(case, members, hidden, device, data, False, batches[:compared])
    model, losses, runner, fell_back = _train(case, members, hidden, device, data, graphs, batches[:compared])
    loss_diff, weight_diff = relative_difference(eager_losses, losses, eager_model, model)
    loss_diff, weight_diff = (d if math.isfinite(d) else 1e300 for d in (loss_diff, weight_diff))  # JSON-safe
    problems = [f"no graph: {fell_back[0] if fell_back else 'nothing was captured'}"] if graphs and (
        fell_back or runner.graph is None) else []
    if not (loss_diff <= TOLERANCE and weight_diff <= TOLERANCE):
        problems.append(f"graphed != eager: relative loss difference {loss_diff:.1e}, weights {weight_diff:.1e}")
    return {"chapters": CASES[case][0], "members": members, "captured": runner.graph is not None,
            "relative_loss_difference": loss_diff, "relative_weight_difference": weight_diff,
            "step_ms": round(_time_steps(runner, batches[compared:], device), 4),
            "eager_step_ms": round(_time_steps(eager_runner, batches[compared:compared + 10], device), 4),
            "steps_compared": compared, "steps_timed": timed,
            "ok": not problems, "problems": problems}


def fallback_probe(hidden: tuple[int, ...], device: torch.device, data: Inputs) -> dict:
    """A step that reads a loss back to the host: it must run eagerly with one warning, leave the default stream
    current, and a later run must still capture (or say why it cannot)."""
    model, step = _build("aae", 1, hidden, device, data)

    def reads_back(idx: Tensor) -> dict[str, Tensor]:
        out = step(idx)
        bool(out["reconstruction"] > 0)  # a host read: no graph can capture it
        return out

    runner = engine.StepRunner(reads_back, model, device, "probe", graphs=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for idx in _batches(1, data, 6):
            runner(idx)
    messages = [str(w.message) for w in caught if "running eagerly" in str(w.message)]
    later = check_case("aae", 1, hidden, device, data, graphs=True)
    ok = not runner.graphs and len(messages) == 1 and torch.cuda.current_stream() == torch.cuda.default_stream() \
        and later["ok"]
    return {"fell_back": not runner.graphs, "warnings": messages, "later_run_captured": later["captured"], "ok": ok}


def gpu_name(device: torch.device) -> str:
    """A file-name slug of the device: ``nvidia-h200``, or ``cpu``."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run(dry: bool = False, out: Path | None = None) -> dict:
    """Check every case, single and as an ensemble; write and return the record."""
    device = torch.device("cpu" if dry or not torch.cuda.is_available() else "cuda")
    graphs = device.type == "cuda"
    hidden = nets.PAPER_HIDDEN if graphs else (16, 16)
    data = Inputs(device)
    start = time.perf_counter()
    cases = {}
    for case in tqdm(CASES, desc="gpu_check", unit="case"):
        for members in (1, *MEMBERS):
            result = check_case(case, members, hidden, device, data, graphs, *((STEPS, TIMED_STEPS) if graphs
                                                                               else (4, 2)))
            cases[f"{case} x{members}"] = {"case": case, **result}
            tqdm.write(f"{'ok  ' if result['ok'] else 'FAIL'} {case} x{members}: {result['step_ms']:.2f} ms/step "
                       f"graphed, {result['eager_step_ms']:.2f} eager; {'; '.join(result['problems'])}")
    probe = fallback_probe(hidden, device, data) if graphs else None
    failures = [name for name, c in cases.items() if not c["ok"]] + ([] if probe is None or probe["ok"] else ["probe"])
    record = {"experiment": f"gpu_check_{gpu_name(device)}", "device": describe_device(device),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "dry": not graphs,
              "hidden": list(hidden), "batch_size_per_member": 100, "tolerance": TOLERANCE, "cases": cases, "fallback_probe": probe,
              "failures": failures, "wall_time_s": round(time.perf_counter() - start, 1)}
    write_json(out or RESULTS / f"gpu_check_{gpu_name(device)}.json", record)
    return record


def markdown(record: dict) -> str:
    """A gpu_check record as a Markdown table: per case and ensemble size, captured or not, the differences from
    eager and the step times."""
    rows = [[c["case"], c["chapters"], c["members"], "yes" if c["captured"] else "**no**",
             f"{c['relative_loss_difference']:.1e}", f"{c['relative_weight_difference']:.1e}",
             f"{c['step_ms']:.2f} ms", f"{c['eager_step_ms']:.2f} ms", "ok" if c["ok"] else "**FAIL**"]
            for c in record["cases"].values()]
    header = ["step", "chapters", "members", "captured", "loss diff.", "weight diff.", "graphed", "eager", "check"]
    probe = record["fallback_probe"]
    note = (f"{record['device']}, torch {record['torch']}, {record['date']}; paper widths {record['hidden']}, "
            f"{record['batch_size_per_member']} images per member and step; differences are relative, after "
            f"{STEPS} steps (allowed: {record['tolerance']:g}). Fallback probe: "
            + ("not run (no CUDA)" if probe is None else "ok" if probe["ok"] else f"**FAIL** ({probe})")
            + f". {len(record['failures'])} failures, {record['wall_time_s']:.0f} s in all.")
    return tables.markdown(header, rows, "GPU self-check: captured vs eager", note)


#: The order a loan trains in: the paper's headline tables first (sections 5, 6 and 3), then the rest of the book.
HEADLINE_FIRST = ("semisupervised_100_labels", "semisupervised_1000_labels", "semisupervised_all_labels",
                  "clustering_k16", "clustering_k30", "parzen_loglik")


def loan(budget_min: float, out: Path, *, device: torch.device | str | None = None, dry: bool = False,
         gpu: str = "H200") -> dict:
    """Use a GPU loan of ``budget_min`` minutes: the self-check first, then the experiments the run command can train,
    headline ones first, as many as the plan projects to fit in the time left (2 minutes kept for packing up). Every
    record, the self-check and a log go into ``out``, ready to tar. ``dry`` checks eagerly at small width and trains
    each chosen experiment for one epoch at width 16, on any device: what the tests run."""
    out = check_writable(Path(out) / "loan.json", "the loan's folder").parent
    start, log = time.monotonic(), out / "loan.log"

    def note(line: str) -> None:
        print(line, flush=True)
        with open(log, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    check = run(dry, out / "gpu_check.json")
    note(f"gpu_check: {len(check['cases'])} checks, failures: {', '.join(check['failures']) or 'none'}")
    report = {"budget_min": budget_min, "device": check["device"], "gpu_check_failures": check["failures"],
              "trained": [], "skipped": [], "dry": dry}
    if check["failures"] and not dry:
        note("the self-check failed: nothing trained; see gpu_check.json")
    else:
        projected = plan.project(gpu)["experiments"]
        order = [*HEADLINE_FIRST, *(n for n in experiments.CATALOGUE if n not in HEADLINE_FIRST)]
        splits = kinds.Splits.of(load_mnist(runner.device_for(device)))
        planned = 0.0  # the projected time of what was trained: a run faster than projected leaves no more room
        for name in (n for n in order if experiments.get(n).kind in kinds.KINDS):
            left = budget_min * 60 - max(time.monotonic() - start, planned) - 120
            if projected[name] > left:
                report["skipped"].append(name)
                continue
            note(f"{name}: projected {projected[name] / 60:.1f} min, {left / 60:.1f} min left")
            planned += projected[name]
            rec = runner.run(experiments.get(name), "full", epochs=1 if dry else None, hidden=(16, 16) if dry else None,
                      device=device, splits=splits, progress=False, root=out)
            report["trained"].append({"experiment": name, "value": rec["value"], "wall_time_s": rec["wall_time_s"]})
    report["wall_time_s"] = round(time.monotonic() - start, 1)
    write_json(out / "loan.json", report)
    note(f"done in {report['wall_time_s'] / 60:.1f} min: {len(report['trained'])} trained, "
         f"{len(report['skipped'])} left for another loan; tar {out} and bring it back")
    return report




def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry", action="store_true", help="small widths, eager only (no GPU needed)")
    p.add_argument("--out", help="where to write the record (default: book/results/gpu_check_<gpu>.json)")
    args = p.parse_args(argv)
    out = None
    if args.out is not None:
        try:  # before the first check: a loan is not spent on checks whose record cannot be written
            out = check_writable(args.out, "--out")
        except ValueError as e:
            p.error(str(e))
    record = run(args.dry, out)
    print(f"{len(record['cases'])} checks on {record['device']} in {record['wall_time_s']:.0f} s; failures: "
          f"{', '.join(record['failures']) or 'none'}")
    raise SystemExit(1 if record["failures"] else 0)


if __name__ == "__main__":
    main()
