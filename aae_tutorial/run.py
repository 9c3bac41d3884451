"""Train any experiment of the catalogue at any scale on any device, resumably, and write its record.

    python -m aae_tutorial.run --list
    python -m aae_tutorial.run semisupervised_1000_labels --scale full            # the paper's width
    python -m aae_tutorial.run parzen_loglik clustering_k16 --scale full --epochs 50

Each seed of each experiment is one run. Every few minutes (``--checkpoint-every``) and after its last epoch the run
writes an atomic checkpoint: weights, optimiser and schedule states, the random states, the epochs done, the
validation curve and the best weights so far. Killed at any moment and started again, a run continues from its last
checkpoint and ends bit for bit where an uninterrupted run ends (on the CPU); asked for more epochs later, it trains
on. The checkpoint carries its key (:func:`aae_tutorial.checkpoints.key`), and one with another key is never loaded.

The epoch is picked on the validation images; the test images are scored once, with the picked weights. The record,
``<results>/<scale>/<experiment>.json``, names the scale, width, epochs done and planned, device, precision, wall
time, the validation curve and the epoch picked, so a paper-width record and the book's quick record sit side by side.
Full scale trains in bf16 autocast where the device does bf16 natively (AMX or AVX-512 BF16 CPUs, CUDA), else fp32;
quick scale is fp32, so its numbers do not depend on the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checks, engine, experiments, kinds, tables
from . import results as records
from .data import cache_dir, load_mnist
from .experiments import MODES, Experiment, RunMode
from .history import History
from .train import CHECKPOINT_EVERY_S, Best, describe_device, fit, pick_device, seed_everything

try:
    import fcntl
except ImportError:  # not on Windows: there, two runs of one experiment are not kept apart
    fcntl = None

def device_for(asked: torch.device | str | None, name: str = "device") -> torch.device:
    """The device a run trains on: ``asked`` where given (it must exist here), else the best there is."""
    return checks.device(asked, name) if asked else pick_device()


@dataclass
class SeedResult:
    """One finished run: its curve, the epoch validation picked (1-based), the test score and its provenance."""

    seed: int
    history: History
    selected_epoch: int
    test: dict
    wall_time_s: float
    epochs: int


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Refuse a second process training the same run at the same time (a lock on ``<path>.lock``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another process is training {path.name} now; wait for it, or stop it") from None
        yield


def train_seed(exp: Experiment, scale: str, seed: int, splits: kinds.Splits, *, epochs: int,
               hidden: tuple[int, ...] | None = None, device: torch.device | str = "cpu", precision: str = "fp32",
               checkpoint_every: float = CHECKPOINT_EVERY_S, progress: bool = True, score: bool = True) -> SeedResult:
    """Train one seed of ``exp`` to ``epochs`` epochs with :func:`aae_tutorial.train.fit` (resuming from its
    checkpoint), pick the epoch on validation, and (unless ``score`` is false) score the test images once with the
    picked weights."""
    hidden = tuple(hidden or exp.scale(scale).hidden)
    name = f"{exp.name}-{scale}-seed{seed}"
    if old := sorted((cache_dir() / "runs").glob(f"{name}-*.pt")):
        print(f"{name}: {len(old)} checkpoint(s) of the run command's earlier format in {old[0].parent} are not read;"
              " this run starts from its own checkpoint, or from the beginning (delete the old ones)", file=sys.stderr)
    seed_everything(seed)
    trainee = kinds.build(exp, hidden, seed, splits)
    best = Best("valid", exp.higher_is_better)
    config = {"experiment": exp.training(), "scale": scale, "hidden": list(hidden), "seed": seed}
    with _exclusive(cache_dir() / "checkpoints" / name):
        run = fit(name, trainee.model, trainee.step, trainee.data, epochs, RunMode(scale, "the run command's scale"),
                  device, config=config, on_epoch_end=lambda epoch: trainee.validate(), select=best,
                  precision=torch.bfloat16 if precision == "bf16" else None, checkpoint_every=checkpoint_every,
                  progress="bar" if progress else "lines")
    return SeedResult(seed, run.history, best.epoch, trainee.score() if score else {}, run.wall_time_s, run.epochs)


def run(exp: Experiment, scale: str = "quick", *, epochs: int | None = None, seeds: tuple[int, ...] | None = None,
        hidden: tuple[int, ...] | None = None, device: torch.device | str | None = None, precision: str = "auto",
        checkpoint_every: float = CHECKPOINT_EVERY_S, splits: kinds.Splits | None = None, progress: bool = True,
        write: bool = True, root: Path | None = None) -> dict:
    """Train every seed of ``exp`` at ``scale`` (overrides: ``epochs``, ``seeds``, ``hidden``) and write its record
    to :func:`aae_tutorial.results.record_path` (under ``root``, default the results folder); returns the record."""
    sc = exp.scale(scale)
    epochs = sc.epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    device = device_for(device)
    precision = engine.precision_for(scale, device, precision)
    hidden = tuple(hidden or sc.hidden)
    splits = splits or kinds.Splits.of(load_mnist(device))
    results = [train_seed(exp, scale, s, splits, epochs=epochs, hidden=hidden, device=device, precision=precision,
                          checkpoint_every=checkpoint_every, progress=progress) for s in (seeds or sc.seeds)]
    rec = records.of_seeds(exp, scale, results, hidden=hidden, epochs_planned=epochs,
                           device=describe_device(device), precision=precision)
    if write:
        path = records.write(rec, scale, root)
        print(f"{exp.name} ({scale}, width {hidden[0]}, {rec['epochs']} epochs, {precision}, {rec['device']}): "
              f"{rec['value']} ({exp.metric}), epoch{'s' if len(results) > 1 else ''} "
              f"{', '.join(map(str, rec['selected_epochs']))} picked on validation; wrote {path}")
    return rec


def numeric_settings(exp: Experiment) -> list[str]:
    """The model settings of ``exp`` that take a number (bools too: 0 or 1)."""
    return [k for k, v in exp.settings.items() if isinstance(v, (int, float))]


def with_settings(exp: Experiment, settings: dict[str, float]) -> Experiment:
    """``exp`` with some of its numeric model settings changed, named after the change (e.g.
    ``semisupervised_100_labels_z_dim_10``), so that its runs and records never pass for the catalogue's own."""
    if unknown := sorted(set(settings) - set(numeric_settings(exp))):
        raise ValueError(f"{exp.name} has no numeric model setting {', '.join(unknown)}; it has "
                         f"{', '.join(numeric_settings(exp))}")
    if not settings:
        return exp
    suffix = "".join(f"_{k}_{v:g}" for k, v in sorted(settings.items()))
    return dataclasses.replace(exp, name=exp.name + suffix, settings={
        **exp.settings, **{k: type(exp.settings[k])(v) for k, v in settings.items()}})


