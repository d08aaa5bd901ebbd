"""``EnasMutator``: an LSTM controller that samples paths, trained by REINFORCE (Pham et al. 2018).

The controller walks the choices in parse order, one LSTM step per key. At each step a
per-key linear head turns the LSTM state into logits (``tanh_constant * tanh(logits /
temperature)`` as in ENAS) and the decision is drawn:

- a **LayerChoice**: one candidate from ``softmax(logits)``;
- an **InputChoice with** ``n_chosen=None``: each input on its own, kept with probability
  ``sigmoid(logit_i)`` (independent Bernoulli; any number, none included);
- an **InputChoice with** ``n_chosen=k``: ``k`` distinct inputs, drawn one after the other from
  the softmax over the inputs not yet taken (sampling without replacement).

The next LSTM input is the embedding of what was chosen (the mean of the chosen inputs'
embeddings; zeros when none). Decisions are ``torch.bool`` masks. The sample's log-probability
and entropy are kept (``sample_log_prob``, ``sample_entropy``; with a graph when sampled with
gradients enabled). Draws come from the mutator's own numpy RNG, so a seed fixes the sequence and
the RNG state travels in ``state_dict()``.

:meth:`EnasMutator.arch_step` is one controller update: sample a path, score it on a batch of
the architecture split (reward = accuracy + ``entropy_weight * entropy``, NNI's entropy bonus),
update the moving-average baseline with the reward averaged across replicas, and take an Adam
step on ``-log_prob * (reward - baseline)``. :meth:`sample_final` decodes greedily (the most
likely decision at every step: argmax, Bernoulli ``p > 0.5``, the top ``k`` in turn), so the
exported architecture is deterministic and draws nothing from the RNG.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.learnable import Criterion, LearnableMutator, Reduce, grads_of
from raynas.nas.mutables import InputChoice, LayerChoice

__all__ = ["EnasMutator", "EnasConfigError"]


class EnasConfigError(ValueError):
    """An ENAS setting breaks its rule (the message names the setting and the value)."""


def _number(name: str, value: Any, *, minimum: float, strict: bool = False, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EnasConfigError(f"EnasMutator {name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum) or (maximum is not None and value > maximum):
        rule = f"{'>' if strict else '>='} {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise EnasConfigError(f"EnasMutator {name} must be {rule}, got {value!r}")
    return float(value)


class EnasMutator(LearnableMutator):
    """Paths sampled by an LSTM controller trained with REINFORCE.

    Args:
        model: the model holding the mutables.
        lstm_size: hidden size of the LSTM cell (and of the decision embeddings).
        tanh_constant: logits become ``tanh_constant * tanh(logits / temperature)``
            (``None``: raw logits).
        temperature: softens the logits (``None``: 1).
        entropy_weight: weight of the sample's entropy added to the reward.
        baseline_decay: decay of the reward's moving-average baseline.
        lr: Adam learning rate of the controller.
        weight_decay: L2 weight decay of the controller.
        grad_clip: clip the controller's gradient norm (after averaging) to this value (``None``:
            no clipping).
        seed: seeds the parameter initialisation and the sampling RNG.

    Attributes:
        arch_optimizer: the Adam optimizer of the controller.
        baseline: the moving-average reward (``None`` before the first controller step; the
            first step starts it at that step's mean reward).
        sample_log_prob: log-probability of the latest sample (a tensor).
        sample_entropy: entropy of the latest sample's decisions (a tensor).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lstm_size: int = 64,
        tanh_constant: float | None = 1.5,
        temperature: float | None = None,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.95,
        lr: float = 3.5e-3,
        weight_decay: float = 0.0,
        grad_clip: float | None = 5.0,
        seed: int | None = None,
    ):
        super().__init__(model)
        if isinstance(lstm_size, bool) or not isinstance(lstm_size, int) or lstm_size < 1:
            raise EnasConfigError(f"EnasMutator lstm_size must be an integer >= 1, got {lstm_size!r}")
        self.tanh_constant = None if tanh_constant is None else _number("tanh_constant", tanh_constant, minimum=0.0, strict=True)
        self.temperature = None if temperature is None else _number("temperature", temperature, minimum=0.0, strict=True)
        self.entropy_weight = _number("entropy_weight", entropy_weight, minimum=0.0)
        self.baseline_decay = _number("baseline_decay", baseline_decay, minimum=0.0, maximum=1.0)
        self.grad_clip = None if grad_clip is None else _number("grad_clip", grad_clip, minimum=0.0, strict=True)
        _number("lr", lr, minimum=0.0, strict=True)
        _number("weight_decay", weight_decay, minimum=0.0)
        self._rng = np.random.default_rng(seed)
        self._specs: list[tuple[str, int, int | None]] = [
            (m.key, m.length, -1 if isinstance(m, LayerChoice) else m.n_chosen)
            for m in self.mutables
            if isinstance(m, (LayerChoice, InputChoice))
        ]
        self.lstm_size = lstm_size
        self.lstm = nn.LSTMCell(lstm_size, lstm_size)
        self.g_emb = nn.Parameter(torch.zeros(1, lstm_size))
        self.heads = nn.ModuleList(nn.Linear(lstm_size, max(n, 1), bias=False) for _k, n, _c in self._specs)
        self.embeddings = nn.ModuleList(nn.Embedding(max(n, 1), lstm_size) for _k, n, _c in self._specs)
        generator = torch.Generator().manual_seed(int(self._rng.integers(2**62)))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.empty(p.shape).uniform_(-0.1, 0.1, generator=generator))
        first = next(iter(model.parameters()), None)
        self.to(first.device if first is not None else torch.device("cpu"))
        self.arch_optimizer = torch.optim.Adam(self.arch_parameters(), lr=float(lr), weight_decay=float(weight_decay))
        self.baseline: float | None = None
        self._transient = ("sample_log_prob", "sample_entropy")  # graphs do not pickle
        self.sample_log_prob: torch.Tensor | None = None
        self.sample_entropy: torch.Tensor | None = None

    # -- sampling ---------------------------------------------------------------------------

    def _logits(self, i: int, h: torch.Tensor) -> torch.Tensor:
        logits = self.heads[i](h).squeeze(0)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _draw(self, probs: torch.Tensor) -> int:
        p = probs.detach().double().cpu().numpy()
        cdf = np.cumsum(p)
        return int(min(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"), len(p) - 1))

    def _run(self, *, greedy: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict[str, list[float]]]:
        device = self.g_emb.device
        h = torch.zeros(1, self.lstm_size, device=device)
        c = torch.zeros(1, self.lstm_size, device=device)
        inp = self.g_emb
        log_prob = torch.zeros((), device=device)
        entropy = torch.zeros((), device=device)
        decisions: dict[str, torch.Tensor] = {}
        policy: dict[str, list[float]] = {}
        for i, (key, n, k) in enumerate(self._specs):
            h, c = self.lstm(inp, (h, c))
            mask = torch.zeros(n, dtype=torch.bool)
            if n == 0 or k == 0:
                decisions[key] = mask
                policy[key] = [0.0] * n
                inp = torch.zeros(1, self.lstm_size, device=device)
                continue
            logits = self._logits(i, h)[:n]
            if k == -1:  # layer choice: one candidate
                logp = torch.log_softmax(logits, dim=-1)
                probs = logp.exp()
                idx = int(torch.argmax(probs)) if greedy else self._draw(probs)
                log_prob = log_prob + logp[idx]
                entropy = entropy - (probs * logp).sum()
                mask[idx] = True
                policy[key] = probs.detach().cpu().tolist()
            elif k is None:  # any number: independent Bernoulli per input
                p1 = torch.sigmoid(logits)
                lp1, lp0 = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
                pv = p1.detach().cpu().numpy()
                picks = pv > 0.5 if greedy else self._rng.random(n) < pv
                mask = torch.from_numpy(np.asarray(picks, dtype=bool))
                log_prob = log_prob + torch.where(mask.to(device), lp1, lp0).sum()
                entropy = entropy - (p1 * lp1 + (1 - p1) * lp0).sum()
                policy[key] = pv.tolist()
            else:  # k of n, without replacement
                taken = torch.zeros(n, dtype=torch.bool, device=device)
                for step in range(k):
                    masked = logits.masked_fill(taken, float("-inf"))
                    logp = torch.log_softmax(masked, dim=-1)
                    probs = logp.exp()
                    if step == 0:
                        policy[key] = probs.detach().cpu().tolist()
                    idx = int(torch.argmax(probs)) if greedy else self._draw(probs)
                    log_prob = log_prob + logp[idx]
                    entropy = entropy - torch.where(taken, torch.zeros_like(probs), probs * logp).sum()
                    taken = taken.clone()
                    taken[idx] = True
                mask = taken.cpu()
            chosen = mask.nonzero().flatten().to(device)
            emb = self.embeddings[i](chosen) if len(chosen) else torch.zeros(1, self.lstm_size, device=device)
            inp = emb.mean(dim=0, keepdim=True)
            decisions[key] = mask
        return decisions, log_prob, entropy, policy

    def sample_search(self) -> dict[str, torch.Tensor]:
        decisions, self.sample_log_prob, self.sample_entropy, _ = self._run(greedy=False)
        return decisions

    def sample_final(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self._run(greedy=True)[0]

    def policy(self) -> dict[str, list[float]]:
        """The controller's probabilities along the greedy path, ``{key: list of floats}``
        (a LayerChoice's softmax, the Bernoulli keep-probabilities, or the first draw's softmax
        of a ``k``-of-``n`` InputChoice). Draws nothing from the RNG."""
        with torch.no_grad():
            return self._run(greedy=True)[3]

    # -- the controller step ----------------------------------------------------------------

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

        The sampled path is scored without gradients (the model stays in training mode, so
        BatchNorm uses batch statistics, as the path was trained). ``train_batch``,
        ``criterion``, ``lr`` and ``weight_decay`` are not used (the reward is the accuracy).

        Returns:
            ``{"reward", "arch_accuracy", "entropy", "baseline"}`` (reward and accuracy this
            replica's; the baseline is the same on every replica).
        """
        model = self.__dict__["model"]
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
        loss = -self.sample_log_prob * (reward.detach() - self.baseline)
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
            "entropy": float(self.sample_entropy.detach()),
            "baseline": float(self.baseline),
        }

    # -- state ------------------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "baseline": self.baseline}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.baseline = state.get("baseline")
