"""``ProxylessNasMutator``: binary gates over LayerChoices (Cai et al. 2019), as NNI v1.9's
``nni.nas.pytorch.proxylessnas.ProxylessNasMutator``.

Each LayerChoice gets a :class:`MixedOp`, registered on it as ``registered_module`` (so its
architecture parameters are the model's parameters and travel in its ``state_dict``):
``ap_path_alpha`` (the architecture weights, softmax = probability of each op) and ``ap_path_wb``
(the binary gates: one-hot on the op sampled by :meth:`ProxylessNasMutator.reset_binary_gates`).
Both start with ``requires_grad=False``; :class:`~raynas.nas.proxylessnas.ProxylessNasTrainer`
enables them for an architecture step only.

The forward mode (NNI's ``binary_mode``, a class attribute of :class:`MixedOp` as in NNI):

- ``None``: only the sampled op runs (weight steps);
- ``"full_v2"``: the sampled op runs; in backward every op's output is recomputed to give each
  gate its gradient ``sum(out_k * grad_output)`` (the paper's Appendix D);
- ``"full"`` / ``"two"``: the gate-weighted sum over all ops / over two sampled ops (section 3.2.1).

A candidate module may define ``is_zero_layer()`` (NNI's example ops do); one without it is not
a zero layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.nas.mutator import BaseMutator
from raynas.nas.proxylessnas.utils import detach_variable
from raynas.nas.space import model_choices, to_exported

__all__ = ["ArchGradientFunction", "MixedOp", "ProxylessNasMutator"]

#: the forward modes of :class:`MixedOp`
FORWARD_MODES = (None, "full", "two", "full_v2")


def _is_zero_layer(op: Any) -> bool:
    check = getattr(op, "is_zero_layer", None)
    return bool(check()) if callable(check) else False


class ArchGradientFunction(torch.autograd.Function):
    """Run one op; in backward, also hand the gates the gradient ``backward_func`` computes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, binary_gates: torch.Tensor, run_func: Any, backward_func: Any) -> Any:
        ctx.run_func = run_func
        ctx.backward_func = backward_func
        detached_x = detach_variable(x)
        with torch.enable_grad():
            output = run_func(detached_x)
        ctx.save_for_backward(detached_x, output)
        return output.data

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        detached_x, output = ctx.saved_tensors
        grad_x = torch.autograd.grad(output, detached_x, grad_output, only_inputs=True)
        binary_grads = ctx.backward_func(detached_x.data, output.data, grad_output.data)
        return grad_x[0], binary_grads, None, None