def sweep(exp: Experiment, field: str, values: list[float], scale: str = "quick", *, epochs: int | None = None,
          device: torch.device | str | None = None, splits: kinds.Splits | None = None, progress: bool = True,
          write: bool = True, base: dict[str, float] | None = None) -> dict:
    """Train ``exp`` once per value of one of its recipe's numeric fields (e.g. ``adv_lr``) or of its model settings
    (e.g. ``balance``) on its first seed, and pick the value on validation: the best validation score each reached,
    never the test set. ``base`` changes some model settings first (:func:`with_settings`): the search then starts from
    there, and its record says so. Writes ``<scale>/<experiment>_<field>_sweep.json``; train the chosen value as the
    experiment itself to score it."""
    exp, base = with_settings(exp, base or {}), dict(base or {})
    numeric = {"lr", "adv_lr", "clf_lr", "momentum", "adv_momentum"}
    settings = numeric_settings(exp)
    if field not in numeric and field not in settings:
        raise ValueError(f"sweep a numeric recipe field ({', '.join(sorted(numeric))}) or a numeric model setting "
                         f"of {exp.name} ({', '.join(settings)}), got {field!r}")
    device = device_for(device)
    splits = splits or kinds.Splits.of(load_mnist(device))
    sc = exp.scale(scale)
    best = max if exp.higher_is_better else min
    rows = []
    for value in values:
        if field in numeric:
            changed = {"recipe": dataclasses.replace(exp.recipe, name=f"{exp.recipe.name}, {field} {value:g}",
                                                     **{field: value})}
        else:
            changed = {"settings": {**exp.settings, field: type(exp.settings[field])(value)}}
        variant = dataclasses.replace(exp, name=f"{exp.name}-{field}-{value:g}", **changed)
        r = train_seed(variant, scale, sc.seeds[0], splits, epochs=epochs or sc.epochs, device=device,
                       precision=engine.precision_for(scale, device), progress=progress, score=False)
        curve = r.history.metrics["valid"]
        also = {k: v[r.selected_epoch - 1] for k, v in r.history.metrics.items() if k != "valid"}
        rows.append({field: value, "valid_best": round(best(curve), 4), "epoch": r.selected_epoch, **also,
                     "valid_curve": [round(v, 4) for v in curve], "wall_time_s": round(r.wall_time_s, 1)})
    rec = {"experiment": f"{exp.name}_{field}_sweep", "swept": field, "base": base, "settings": exp.settings,
           "scale": scale, "mode": scale, "hidden": list(sc.hidden), "epochs": epochs or sc.epochs,
           "seed": sc.seeds[0], "precision": engine.precision_for(scale, device), "rows": rows,
           "chosen_on": "the validation images (the last 10,000 training images)",
           "metric": f"validation: {exp.metric.replace('test ', '')}", "recipe": exp.recipe.name,
           "device": describe_device(device), "torch": torch.__version__, "code_version": records.code_version(),
           "date": time.strftime("%Y-%m-%d")}
    if not write:
        return merge_sweeps(None, rec, best)
    path = records.write(rec, scale, merge=lambda earlier: merge_sweeps(earlier, rec, best))
    rec = records.load(path)
    chosen = next(row for row in rec["rows"] if row[field] == rec["chosen"])
    print(f"{exp.name}: {field} {rec['chosen']:g} is best on validation ({chosen['valid_best']}) of "
          f"{len(rec['rows'])} tried; wrote {path}")
    return rec


