"""Message-API strategies with ``start()``: Flower's ``flwr.serverapp.strategy``.

They reuse the legacy strategies' aggregation functions; FedAvg and the strategies built
on its mean fold replies into the aggregate as they arrive.
"""

from __future__ import annotations

from fedsilo.serverapp.strategy._dp import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from fedsilo.serverapp.strategy._fedavg import FedAvg, aggregate_metricrecords
from fedsilo.serverapp.strategy._rules import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedMedian,
    FedOpt,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
)
from fedsilo.serverapp.strategy._strategy import Result, Strategy, sample_nodes
from fedsilo.serverapp.strategy._xgb import (
    FedXgbBagging,
    FedXgbCyclic,
    booster_bytes,
    booster_record,
)

__all__ = [
    "Bulyan",
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedOpt",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "QFedAvg",
    "Result",
    "Strategy",
    "aggregate_metricrecords",
    "booster_bytes",
    "booster_record",
    "sample_nodes",
]
