"""What a training run produced: its per-epoch history and its provenance (:class:`Run`), the record every result in
the book is built from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .recipes import Recipe


@dataclass
class History:
    """Per-epoch means of every loss a step returns, plus any per-epoch metrics a callback adds."""

    epochs: int = 0
    losses: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    @staticmethod
    def log(store: dict[str, list[float]], values: dict[str, float]) -> None:
        for k, v in values.items():
            store.setdefault(k, []).append(float(v))

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in {**self.losses, **self.metrics}.items() if v}


@dataclass
class Run:
    """What a training run produced and where: the provenance every result in the book carries.

    ``recipe`` is the model's :class:`~aae_tutorial.recipes.Recipe`, so a result names it without being told.
    ``wall_time_s`` is the time of the training run that produced the weights, also when they were loaded from a
    checkpoint (then ``from_checkpoint`` is true). A model trained in a batched ensemble of ``ensemble`` members
    (:func:`fit_together`) is credited with its share, 1/``ensemble``, of the ensemble's time.
    """

    name: str
    config: dict
    history: History
    mode: str
    device: str
    epochs: int
    wall_time_s: float
    from_checkpoint: bool = False
    ensemble: int = 1
    recipe: Recipe | None = None  # the model's training recipe, where it has one
    selected_epoch: int | None = None  # the epoch (1-based) validation picked, where the run picked one
    precision: str = "fp32"  # what its steps computed in: fp32, or bf16 under autocast

    def describe(self) -> str:
        how = f"{self.epochs} epochs, {self.wall_time_s:.1f} s, {self.mode} mode, {self.device}"
        if self.ensemble > 1:
            how += f", its share of an ensemble of {self.ensemble}"
        if self.from_checkpoint:
            return f"{self.name}: loaded from a verified checkpoint of an earlier run ({how})"
        return f"{self.name}: trained ({how})"


def selected_epoch(run: Run, by: str = "valid_error") -> int:
    """Index of the epoch with the lowest ``by`` metric: model selection on the validation split."""
    values = run.history.metrics.get(by)
    if not values:
        raise ValueError(f"run {run.name} logged no {by!r}; it has {sorted(run.history.metrics)}")
    return min(range(len(values)), key=values.__getitem__)
