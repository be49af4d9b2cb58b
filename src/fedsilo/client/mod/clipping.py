"""The client-side half of the client-side DP wrappers: each site clips its own update.

With ``DifferentialPrivacyClientSide*Clipping`` the server sends the clipping norm in every
fit config (key ``clipping_norm``) and only adds noise; the raw update never leaves the site
unclipped. Wrap the site's client so that, after training, its update (trained model minus
the model it received) is scaled to that norm. The adaptive variant also reports
``norm_bit`` (1 when the update was clipped), from which the server moves the norm.
"""

from __future__ import annotations

from fedsilo.client.client import Client
from fedsilo.client.numpy_client import NumPyClient
from fedsilo.common.clipping import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_update
from fedsilo.common.exceptions import ClientReturnError
from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
)

__all__ = ["AdaptiveClippingClient", "FixedClippingClient"]


class FixedClippingClient(Client):
    """Runs the wrapped client's ``fit``, then clips its update to the server's norm."""

    reports_norm_bit = False

    def __init__(self, client: Client | NumPyClient) -> None:
        self.client = client.to_client()

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return self.client.get_properties(ins)

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        return self.client.get_parameters(ins)

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        return self.client.evaluate(ins)

    def fit(self, ins: FitIns) -> FitRes:
        if KEY_CLIPPING_NORM not in ins.config:
            raise ClientReturnError(
                f"the fit config has no '{KEY_CLIPPING_NORM}': this client clips for a server "
                "running a DifferentialPrivacyClientSide* strategy; use one there, or do not "
                "wrap the client")
        clipping_norm = float(ins.config[KEY_CLIPPING_NORM])  # type: ignore[arg-type]
        res = self.client.fit(ins)
        if res.status.code != Code.OK:
            return res
        received = parameters_to_ndarrays(ins.parameters)
        trained = parameters_to_ndarrays(res.parameters)
        update = [t - r for t, r in zip(trained, received, strict=True)]
        clipped, was_clipped = clip_update(update, clipping_norm)
        metrics = dict(res.metrics)
        if self.reports_norm_bit:
            metrics[KEY_NORM_BIT] = int(was_clipped)
        sent = [(r + u).astype(t.dtype, copy=False)
                for r, u, t in zip(received, clipped, trained, strict=True)]
        return FitRes(res.status, ndarrays_to_parameters(sent), res.num_examples, metrics)


class AdaptiveClippingClient(FixedClippingClient):
    """Like :class:`FixedClippingClient`, and reports ``norm_bit`` in the fit metrics."""

    reports_norm_bit = True
