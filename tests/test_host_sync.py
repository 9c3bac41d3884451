"""No chapter's training step reads a value back to the host: a CUDA graph cannot capture a step that does.

Each step runs tiny, on the CPU, under a dispatch mode that records the operators which on CUDA would wait for the
device (``item``, ``nonzero`` and the like). The label checks of :func:`aae_tutorial.priors.check_classes` are
switched off as they are during capture. The one read allowed is the range check torch's own ``one_hot`` makes on
CPU tensors only (it skips it on CUDA). A new step that syncs fails here, before it costs a GPU run.
"""
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aae_tutorial import categorical, engine, priors, recipes
from aae_tutorial.aae import AAE
from aae_tutorial.categorical import CategoricalAAE
from aae_tutorial.data import LabelledSet
from aae_tutorial.conditional import LabelConditionedAAE, SupervisedAAE
from aae_tutorial.vae import VAE

SYNCING = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "multinomial", "_unique2",
           "unique_dim", "equal", "allclose", "item", "bincount", "repeat_interleave"}
HIDDEN = (8, 8)


class HostReads(TorchDispatchMode):
    """Records each syncing operator with the line outside torch that called it, except torch's CPU-only one_hot
    check."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in SYNCING:
            callers = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
            where = f"{callers[-1].filename.rsplit('/', 1)[-1]}:{callers[-1].lineno} {callers[-1].line}"
            if "one_hot(" not in where:
                self.found.append(f"{func.overloadpacket.__name__} at {where}")
        return func(*args, **(kwargs or {}))


def cases():
    torch.manual_seed(0)
    x, y = torch.rand(300, 784), torch.randint(10, (300,))
    partly = y.clone()
    partly[::3] = 10  # "no label"
    out = {}
    for recipe in (recipes.COURSE, recipes.PAPER):
        r = recipe.name
        for name, prior in {"gaussian": priors.Gaussian(2, 5.0), "mixture": priors.GaussianMixture(10),
                            "swiss roll": priors.SwissRoll(10)}.items():
            aae = AAE(prior, HIDDEN, recipe)
            out[f"ch3 AAE {name} {r}"] = lambda idx, m=aae: m.train_step(x[idx])
        for name, prior in {"gaussian": priors.Gaussian(2, 5.0), "mixture": priors.GaussianMixture(10)}.items():
            vae = VAE(prior, HIDDEN, recipe)
            out[f"ch2-3 VAE {name} {r}"] = lambda idx, m=vae: m.train_step(x[idx])
        labelled = LabelConditionedAAE(priors.GaussianMixture(10), HIDDEN, recipe)
        out[f"ch4 label-conditioned {r}"] = lambda idx, m=labelled: m.train_step(x[idx], labels=partly[idx])
        supervised = SupervisedAAE(priors.Gaussian(15, 1.0), HIDDEN, recipe=recipe)
        out[f"ch5 supervised {r}"] = lambda idx, m=supervised: m.train_step(x[idx], classes=y[idx])
        semi = CategoricalAAE(10, 4, HIDDEN, recipe=recipe, batch_norm=True)
        out[f"ch6 semi-supervised {r}"] = categorical.semisupervised_step(semi, x, LabelledSet(x[:20], y[:20]))
        alone = CategoricalAAE(10, 4, HIDDEN, recipe=recipe, batch_norm=True)
        out[f"ch6 labels only {r}"] = categorical.labels_only_step(alone, LabelledSet(x[:20], y[:20]))
        clusters = engine.stack([CategoricalAAE(16, 5, HIDDEN, recipe=recipe, batch_norm=True, balance=1.0)
                                   for _ in range(3)])
        out[f"ch7 clustering ensemble {r}"] = lambda idx, m=clusters: m.train_step(x[idx.repeat(3)])
        heads = CategoricalAAE(20, 2, HIDDEN, recipe=recipe, head_dim=2, batch_norm=True, balance=1.0)
        out[f"ch8 cluster heads {r}"] = lambda idx, m=heads: m.train_step(x[idx])
        sets = LabelledSet.stack([LabelledSet(x[:10], y[:10]), LabelledSet(x[10:30], y[10:30]),
                                  LabelledSet(x, y)])  # 100, 1000 and all labels, say
        semis = engine.stack([CategoricalAAE(10, 4, HIDDEN, recipe=recipe, batch_norm=True) for _ in range(3)])
        out[f"ch6 semi-supervised ensemble {r}"] = lambda idx, m=semis, s=sets: categorical.semisupervised_step(
            m, x, s)(idx.repeat(3))
        maps = engine.stack([CategoricalAAE(10, 2, HIDDEN, recipe=recipe, head_dim=2) for _ in range(2)])
        out[f"ch8 cluster heads ensemble {r}"] = lambda idx, m=maps, s=LabelledSet(
            x[:30], y[:30], [10, 20]): categorical.semisupervised_step(m, x, s)(idx.repeat(2))
    return out


CASES = cases()


@pytest.mark.parametrize("name", CASES)
def test_no_chapter_step_reads_back_to_the_host(name, monkeypatch):
    step = CASES[name]
    step(torch.arange(100))  # the first step creates the optimisers' state, as the engine's warm-up does
    monkeypatch.setattr(priors, "capturing", lambda t: True)  # as during capture: label checks are skipped
    with HostReads() as reads:
        step(torch.randperm(300)[:100])
    assert reads.found == []


def test_the_scan_can_fail():
    with HostReads() as reads:
        torch.ones(3).sum().item()
        torch.nn.functional.one_hot(torch.tensor([1, 2]), 3)  # torch's CPU-only check: allowed
    assert len(reads.found) == 1 and reads.found[0].startswith("_local_scalar_dense")
