"""``EnasMutator``: an LSTM controller that samples paths, trained by REINFORCE (Pham et al. 2018).

The controller behaves as NNI v1.9's ``nni.nas.pytorch.enas.EnasMutator`` (same arguments, same
meaning, same ``sample_log_prob`` / ``sample_entropy`` / ``sample_skip_penalty`` that NNI's
``EnasTrainer`` reads after ``mutator.reset()``). It walks the mutable tree in pre-order, one
decision per key:

- a **LayerChoice**: one LSTM step, logits ``soft(h)`` (divided by ``temperature``, then
  ``tanh_constant * tanh(.)``, then plus the fixed ``branch_bias`` of a key containing
  ``"reduce"``), one candidate drawn from their softmax; the next LSTM input is the
  candidate's embedding.
- an **InputChoice**: every ``choose_from`` label is an *anchor*, the LSTM's hidden state saved
  when the MutableScope of that key was left (with ``cell_exit_extra_step`` after one more
  step). A label that has no anchor yet (a plain label, ``NO_KEY``, a LayerChoice's key) gets one
  LSTM step and is anchored there. Attention of the current state over the anchors gives one
  logit ``q_i`` per input (temperature and tanh as above). ``n_chosen=None``: input ``i`` is kept
  with probability ``softmax([-q_i, q_i])[1]``, each on its own, and the KL divergence of
  ``sigmoid([-q_i, q_i])`` from ``[1 - skip_target, skip_target]`` is added to
  ``sample_skip_penalty``; the next input is the sum of the kept anchors over ``1 + kept``.
  ``n_chosen=1``: one input from ``softmax(q)``; the next input is its anchor.

``sample_log_prob`` is NNI's: the sample's *negative* log-probability (the summed cross-entropy of
the decisions, each decision's terms reduced by ``entropy_reduction``), so NNI's REINFORCE loss is
``sample_log_prob * (reward - baseline)``. ``sample_entropy`` is NNI's detached
``-p log p`` of the drawn decisions, reduced the same way.

Draws come from torch's global RNG with NNI's calls (``torch.multinomial``) and the controller is
initialised by the same constructors in the same order, so ``torch.manual_seed(s)`` reproduces a
run. With ``seed=`` the controller is initialised from the seed and draws from its own numpy RNG
(its state in ``state_dict()`` and in a pickle) without touching torch's global RNG.

raynas extras (keyword-only): :meth:`EnasMutator.arch_step`, one REINFORCE step of the
controller with NNI's trainer loss (used by ``raynas.train``); :meth:`sample_final` decodes
greedily (the most likely decision at every step), so ``export()`` is deterministic and draws
nothing (NNI's ``sample_final`` samples); :meth:`policy`; LayerChoices with different numbers of
candidates (NNI requires one number; a choice with fewer uses the first logits) and InputChoices
with ``n_chosen=0`` or ``k > 1`` (``k`` inputs drawn one after the other without replacement).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raynas.nas.enas.controller import EnasConfigError, StackedLSTMCell
from raynas.nas.enas.controller import check_integer as _integer
from raynas.nas.enas.controller import check_number as _number
from raynas.nas.enas.controller import param_name as _param_name
from raynas.nas.learnable import Criterion, LearnableMutator, Reduce, grads_of
from raynas.nas.mutables import InputChoice, LayerChoice, MutableScope

__all__ = ["EnasMutator", "EnasConfigError"]


class _Walk:
    """The controller's state during one sample (never kept on the mutator: it holds graphs)."""

    def __init__(self, mutator: EnasMutator):
        start = mutator.g_emb.detach()  # NNI feeds g_emb.data: the first input gets no gradient
        zeros = [torch.zeros_like(start) for _ in range(mutator.lstm_num_layers)]
        self.h, self.c = zeros, list(zeros)
        self.inputs = start
        self.anchors: dict[str, torch.Tensor] = {}
        self.decisions: dict[str, torch.Tensor] = {}
        self.policy: dict[str, list[float]] = {}
        self.log_prob = torch.zeros((), device=start.device)
        self.entropy = torch.zeros((), device=start.device)
        self.skip_penalty = torch.zeros((), device=start.device)


