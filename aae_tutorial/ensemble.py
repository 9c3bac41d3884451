"""Batched ensembles: several models built alike (say, three seeds) trained as one, kept out of the chapters.

:func:`stack` turns M models of one architecture (say, three seeds) into one *ensemble* model that trains them
together: every ``nn.Linear`` becomes a :class:`BatchedLinear` holding the M members' weights (and every
``nn.BatchNorm1d`` a :class:`BatchedBatchNorm1d` with per-member statistics; a module with a class attribute
``members`` is told M), and member m owns rows ``m*B .. (m+1)*B`` of every minibatch. The step code is unchanged: the
step sees a minibatch of M*B rows. Every loss in this course is a mean over the minibatch's rows, or (a batch-level
term such as :class:`~aae_tutorial.categorical.CategoryUseEntropy`) a mean over the members. Either way it is (1/M)
times the sum of the members' losses, so each member's gradient is its own loss's gradient divided by M; a gradient
hook multiplies it back. Adam is elementwise, so each member's update is the one it would make alone
(:func:`unstack_into` copies the weights back). Members keep their own initial weights and data order; the noise drawn
inside a step (prior samples, input noise) comes from one shared stream, so it is independent between members but not
the numbers a member's single run would draw.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .engine import optimisers


class BatchedLinear(nn.Module):
    """M ``nn.Linear`` layers at once, member m applied to its block of rows: x (M*B, in) -> (M*B, out).

    ``weight`` is (M, out, in) and ``bias`` (M, out). One batched matmul replaces M small ones; a single member runs
    the very kernel of ``nn.Linear``, so a one-member ensemble is bit-for-bit the single model.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.members = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        has_bias = layers[0].bias is not None
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers])) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.members == 1:
            return F.linear(x, self.weight[0], None if self.bias is None else self.bias[0])
        if len(x) % self.members:
            raise ValueError(f"an ensemble of {self.members} needs a multiple of {self.members} rows, got {len(x)}")
        out = torch.bmm(x.reshape(self.members, -1, x.shape[-1]), self.weight.transpose(1, 2))  # (M, B, out)
        if self.bias is not None:
            out = out + self.bias.unsqueeze(1)
        return out.reshape(-1, out.shape[-1])

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape[1:]
        return f"members={self.members}, in_features={in_features}, out_features={out_features}"


class BatchedBatchNorm1d(nn.Module):
    """M ``nn.BatchNorm1d`` layers at once: each member normalises its own block of rows with its own batch
    statistics, affine weights and running averages. x (M*B, F) -> (M*B, F)."""

    def __init__(self, layers: Sequence[nn.BatchNorm1d]) -> None:
        super().__init__()
        first = layers[0]
        if not (first.affine and first.track_running_stats and first.momentum is not None):
            raise ValueError("only affine batch norm with running statistics and a momentum can be stacked")
        self.members, self.eps, self.momentum = len(layers), first.eps, first.momentum
        self.weight = nn.Parameter(torch.stack([b.weight.detach() for b in layers]))  # (M, F)
        self.bias = nn.Parameter(torch.stack([b.bias.detach() for b in layers]))
        self.register_buffer("running_mean", torch.stack([b.running_mean for b in layers]))
        self.register_buffer("running_var", torch.stack([b.running_var for b in layers]))
        self.register_buffer("num_batches_tracked", torch.stack([b.num_batches_tracked for b in layers]))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        if self.members == 1:
            return F.batch_norm(x, self.running_mean[0], self.running_var[0], self.weight[0], self.bias[0],
                                self.training, self.momentum, self.eps)
        # (M*B, F) -> (B, M*F): one BatchNorm over M*F channels, i.e. each member's features over its own rows
        xm = x.reshape(self.members, -1, x.shape[-1]).transpose(0, 1).reshape(-1, self.members * x.shape[-1])
        out = F.batch_norm(xm, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                           self.bias.view(-1), self.training, self.momentum, self.eps)
        return out.reshape(-1, self.members, x.shape[-1]).transpose(0, 1).reshape(x.shape)


#: The layers :func:`stack` knows how to batch, and their batched versions.
BATCHED = {nn.Linear: BatchedLinear, nn.BatchNorm1d: BatchedBatchNorm1d}


def _check_stackable(models: Sequence[nn.Module]) -> None:
    if not models:
        raise ValueError("an ensemble needs at least one model")
    first = models[0]
    for m in models[1:]:
        if type(m) is not type(first) or repr(m) != repr(first) or repr(getattr(m, "init_args", None)) != repr(
                getattr(first, "init_args", None)):
            raise ValueError(f"ensemble members must be built alike; {type(m).__name__} differs from the first")
    stateful = [f"{name or 'model'} ({type(m).__name__})" for name, m in first.named_modules()
                if type(m) not in BATCHED
                and (any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)))]
    if stateful:
        raise ValueError(f"only {', '.join(c.__name__ for c in BATCHED)} layers can be stacked; these modules hold "
                         f"weights or buffers: {stateful}")
    if any(opt.state for opt in optimisers(first)):
        raise ValueError("stack fresh models: the optimisers of the first model have already taken steps")


def stack(models: Sequence[nn.Module]) -> nn.Module:
    """One model that trains ``models`` (built alike, e.g. one per seed) together; see the module docstring.

    The result is a copy of the first model with every ``nn.Linear`` replaced by a :class:`BatchedLinear` and every
    optimiser it holds rebuilt, with the same settings, over the stacked parameters.
    """
    _check_stackable(models)
    stacked = copy.deepcopy(models[0])
    replaced: dict[int, nn.Parameter] = {}
    for name, module in list(stacked.named_modules()):
        if type(module) in BATCHED:
            batched = BATCHED[type(module)]([m.get_submodule(name) for m in models])
            replaced[id(module.weight)] = batched.weight
            if module.bias is not None:
                replaced[id(module.bias)] = batched.bias
            parent, _, child = name.rpartition(".")  # (nn.Module.set_submodule is newer than the torch floor)
            setattr(stacked.get_submodule(parent), child, batched.train(module.training))
    for module in stacked.modules():
        for attr, opt in list(vars(module).items()):
            if isinstance(opt, torch.optim.Optimizer):
                groups = [{**g, "params": [replaced[id(p)] for p in g["params"]]} for g in opt.param_groups]
                setattr(module, attr, type(opt)(groups, **opt.defaults))
    for module in stacked.modules():  # modules that average over a minibatch learn where each member's rows are
        if isinstance(getattr(type(module), "members", None), int):
            module.members = len(models)
    if len(models) > 1:  # a loss averaged over M*B rows gives each member 1/M of its own gradient
        for p in stacked.parameters():
            p.register_hook(lambda g, m=len(models): g * m)
    return stacked


@torch.no_grad()
def unstack_into(stacked: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy each member's weights out of a :func:`stack`-ed model into its own model."""
    for name, module in stacked.named_modules():
        if isinstance(module, tuple(BATCHED.values())):
            if module.members != len(models):
                raise ValueError(f"the ensemble has {module.members} members, got {len(models)} models")
            for i, m in enumerate(models):
                layer = m.get_submodule(name)
                for key, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                    getattr(layer, key).copy_(value[i])