#: What two searches must share for their rows to sit in one record: the same runs but for the swept value.
SWEEP_SAME = ("swept", "base", "settings", "scale", "hidden", "epochs", "seed", "precision", "recipe")


def merge_sweeps(old: dict | None, new: dict, best=min) -> dict:
    """``new``'s search added to ``old``, the record of an earlier one (a later ``--sweep adv_lr 1e-3`` beside an
    earlier ``--sweep adv_lr 5e-4``): ``new``'s rows replace ``old``'s rows of the same value, and the value is chosen
    again, on validation, over every row. An ``old`` made otherwise (another width, length, seed, precision or
    start) is replaced, with a note saying so, since its scores would not compare."""
    field, rows = new["swept"], list(new["rows"])
    if old is not None:
        if all(old.get(k) == new[k] for k in SWEEP_SAME):
            values = {row[field] for row in rows}
            rows = [row for row in old["rows"] if row[field] not in values] + rows
        else:
            differ = [k for k in SWEEP_SAME if old.get(k) != new[k]]
            print(f"{new['experiment']}: the earlier search differs in {', '.join(differ)}; its rows are replaced")
    rows.sort(key=lambda row: row[field])
    chosen = best(rows, key=lambda row: row["valid_best"])
    return {**new, "rows": rows, "chosen": chosen[field]}