class MixedOp(nn.Module):
    """The architecture weights and binary gates of one LayerChoice, and its forward in each mode.

    Args:
        mutable: the LayerChoice.
    """

    forward_mode: str | None = None

    def __init__(self, mutable: LayerChoice):
        super().__init__()
        self.ap_path_alpha = nn.Parameter(torch.zeros(len(mutable)), requires_grad=False)
        self.ap_path_wb = nn.Parameter(torch.zeros(len(mutable)), requires_grad=False)
        self.active_index: list[Any] = [0]
        self.inactive_index: list[Any] | None = None
        self.log_prob: torch.Tensor | None = None
        self.current_prob_over_ops: torch.Tensor | None = None
        self.n_choices = len(mutable)

    def get_ap_path_alpha(self) -> nn.Parameter:
        """The architecture weights."""
        return self.ap_path_alpha

    def to_requires_grad(self) -> None:
        """Let the architecture weights and gates take gradients."""
        self.ap_path_alpha.requires_grad = True
        self.ap_path_wb.requires_grad = True

    def to_disable_grad(self) -> None:
        """Stop the architecture weights and gates from taking gradients."""
        self.ap_path_alpha.requires_grad = False
        self.ap_path_wb.requires_grad = False

    def forward(self, mutable: LayerChoice, x: torch.Tensor) -> torch.Tensor:
        """The LayerChoice's output in the current :attr:`forward_mode` (one input tensor)."""
        mode = MixedOp.forward_mode
        if mode in ("full", "two"):
            output: Any = 0
            for i in self.active_index:
                output = output + self.ap_path_wb[i] * mutable[i](x)
            for i in self.inactive_index:
                output = output + self.ap_path_wb[i] * mutable[i](x).detach()
            return output
        if mode == "full_v2":
            ops, active, gates = list(mutable), self.active_index[0], self.ap_path_wb

            def run(inp: torch.Tensor) -> torch.Tensor:
                return ops[active](inp)

            def backward(inp: torch.Tensor, out: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
                binary_grads = torch.zeros_like(gates.data)
                with torch.no_grad():
                    for k in range(len(ops)):
                        out_k = out.data if k == active else ops[k](inp.data)
                        binary_grads[k] = torch.sum(out_k * grad_output)
                return binary_grads

            return ArchGradientFunction.apply(x, gates, run, backward)
        return self.active_op(mutable)(x)

    @property
    def probs_over_ops(self) -> torch.Tensor:
        """``softmax(ap_path_alpha)``."""
        return F.softmax(self.ap_path_alpha, dim=0)

    @property
    def chosen_index(self) -> tuple[int, float]:
        """The most probable op and its probability."""
        probs = self.probs_over_ops.data.cpu().numpy()
        index = int(np.argmax(probs))
        return index, float(probs[index])

    def active_op(self, mutable: LayerChoice) -> nn.Module:
        """The sampled (active) op."""
        return mutable[self._index(self.active_index[0])]

    @property
    def active_op_index(self) -> int:
        """The sampled op's index."""
        return self._index(self.active_index[0])

    @staticmethod
    def _index(entry: Any) -> int:
        return int(entry[0]) if isinstance(entry, tuple) else int(entry)

    def set_chosen_op_active(self) -> None:
        """Make the most probable op the active one (for validation)."""
        chosen, _ = self.chosen_index
        self.active_index = [chosen]
        self.inactive_index = [i for i in range(self.n_choices) if i != chosen]

    def binarize(self, mutable: LayerChoice, draw: Any = None) -> None:
        """Sample the active op(s) from the probabilities and set the gates one-hot on it.

        Args:
            mutable: the LayerChoice.
            draw: ``draw(probs) -> index`` draws the active op (not in ``two`` mode); ``None``:
                torch's RNG, as NNI (``supernet.algorithm: proxylessnas`` passes its own RNG).
        """
        self.log_prob = None
        self.ap_path_wb.data.zero_()
        probs = self.probs_over_ops
        if MixedOp.forward_mode == "two":
            sample_op = torch.multinomial(probs.data, 2, replacement=False)
            probs_slice = F.softmax(torch.stack([self.ap_path_alpha[idx] for idx in sample_op]), dim=0)
            self.current_prob_over_ops = torch.zeros_like(probs)
            for i, idx in enumerate(sample_op):
                self.current_prob_over_ops[idx] = probs_slice[i]
            c = torch.multinomial(probs_slice.data, 1)[0]
            active, inactive = sample_op[c].item(), sample_op[1 - c].item()
            self.active_index, self.inactive_index = [active], [inactive]
            self.ap_path_wb.data[active] = 1.0
        else:
            sample = int(draw(probs.data)) if draw is not None else torch.multinomial(probs, 1)[0].item()
            self.active_index = [sample]
            self.inactive_index = [i for i in range(len(mutable)) if i != sample]
            self.log_prob = torch.log(probs[sample])
            self.current_prob_over_ops = probs
            self.ap_path_wb.data[sample] = 1.0
        for choice in mutable:  # avoid over-regularization
            if choice is not None:
                for param in choice.parameters():
                    param.grad = None

    def set_arch_param_grad(self, mutable: LayerChoice) -> None:
        """The architecture weights' gradient from the gates' (``d p_j / d alpha_i`` chain rule)."""
        if self.ap_path_wb.grad is None or _is_zero_layer(self.active_op(mutable)):
            self.ap_path_alpha.grad = None
            return
        binary_grads = self.ap_path_wb.grad.data
        if self.ap_path_alpha.grad is None:
            self.ap_path_alpha.grad = torch.zeros_like(self.ap_path_alpha.data)
        if MixedOp.forward_mode == "two":
            involved = self.active_index + self.inactive_index
            probs_slice = F.softmax(torch.stack([self.ap_path_alpha[idx] for idx in involved]), dim=0).data
            for i in range(2):
                for j in range(2):
                    delta = 1.0 if i == j else 0.0
                    self.ap_path_alpha.grad.data[involved[i]] += (
                        binary_grads[involved[j]] * probs_slice[j] * (delta - probs_slice[i])
                    )
            self.active_index = [(idx, self.ap_path_alpha.data[idx].item()) for idx in self.active_index]
            self.inactive_index = [(idx, self.ap_path_alpha.data[idx].item()) for idx in self.inactive_index]
        else:
            probs = self.probs_over_ops.data
            weighted = binary_grads * probs
            self.ap_path_alpha.grad.data += weighted - probs * weighted.sum()

    def rescale_updated_arch_param(self) -> None:
        """``two`` mode: shift the two involved weights so their log-sum-exp is unchanged."""
        if not isinstance(self.active_index[0], tuple):
            return  # a zero layer was active: nothing was updated
        entries = self.active_index + self.inactive_index
        involved = [idx for idx, _ in entries]
        old_alphas = [alpha for _, alpha in entries]
        new_alphas = [float(self.ap_path_alpha.data[idx]) for idx in involved]
        offset = math.log(sum(math.exp(a) for a in new_alphas) / sum(math.exp(a) for a in old_alphas))
        for idx in involved:
            self.ap_path_alpha.data[idx] -= offset


class ProxylessNasMutator(BaseMutator):
    """Creates and drives the :class:`MixedOp` of every LayerChoice of the model (NNI's API).

    Args:
        model: the model; its mutables must be LayerChoices (ProxylessNAS has no input choices).
    """

    #: the exported architecture is a function of the architecture weights
    learnable = True

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self._unused_modules: list[dict[int, nn.Module]] | None = None
        self.mutable_list: list[LayerChoice] = []
        for mutable in self.undedup_mutables:
            if isinstance(mutable, LayerChoice):
                self.mutable_list.append(mutable)
                mutable.registered_module = MixedOp(mutable)

    def on_forward_layer_choice(self, mutable: LayerChoice, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """The MixedOp's output and the active op's index (NNI returns the index, not a mask)."""
        idx = mutable.registered_module.active_op_index
        return mutable.registered_module(mutable, *args, **kwargs), idx

    def on_forward_input_choice(self, mutable: InputChoice, tensor_list: list) -> tuple[Any, Any]:
        raise NotImplementedError(
            f"ProxylessNasMutator handles LayerChoices only (as NNI's); the model has InputChoice {mutable.key!r}"
        )

    def reset_binary_gates(self) -> None:
        """Sample every LayerChoice's active op and set its gates (NNI's ``binarize``)."""
        for mutable in self.mutable_list:
            mutable.registered_module.binarize(mutable)

    def set_chosen_op_active(self) -> None:
        """Make every LayerChoice's most probable op active (validation)."""
        for mutable in self.mutable_list:
            mutable.registered_module.set_chosen_op_active()

    def num_arch_params(self) -> int:
        """The number of LayerChoices."""
        return len(self.mutable_list)

    def set_arch_param_grad(self) -> None:
        """Every architecture weight's gradient from its gates' gradient."""
        for mutable in self.mutable_list:
            mutable.registered_module.set_arch_param_grad(mutable)

    def get_architecture_parameters(self) -> Iterator[nn.Parameter]:
        """Every LayerChoice's ``ap_path_alpha``."""
        for mutable in self.mutable_list:
            yield mutable.registered_module.get_ap_path_alpha()

    def binary_gates(self) -> list[nn.Parameter]:
        """Every LayerChoice's ``ap_path_wb`` (raynas: what replicas average in an architecture step)."""
        return [mutable.registered_module.ap_path_wb for mutable in self.mutable_list]

    def change_forward_mode(self, mode: str | None) -> None:
        """Set the forward mode of every MixedOp (see the module docstring)."""
        MixedOp.forward_mode = mode

    def get_forward_mode(self) -> str | None:
        """The forward mode now."""
        return MixedOp.forward_mode

    def rescale_updated_arch_param(self) -> None:
        """``two`` mode: rescale the updated architecture weights."""
        for mutable in self.mutable_list:
            mutable.registered_module.rescale_updated_arch_param()

    def unused_modules_off(self) -> None:
        """Take the ops that this forward does not run out of their LayerChoices (kept aside)."""
        self._unused_modules = []
        full = self.get_forward_mode() in ("full", "two", "full_v2")
        for mutable in self.mutable_list:
            mixed_op = mutable.registered_module
            involved = mixed_op.active_index + (mixed_op.inactive_index or []) if full else mixed_op.active_index
            involved = {MixedOp._index(i) for i in involved}
            unused = {}
            for i in range(mixed_op.n_choices):
                if i not in involved:
                    unused[i] = mutable[i]
                    mutable[i] = None
            self._unused_modules.append(unused)

    def unused_modules_back(self) -> None:
        """Put the ops :meth:`unused_modules_off` took out back."""
        if self._unused_modules is None:
            return
        for mutable, unused in zip(self.mutable_list, self._unused_modules):
            for i, module in unused.items():
                mutable[i] = module
        self._unused_modules = None

    def arch_requires_grad(self) -> None:
        """Let the architecture weights and gates take gradients."""
        for mutable in self.mutable_list:
            mutable.registered_module.to_requires_grad()

    def arch_disable_grad(self) -> None:
        """Stop the architecture weights and gates from taking gradients."""
        for mutable in self.mutable_list:
            mutable.registered_module.to_disable_grad()

    def sample_final(self) -> dict[str, torch.Tensor]:
        """Every LayerChoice's most probable op, as a one-hot bool tensor."""
        result = {}
        for mutable in self.mutable_list:
            index, _ = mutable.registered_module.chosen_index
            result[mutable.key] = F.one_hot(torch.tensor(index), num_classes=len(mutable)).view(-1).bool()
        return result

    def export(self) -> dict[str, Any]:
        """:meth:`sample_final` in raynas' readable form (candidate names)."""
        return to_exported(self.sample_final(), model_choices(self))
