"""ProxylessNAS (Cai et al. 2019), as NNI v1.9's ``nni.nas.pytorch.proxylessnas``:
:class:`ProxylessNasMutator` (binary gates) and :class:`ProxylessNasTrainer`."""

from raynas.nas.proxylessnas.mutator import MixedOp, ProxylessNasMutator
from raynas.nas.proxylessnas.trainer import ProxylessNasTrainer

__all__ = ["MixedOp", "ProxylessNasMutator", "ProxylessNasTrainer"]