def listing() -> str:
    """Every experiment with its settings at both scales and its planned model-epochs, as a Markdown table."""
    rows = []
    for e in experiments.CATALOGUE.values():
        rows.append((e.name, e.chapter[:2], e.kind + ("" if e.kind in kinds.KINDS else " (its chapter)"),
                     e.recipe.name, *(f"{s.hidden[0]} × {s.epochs} ep × {len(s.seeds)} seed = {s.model_epochs}"
                                      for s in (e.quick, e.full)),
                     " ".join(sc for sc in MODES if records.record_path(e.name, sc).is_file()) or "-"))
    total = [sum(e.scale(sc).model_epochs for e in experiments.CATALOGUE.values()) for sc in MODES]
    return tables.markdown(["experiment", "ch.", "kind (trained by)", "recipe", "quick: width × epochs × seeds",
                            "full: width × epochs × seeds", "records by this command"], rows,
                           "The experiments of the book",
                           f"Planned model-epochs: quick {total[0]:,}, full {total[1]:,}. Kinds marked '(its chapter)'"
                           " are trained by their chapter's notebook; the run command trains the others.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aae_tutorial.run", description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", nargs="*", help="names from --list")
    p.add_argument("--list", action="store_true", help="show every experiment and its planned model-epochs")
    p.add_argument("--scale", choices=MODES, default="quick")
    p.add_argument("--epochs", type=int, help="train to this many epochs (default: the scale's)")
    p.add_argument("--seeds", type=int, nargs="+", help="default: the scale's")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best there is)")
    p.add_argument("--precision", choices=engine.PRECISIONS, default="auto")
    p.add_argument("--checkpoint-every", type=float, default=CHECKPOINT_EVERY_S, metavar="SECONDS")
    p.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's)")
    p.add_argument("--budget", type=float, metavar="MINUTES",
                   help="a GPU loan: the self-check, then what fits in MINUTES, headline experiments first, into --out")
    p.add_argument("--out", default="loan", help="with --budget: the folder for every record and log (default: loan)")
    p.add_argument("--dry", action="store_true", help="with --budget: eager checks, width 16, one epoch (any device)")
    p.add_argument("--sweep", nargs="+", metavar=("FIELD", "VALUE"),
                   help="train once per value of a recipe field (e.g. --sweep adv_lr 2e-4 1e-3) and pick on validation")
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("SETTING", "VALUE"),
                   help="with --sweep: change a model setting first, the search's starting point (e.g. --set z_dim 10)")
    args = p.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    if args.budget is not None:
        if args.budget <= 0 or args.experiments:
            p.error("--budget takes a positive number of minutes and no experiment names (it picks them)")
        from .gpu_check import loan  # the loan starts with the GPU check, which trains through this module

        loan(args.budget, Path(args.out), device=args.device or None, dry=args.dry)
        return 0
    if not args.experiments:
        p.error("name at least one experiment, or ask for --list")
    try:
        chosen = [experiments.get(n) for n in args.experiments]  # unknown names fail before any training
    except KeyError as e:
        p.error(e.args[0])
    if args.dry and args.budget is None:
        p.error("--dry goes with --budget (a dry run of a loan); without --budget it would train for real")
    if args.device is not None and not args.device.strip():
        p.error("--device must name a device, e.g. cpu or cuda")
    try:
        device = device_for(args.device, "--device")
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = kinds.Splits.of(load_mnist(device))
    if args.set and not args.sweep:
        p.error("--set goes with --sweep (the search's starting point); the catalogue states each experiment's settings")
    if args.sweep:
        field, *values = args.sweep
        try:
            numbers = [float(v) for v in values]
            base = {k: float(v) for k, v in args.set}
        except ValueError:
            p.error(f"--sweep and --set take numbers, got {args.sweep} and {args.set}")
        for exp in chosen:
            try:
                with_settings(exp, base)
            except ValueError as e:
                p.error(str(e))
            sweep(exp, field, numbers, args.scale, epochs=args.epochs, device=device, splits=splits,
                  progress=sys.stderr.isatty(), base=base)
        return 0
    for exp in chosen:
        run(exp, args.scale, epochs=args.epochs, seeds=tuple(args.seeds) if args.seeds else None, device=device,
            precision=args.precision, checkpoint_every=args.checkpoint_every, splits=splits,
            progress=sys.stderr.isatty())
    return 0


if __name__ == "__main__":
    sys.exit(main())
