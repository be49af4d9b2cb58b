"""Strategies: how the server configures rounds and aggregates results.

Flower's names and keyword arguments. The weighted-mean family (FedAvg, FedAvgM, FedProx,
FaultTolerantFedAvg, FedOpt and its optimizers) and the DP wrappers around them stream
results into the aggregate as they arrive; the robust rules (FedMedian, FedTrimmedAvg, Krum,
MultiKrum, Bulyan) and QFedAvg need every result at once.
"""

from __future__ import annotations

from fedsilo.server.strategy.bulyan import Bulyan
from fedsilo.server.strategy.dp_adaptive_clipping import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
)
from fedsilo.server.strategy.dp_fixed_clipping import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from fedsilo.server.strategy.dpfedavg import DPFedAvgAdaptive, DPFedAvgFixed
from fedsilo.server.strategy.fault_tolerant_fedavg import FaultTolerantFedAvg
from fedsilo.server.strategy.fedadagrad import FedAdagrad
from fedsilo.server.strategy.fedadam import FedAdam
from fedsilo.server.strategy.fedavg import FedAvg
from fedsilo.server.strategy.fedavg_android import FedAvgAndroid
from fedsilo.server.strategy.fedavgm import FedAvgM
from fedsilo.server.strategy.fedmedian import FedMedian
from fedsilo.server.strategy.fedopt import FedOpt
from fedsilo.server.strategy.fedprox import FedProx
from fedsilo.server.strategy.fedtrimmedavg import FedTrimmedAvg
from fedsilo.server.strategy.fedxgb import FedXgbBagging, FedXgbCyclic, FedXgbNnAvg
from fedsilo.server.strategy.fedyogi import FedYogi
from fedsilo.server.strategy.krum import Krum, MultiKrum
from fedsilo.server.strategy.privacy import RdpAccountant
from fedsilo.server.strategy.qfedavg import QFedAvg
from fedsilo.server.strategy.strategy import FitAccumulator, Strategy

__all__ = [
    "Bulyan",
    "DPFedAvgAdaptive",
    "DPFedAvgFixed",
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "FaultTolerantFedAvg",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgAndroid",
    "FedAvgM",
    "FedMedian",
    "FedOpt",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "FedXgbNnAvg",
    "FedYogi",
    "FitAccumulator",
    "Krum",
    "MultiKrum",
    "QFedAvg",
    "RdpAccountant",
    "Strategy",
]