class EnasMutator(LearnableMutator):
    """Paths sampled by an LSTM controller (NNI v1.9's ``EnasMutator``), trained with REINFORCE.

    The positional arguments are NNI's, with NNI's meaning and defaults.

    Args:
        model: the model holding the mutables.
        lstm_size: hidden size of the controller's LSTM (and of the embeddings and attention).
        lstm_num_layers: layers of the stacked LSTM.
        tanh_constant: logits become ``tanh_constant * tanh(logits)`` (``None``: no tanh).
        cell_exit_extra_step: one more LSTM step when the walk leaves a MutableScope, before its
            hidden state is saved as the scope's anchor (the ENAS paper's cells).
        skip_target: target probability of keeping an input of an ``n_chosen=None``
            InputChoice; ``sample_skip_penalty`` is the KL divergence from it.
        temperature: logits are divided by it before the tanh (``None``: 1).
        branch_bias: fixed bias on the logits of a LayerChoice whose key contains ``"reduce"``:
            ``+branch_bias`` for candidates whose type name contains ``"conv"``, ``-branch_bias``
            for the others.
        entropy_reduction: ``"sum"`` or ``"mean"``: how the terms of one decision (one per input
            of an ``n_chosen=None`` InputChoice) are reduced in ``sample_log_prob`` and
            ``sample_entropy``.
        entropy_weight: (raynas, :meth:`arch_step`) weight of ``sample_entropy`` in the reward.
        skip_weight: (raynas, :meth:`arch_step`) weight of ``sample_skip_penalty`` in the loss
            (NNI's ``EnasTrainer`` default, 0.8).
        baseline_decay: (raynas, :meth:`arch_step`) decay of the reward's moving average.
        lr: (raynas) Adam learning rate of :attr:`arch_optimizer`.
        weight_decay: (raynas) L2 weight decay of :attr:`arch_optimizer`.
        grad_clip: (raynas, :meth:`arch_step`) clip the controller's gradient norm (after
            averaging) to this value (``None``: no clipping).
        seed: (raynas) ``None``: initialise and draw with torch's global RNG, as NNI does. An
            int: initialise from it and draw from the mutator's own RNG (torch's global RNG is
            left alone); the RNG state travels in ``state_dict()``.

    Attributes:
        sample_log_prob: the latest sample's negative log-probability (a 0-dim tensor, with a
            graph when sampled with gradients enabled).
        sample_entropy: the latest sample's ``-p log p`` terms (a detached 0-dim tensor).
        sample_skip_penalty: the latest sample's KL skip penalty (0-dim tensor, with a graph).
        arch_optimizer: the Adam optimizer of the controller.
        baseline: the moving-average reward (``None`` before the first :meth:`arch_step`).
    """

    # NNI's constructor: its many keyword arguments and their checks, one per line
    def __init__(
        self,
        model: nn.Module,
        lstm_size: int = 64,
        lstm_num_layers: int = 1,
        tanh_constant: float | None = 1.5,
        cell_exit_extra_step: bool = False,
        skip_target: float = 0.4,
        temperature: float | None = None,
        branch_bias: float = 0.25,
        entropy_reduction: str = "sum",
        *,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        baseline_decay: float = 0.95,
        lr: float = 3.5e-3,
        weight_decay: float = 0.0,
        grad_clip: float | None = 5.0,
        seed: int | None = None,
    ):
        super().__init__(model)
        self.lstm_size = _integer("lstm_size", lstm_size)
        self.lstm_num_layers = _integer("lstm_num_layers", lstm_num_layers)
        self.tanh_constant = (
            None if tanh_constant is None else _number("tanh_constant", tanh_constant, minimum=0.0, strict=True)
        )
        self.temperature = (
            None if temperature is None else _number("temperature", temperature, minimum=0.0, strict=True)
        )
        if not isinstance(cell_exit_extra_step, bool):
            raise EnasConfigError(
                f"EnasMutator cell_exit_extra_step must be True or False, got {cell_exit_extra_step!r}"
            )
        self.cell_exit_extra_step = cell_exit_extra_step
        self.skip_target = _number("skip_target", skip_target, minimum=0.0, strict=True, maximum=1.0, strict_max=True)
        self.branch_bias = _number("branch_bias", branch_bias)
        if entropy_reduction not in ("sum", "mean"):
            raise EnasConfigError(f"EnasMutator entropy_reduction must be 'sum' or 'mean', got {entropy_reduction!r}")
        self.entropy_reduction = entropy_reduction
        self.entropy_weight = _number("entropy_weight", entropy_weight, minimum=0.0)
        self.skip_weight = _number("skip_weight", skip_weight, minimum=0.0)
        self.baseline_decay = _number("baseline_decay", baseline_decay, minimum=0.0, maximum=1.0)
        self.grad_clip = None if grad_clip is None else _number("grad_clip", grad_clip, minimum=0.0, strict=True)
        _number("lr", lr, minimum=0.0, strict=True)
        _number("weight_decay", weight_decay, minimum=0.0)
        self.seed = seed
        self._rng: np.random.Generator | None = None
        if seed is None:
            self._build()  # torch's global RNG, as NNI
        else:
            self._rng = np.random.default_rng(seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self._rng.integers(2**62)))
                self._build()
        first = next(iter(model.parameters()), None)
        self.to(first.device if first is not None else torch.device("cpu"))
        self.arch_optimizer = torch.optim.Adam(self.arch_parameters(), lr=float(lr), weight_decay=float(weight_decay))
        self.baseline: float | None = None
        self._transient = ("sample_log_prob", "sample_entropy", "sample_skip_penalty")  # graphs do not pickle
        self.sample_log_prob: torch.Tensor | None = None
        self.sample_entropy: torch.Tensor | None = None
        self.sample_skip_penalty: torch.Tensor | None = None

    def _build(self) -> None:
        """The controller's modules, created in NNI's order (so one torch seed, one init)."""
        size = self.lstm_size
        self.lstm = StackedLSTMCell(self.lstm_num_layers, size)
        self.attn_anchor = nn.Linear(size, size, bias=False)
        self.attn_query = nn.Linear(size, size, bias=False)
        self.v_attn = nn.Linear(size, 1, bias=False)
        self.g_emb = nn.Parameter(torch.randn(1, size) * 0.1)
        self.skip_targets = nn.Parameter(torch.tensor([1.0 - self.skip_target, self.skip_target]), requires_grad=False)
        self.bias_dict = nn.ParameterDict()
        self.max_layer_choice = 0
        for mutable in self.mutables:
            if not isinstance(mutable, LayerChoice):
                continue
            self.max_layer_choice = max(self.max_layer_choice, len(mutable))
            if "reduce" in mutable.key:
                bias = [self.branch_bias if "conv" in str(type(op)).lower() else -self.branch_bias for op in mutable]
                self.bias_dict[_param_name(mutable.key)] = nn.Parameter(torch.tensor(bias), requires_grad=False)
        self.embedding = nn.Embedding(self.max_layer_choice + 1, size)
        self.soft = nn.Linear(size, max(self.max_layer_choice, 1), bias=False)

    # -- sampling ---------------------------------------------------------------------------

    def _scale(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _draw(self, logits: torch.Tensor, greedy: bool, probs: torch.Tensor | None = None) -> torch.Tensor:
        """One index per row of ``logits`` (a ``(rows,)`` long tensor on their device)."""
        if greedy:
            return torch.argmax(logits, dim=-1)
        if probs is None:
            probs = F.softmax(logits, dim=-1)
        if self._rng is None:
            return torch.multinomial(probs, 1).view(-1)  # torch's global RNG, as NNI
        p = probs.detach().double().cpu().numpy()
        cdf = np.cumsum(p, axis=-1)
        u = self._rng.random(p.shape[0]) * cdf[:, -1]
        picks = [min(int(np.searchsorted(row, x, side="right")), p.shape[1] - 1) for row, x in zip(cdf, u)]
        return torch.tensor(picks, dtype=torch.long, device=logits.device)

    def _step(self, walk: _Walk) -> None:
        walk.h, walk.c = self.lstm(walk.inputs, (walk.h, walk.c))

    def _account(self, walk: _Walk, log_prob: torch.Tensor) -> None:
        reduce = torch.sum if self.entropy_reduction == "sum" else torch.mean
        walk.log_prob = walk.log_prob + reduce(log_prob)
        walk.entropy = walk.entropy + reduce((log_prob * torch.exp(-log_prob)).detach())

    def _layer_choice(self, walk: _Walk, mutable: LayerChoice, greedy: bool) -> torch.Tensor:
        n = len(mutable)
        self._step(walk)
        logits = self._scale(self.soft(walk.h[-1])[:, :n])
        name = _param_name(mutable.key)
        if name in self.bias_dict:
            logits = logits + self.bias_dict[name]
        index = self._draw(logits, greedy)
        self._account(walk, F.cross_entropy(logits, index, reduction="none"))
        walk.policy[mutable.key] = F.softmax(logits.detach(), dim=-1).view(-1).cpu().tolist()
        walk.inputs = self.embedding(index)
        return F.one_hot(index, num_classes=n).view(-1).bool().cpu()

    def _input_choice(self, walk: _Walk, mutable: InputChoice, greedy: bool) -> torch.Tensor:
        n, k = mutable.n_candidates, mutable.n_chosen
        anchors = []
        for label in mutable.choose_from:
            if label not in walk.anchors:  # no scope of that key was left yet: anchor it here
                self._step(walk)
                walk.anchors[label] = walk.h[-1]
            anchors.append(walk.anchors[label])
        stacked = torch.cat(anchors, 0)  # (n, lstm_size)
        q = self.v_attn(torch.tanh(self.attn_anchor(stacked) + self.attn_query(walk.h[-1])))  # (n, 1)
        q = self._scale(q)
        if k is None:  # each input on its own: a 2-way softmax per input over [-q, q]
            logits = torch.cat([-q, q], 1)
            # log_softmax([-q, q]) == logsigmoid([-2q, 2q]), elementwise (tiny row-wise softmaxes
            # are slow on a busy machine's thread pool)
            log_probs = F.logsigmoid(2.0 * logits)
            keep = self._draw(logits, greedy, log_probs.exp())
            skip_prob = torch.sigmoid(logits)
            walk.skip_penalty = walk.skip_penalty + torch.sum(skip_prob * torch.log(skip_prob / self.skip_targets))
            self._account(walk, -log_probs.gather(1, keep.view(-1, 1)).view(-1))
            walk.policy[mutable.key] = log_probs.detach()[:, 1].exp().cpu().tolist()
            walk.inputs = (torch.matmul(keep.float(), stacked) / (1.0 + torch.sum(keep))).unsqueeze(0)
            return keep.bool().cpu()
        logits = q.view(1, -1)
        walk.policy[mutable.key] = F.softmax(logits.detach(), dim=-1).view(-1).cpu().tolist() if k else [0.0] * n
        mask = torch.zeros(n, dtype=torch.bool, device=logits.device)
        terms = []
        for _ in range(k):  # NNI: k == 1; raynas: k inputs without replacement
            masked = logits.masked_fill(mask.view(1, -1), float("-inf")) if terms else logits
            index = self._draw(masked, greedy)
            terms.append(F.cross_entropy(masked, index, reduction="none"))
            mask = mask.clone()
            mask[index] = True
        if terms:
            self._account(walk, torch.cat(terms))
            chosen = mask.nonzero().view(-1).tolist()
            walk.inputs = anchors[chosen[0]] if k == 1 else stacked[chosen].mean(0, keepdim=True)
        return mask.cpu()

    def _walk(self, greedy: bool) -> _Walk:
        walk = _Walk(self)

        def visit(node: Any) -> None:
            mutable = node.mutable
            if isinstance(mutable, LayerChoice) and mutable.key not in walk.decisions:
                walk.decisions[mutable.key] = self._layer_choice(walk, mutable, greedy)
            elif isinstance(mutable, InputChoice) and mutable.key not in walk.decisions:
                walk.decisions[mutable.key] = self._input_choice(walk, mutable, greedy)
            for child in node.children:
                visit(child)
            if isinstance(mutable, MutableScope) and mutable.key not in walk.anchors:
                if self.cell_exit_extra_step:
                    self._step(walk)
                walk.anchors[mutable.key] = walk.h[-1]

        visit(self.mutables)
        return walk

    def sample_search(self) -> dict[str, torch.Tensor]:
        walk = self._walk(greedy=False)
        self.sample_log_prob, self.sample_entropy, self.sample_skip_penalty = (
            walk.log_prob,
            walk.entropy,
            walk.skip_penalty,
        )
        return walk.decisions

    def sample_final(self) -> dict[str, torch.Tensor]:
        """The most likely decision at every step (deterministic; draws nothing)."""
        with torch.no_grad():
            return self._walk(greedy=True).decisions

    def policy(self) -> dict[str, list[float]]:
        """The controller's probabilities along the greedy path, ``{key: list of floats}``: a
        LayerChoice's softmax, the keep-probability of each input of an ``n_chosen=None``
        InputChoice, the first draw's softmax of an ``n_chosen=k`` one. Draws nothing."""
        with torch.no_grad():
            return self._walk(greedy=True).policy

    # -- the controller step ----------------------------------------------------------------

    def reinforce_loss(self, reward: Any, baseline: float, skip_weight: float | None = None) -> torch.Tensor:
        """NNI's REINFORCE loss of the latest sample: ``sample_log_prob * (reward - baseline)``,
        plus ``skip_weight * sample_skip_penalty`` when ``skip_weight`` (default: the mutator's) is
        nonzero. :meth:`arch_step` and :class:`~raynas.nas.enas.EnasTrainer` both use it."""
        skip_weight = self.skip_weight if skip_weight is None else skip_weight
        loss = self.sample_log_prob * (reward - baseline)
        if skip_weight:
            loss = loss + skip_weight * self.sample_skip_penalty
        return loss

    def arch_step(
        self,
        arch_batch: tuple[torch.Tensor, torch.Tensor],
        *,
        train_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        criterion: Criterion | None = None,
        reduce: Reduce | None = None,
        lr: float | None = None,
        weight_decay: float = 0.0,
    ) -> dict[str, float]:
        """One REINFORCE step of the controller on a batch of the architecture split.

        The loss is NNI's ``EnasTrainer``'s: ``sample_log_prob * (reward - baseline) +
        skip_weight * sample_skip_penalty`` with reward ``accuracy + entropy_weight *
        sample_entropy``. The sampled path is scored without gradients (the model stays in
        training mode, so BatchNorm uses batch statistics, as the path was trained).
        ``train_batch``, ``criterion``, ``lr`` and ``weight_decay`` are not used.

        Returns:
            ``{"reward", "arch_accuracy", "entropy", "skip_penalty", "baseline"}`` (all but the
            baseline this replica's; the baseline is the same on every replica).
        """
        model = self.model
        x, y = arch_batch
        self.arch_optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            self.reset()
        with torch.no_grad():
            logits = model(x)
            accuracy = (logits.argmax(dim=-1) == y).float().mean()
        reward = accuracy + self.entropy_weight * self.sample_entropy.detach()
        mean = reward.detach().clone().reshape(1)
        if reduce is not None:
            reduce([mean])
        mean_reward = float(mean[0])
        if self.baseline is None:
            self.baseline = mean_reward
        else:
            self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * mean_reward
        loss = self.reinforce_loss(reward.detach(), self.baseline)
        if loss.requires_grad:
            loss.backward()
        params = self.arch_parameters()
        grads = grads_of(params)
        if reduce is not None:
            reduce(grads)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.arch_optimizer.step()
        return {
            "reward": float(reward),
            "arch_accuracy": float(accuracy),
            "entropy": float(self.sample_entropy),
            "skip_penalty": float(self.sample_skip_penalty.detach()),
            "baseline": float(self.baseline),
        }

    # -- state ------------------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": None if self._rng is None else self._rng.bit_generator.state, "baseline": self.baseline}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None and self._rng is not None:
            self._rng.bit_generator.state = state["rng"]
        self.baseline = state.get("baseline")
