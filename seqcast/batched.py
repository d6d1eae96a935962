"""Train many small recurrent networks of one architecture as one computation.

A chunk of series (times the ensemble's seeds) is a stack of M independent networks. Their weights
are stacked along a leading member axis and the recurrence is written with batched matrix products
(`torch.baddbmm`), so one epoch of all M networks is one pass of a few dozen tensor operations instead
of M passes of a few dozen each: the per-call overhead that dominates tiny networks is paid once.

The result is the same as training each network alone (`seqcast.train.train_network`, the reference):

- every member starts from the weights `seeded_build` gives it alone (same seed, same layout);
- the loss is the sum of the members' own mean squared errors, so each member's gradient is exactly
  its own (members share no parameter), padded windows being masked out;
- Adam is elementwise, so one optimiser over the stacked tensors updates each member as its own would;
- validation loss, early stopping and the refit on every window follow the reference per member.

Only floating-point rounding differs (batched kernels sum in another order); tests hold the two
paths to the same forecasts within a small tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from seqcast.config import ModelConfig
from seqcast.train import TrainResult, deterministic, seeded_build, split_windows

#: Networks trained in one stack at most (a chunk of 50 series with 3 seeds is 150).
MAX_STACK = 256

#: Elements of one step's stacked gate tensor (networks x windows x gates x hidden units) at most. Past about
#: a megabyte the elementwise steps wait on memory and every network of the stack trains slower (compare budgets
#: with `python benchmarks/scale.py --stacks`; figures in benchmarks/README.md).
STACK_ELEMENTS = 256 * 1024

#: Gates per recurrent kind, in torch's weight layout order (LSTM i,f,g,o; GRU r,z,n).
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass
class Job:
    """One network to train: its windows X [n, lookback, 1] -> Y [n, out] and its settings (seed included)."""

    X: np.ndarray
    Y: np.ndarray
    config: ModelConfig


def pays_off(config: ModelConfig) -> bool:
    """Whether stacking trains this architecture faster than torch's own module one network at a time.

    Measured (`python benchmarks/scale.py --stacks`): rnn and gru always; an LSTM only while small: torch's CPU
    LSTM is one fused kernel, which the stack beats at 16 hidden units but not at 32.
    """
    return config.kind != "lstm" or config.hidden <= 16


def group_key(job: Job) -> tuple[object, ...]:
    """Jobs that can share one stacked computation: same architecture, shapes and optimiser settings."""
    c = job.config
    return (c.kind, c.hidden, c.layers, c.lr, job.X.shape[1], job.Y.shape[1], c.patience, c.val_fraction)


def train_many(build: Callable[[ModelConfig], nn.Module], jobs: list[Job], curve: bool = True) -> list[TrainResult]:
    """Train every job's network; jobs that fit one stack are trained together. Results in job order.

    Args:
        build: constructs a fresh `RecurrentNet` for a config (called under the job's seed).
        curve: as in `train_network`: without it, a fit that needs no validation curve skips that phase.
    """
    results: list[TrainResult | None] = [None] * len(jobs)
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(group_key(job), []).append(i)
    stacks = [stack for ids in groups.values() for stack in stacks_of([jobs[i] for i in ids], ids)]
    for members in stacks:
        for i, result in zip(members, _train_group(build, [jobs[i] for i in members], curve), strict=True):
            results[i] = result
    return [r for r in results if r is not None]


def stacks_of(group: list[Job], ids: list[int]) -> list[list[int]]:
    """Split one group's jobs (`ids` their positions) into stacks that train together.

    Members of similar length share a stack (less padding), and a stack holds as many networks as keep its
    gate tensor under STACK_ELEMENTS (and at most MAX_STACK): activations of every step are kept for the
    backward pass, so this also bounds a stack's memory.
    """
    order = sorted(range(len(group)), key=lambda k: (len(group[k].X), k))
    stacks: list[list[int]] = []
    start = 0
    while start < len(order):
        c = group[order[start]].config
        end = start + 1
        while end < len(order) and end - start < MAX_STACK:
            # Sorted by length: the newest member is the longest, so it sets the padded size.
            per_network = len(group[order[end]].X) * GATES[c.kind] * c.hidden
            if (end - start + 1) * per_network > STACK_ELEMENTS:
                break
            end += 1
        stacks.append([ids[k] for k in order[start:end]])
        start = end
    return stacks


def _train_group(build: Callable[[ModelConfig], nn.Module], jobs: list[Job], curve: bool) -> list[TrainResult]:
    start = time.perf_counter()
    cfg = jobs[0].config
    with deterministic():
        splits = []
        for job in jobs:
            c = job.config
            skip_curve = not curve and c.patience is None and c.refit_all_windows
            gap = job.Y.shape[1] - 1
            splits.append(split_windows(len(job.X), 0.0 if skip_curve else c.val_fraction, gap))
        train_sets = [(job.X[t], job.Y[t]) for job, (t, _) in zip(jobs, splits, strict=True)]
        val_sets = [(job.X[v], job.Y[v]) for job, (_, v) in zip(jobs, splits, strict=True)]
        nets = [seeded_build(partial(build, job.config), job.config.seed) for job in jobs]
        histories, best = _fit(nets, train_sets, val_sets, cfg, [job.config.epochs] * len(jobs), cfg.patience)
        epochs = list(best)
        refit = [i for i, job in enumerate(jobs) if job.config.refit_all_windows and len(splits[i][1])]
        if refit:
            fresh = [seeded_build(partial(build, jobs[i].config), jobs[i].config.seed) for i in refit]
            _fit(fresh, [(jobs[i].X, jobs[i].Y) for i in refit], None, cfg, [best[i] for i in refit], None)
            for i, net in zip(refit, fresh, strict=True):
                nets[i] = net
    seconds = (time.perf_counter() - start) / len(jobs)
    for net in nets:
        net.eval()
    return [
        TrainResult(net=net, history=history, epochs=e, seconds=seconds)
        for net, history, e in zip(nets, histories, epochs, strict=True)
    ]


# ---------------------------------------------------------------------------------------------- stacking


def _pad(sets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-member windows, zero-padded to the longest.

    Returns X [M, L, N, 1] (time-major), Y [M, N, out], mask [M, N] and window counts [M].
    """
    n = max(len(x) for x, _ in sets)
    first_x, first_y = sets[0]
    X = np.zeros((len(sets), n, *first_x.shape[1:]), dtype=np.float32)
    Y = np.zeros((len(sets), n, *first_y.shape[1:]), dtype=np.float32)
    mask = np.zeros((len(sets), n), dtype=np.float32)
    for m, (x, y) in enumerate(sets):
        X[m, : len(x)], Y[m, : len(y)], mask[m, : len(x)] = x, y, 1.0
    counts = mask.sum(axis=1)
    time_major = np.ascontiguousarray(X.transpose(0, 2, 1, 3))  # [M, L, N, 1]: one step's windows contiguous
    return torch.from_numpy(time_major), torch.from_numpy(Y), torch.from_numpy(mask), torch.from_numpy(counts)


def stack_parameters(nets: list[nn.Module]) -> dict[str, torch.Tensor]:
    """The members' parameters stacked along a new leading axis, as fresh leaf tensors that need grad."""
    names = [name for name, _ in nets[0].named_parameters()]
    per_net = [dict(net.named_parameters()) for net in nets]
    return {name: torch.stack([p[name].detach() for p in per_net]).requires_grad_(True) for name in names}


def unstack_parameters(stacked: dict[str, torch.Tensor], nets: list[nn.Module], members: list[int]) -> None:
    """Copy the stacked weights of `members` back into their networks."""
    with torch.no_grad():
        for m in members:
            for name, param in nets[m].named_parameters():
                param.copy_(stacked[name][m])


def stacked_forward(kind: str, layers: int, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """M networks at once: x [M, L, N, I] (time-major) -> [M, N, out], with torch's RNN/GRU/LSTM equations.

    Parameter names are those of `RecurrentNet` (`rnn.weight_ih_l0`, ..., `head.weight`), each with a
    leading member axis.
    """
    M, L, N, _ = x.shape
    seq = x
    h = x.new_zeros(0)
    for layer in range(layers):
        w_ih, w_hh = params[f"rnn.weight_ih_l{layer}"], params[f"rnn.weight_hh_l{layer}"]
        b_ih, b_hh = params[f"rnn.bias_ih_l{layer}"], params[f"rnn.bias_hh_l{layer}"]
        H = w_hh.shape[2]
        # GRU keeps b_hn inside r * (W_hn h + b_hn); the others add both biases up front.
        bias = b_ih if kind == "gru" else b_ih + b_hh
        # Input projections of every step at once: [M, L*N, I] @ [M, I, G*H] -> L tensors [M, N, G*H]
        steps = torch.baddbmm(bias[:, None, :], seq.reshape(M, L * N, -1), w_ih.transpose(1, 2))
        steps_t = steps.view(M, L, N, -1).unbind(1)
        w_hh_t = w_hh.transpose(1, 2)
        lstm_scale = x.new_tensor([1.0] * (2 * H) + [2.0] * H + [1.0] * H)
        h = x.new_zeros(M, N, H)
        c = x.new_zeros(M, N, H)
        outputs = []
        for gx in steps_t:
            if kind == "rnn":
                h = _tanh(torch.baddbmm(gx, h, w_hh_t))
            elif kind == "lstm":
                # One sigmoid over all four gates (g's pre-activation doubled: tanh(x) = 2 sigmoid(2x) - 1),
                # and `split` views, whose backward is a single concatenation rather than a zero fill per slice.
                gates = torch.baddbmm(gx, h, w_hh_t) * lstm_scale  # [M, N, 4H]: i, f, 2g, o
                i, f, g, o = torch.sigmoid(gates).split(H, dim=-1)  # type: ignore[no-untyped-call]
                c = f * c + i * (2 * g - 1)
                h = o * _tanh(c)
            else:  # gru: r, z, n
                gh = torch.baddbmm(b_hh[:, None, :], h, w_hh_t)
                gx_rz, gx_n = gx.split([2 * H, H], dim=-1)  # type: ignore[no-untyped-call]
                gh_rz, gh_n = gh.split([2 * H, H], dim=-1)  # type: ignore[no-untyped-call]
                r, z = torch.sigmoid(gx_rz + gh_rz).split(H, dim=-1)  # type: ignore[no-untyped-call]
                n = _tanh(gx_n + r * gh_n)
                h = n + z * (h - n)  # (1 - z) * n + z * h
            if layer < layers - 1:
                outputs.append(h)
        if layer < layers - 1:
            seq = torch.stack(outputs, dim=1)  # [M, L, N, H]
    return torch.baddbmm(params["head.bias"][:, None, :], h, params["head.weight"].transpose(1, 2))


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1: torch's CPU tanh is several times slower than its sigmoid."""
    return 2 * torch.sigmoid(2 * x) - 1


def _member_mse(pred: torch.Tensor, Y: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Each member's mean squared error over its own windows: [M]."""
    sq = (pred - Y).square().sum(dim=2) * mask  # [M, N]
    return sq.sum(dim=1) / (counts * Y.shape[2])


def _fit(
    nets: list[nn.Module],
    train_sets: list[tuple[np.ndarray, np.ndarray]],
    val_sets: list[tuple[np.ndarray, np.ndarray]] | None,
    cfg: ModelConfig,
    epochs: list[int],
    patience: int | None,
) -> tuple[list[list[tuple[int, float, float | None]]], list[int]]:
    """Train the stacked members; member m stops at epoch `epochs[m]` (or early, with `patience`).

    The trained weights are written back into `nets`. Returns each member's history and best epoch
    (the epoch whose weights it keeps), as `seqcast.train._fit` does for one network.
    """
    M = len(nets)
    kind, layers = cfg.kind, cfg.layers
    X, Y, mask, counts = _pad(train_sets)
    has_val = val_sets is not None and any(len(x) for x, _ in val_sets)
    if has_val:
        assert val_sets is not None
        Xv, Yv, mask_v, counts_v = _pad([(x, y) if len(x) else (x[:0], y[:0]) for x, y in val_sets])
        with_val = counts_v > 0
        counts_v = counts_v.clamp(min=1)
    params = stack_parameters(nets)
    optimiser = torch.optim.Adam(params.values(), lr=cfg.lr)
    histories: list[list[tuple[int, float, float | None]]] = [[] for _ in range(M)]
    best_loss = [float("inf")] * M
    best_epoch = list(epochs)
    best_state: list[dict[str, torch.Tensor] | None] = [None] * M
    active = [True] * M
    for epoch in range(1, max(epochs) + 1):
        optimiser.zero_grad()
        losses = _member_mse(stacked_forward(kind, layers, params, X), Y, mask, counts)
        losses.sum().backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        train_losses = losses.detach().tolist()
        val_losses: list[float | None] = [None] * M
        if has_val:
            with torch.no_grad():
                v = _member_mse(stacked_forward(kind, layers, params, Xv), Yv, mask_v, counts_v).tolist()
            val_losses = [v[m] if with_val[m] else None for m in range(M)]
        for m in range(M):
            if not active[m]:
                continue
            val_loss = val_losses[m]
            stop = False
            if val_loss is not None:
                if val_loss < best_loss[m]:
                    best_loss[m], best_epoch[m] = val_loss, epoch
                    if patience is not None:
                        best_state[m] = {k: p[m].detach().clone() for k, p in params.items()}
                elif patience is not None and epoch - best_epoch[m] >= patience:
                    stop = True
            histories[m].append((epoch, train_losses[m], val_loss))
            if stop or epoch == epochs[m]:
                active[m] = False
                unstack_parameters(params, nets, [m])
                if best_state[m] is None:
                    best_epoch[m] = len(histories[m])
        if not any(active):
            break
    for m, state in enumerate(best_state):
        if state is not None:
            nets[m].load_state_dict({**nets[m].state_dict(), **state})
    return histories, best_epoch
