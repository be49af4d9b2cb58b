from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedsilo.client import NumPyClient
from fedsilo.client.message_handler import handle_instruction
from fedsilo.common import (
    ClientReturnError,
    Code,
    EvaluateIns,
    FitIns,
    GetParametersIns,
    GetPropertiesIns,
    ReconnectIns,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

PARAMS = ndarrays_to_parameters([np.ones(3)])


class Returns(NumPyClient):
    def __init__(self, fit: Any = None, evaluate: Any = None, params: Any = None) -> None:
        self._fit, self._evaluate, self._params = fit, evaluate, params

    def get_parameters(self, config: dict[str, Any]) -> Any:
        return self._params

    def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
        return self._fit

    def evaluate(self, parameters: Any, config: dict[str, Any]) -> Any:
        return self._evaluate


def test_fit_result_is_encoded() -> None:
    client = Returns(fit=([np.full(3, 2.0)], 10, {"loss": 0.1})).to_client()
    res = client.fit(FitIns(PARAMS, {}))
    assert res.status.code == Code.OK and res.num_examples == 10
    np.testing.assert_array_equal(parameters_to_ndarrays(res.parameters)[0], np.full(3, 2.0))


@pytest.mark.parametrize("bad", [
    [np.ones(3)],  # not a tuple
    ([np.ones(3)], 10),  # two items
    (np.ones(3), 10, {}),  # an array, not a list of arrays
    ([[1.0, 2.0]], 10, {}),  # nested list, not arrays
    ([np.ones(3)], "10", {}),  # count as str
    ([np.ones(3)], 10, None),  # metrics not a dict
])
def test_wrong_fit_return_raises_with_a_correct_example(bad: Any) -> None:
    with pytest.raises(ClientReturnError, match=r"return \[np.array"):
        Returns(fit=bad).to_client().fit(FitIns(PARAMS, {}))


@pytest.mark.parametrize("bad", [(None, 5, {}), (0.1, 5), ("x", 5, {}), (0.1, 5.5, {})])
def test_wrong_evaluate_return_raises_with_a_correct_example(bad: Any) -> None:
    with pytest.raises(ClientReturnError, match="return 0.42, 120"):
        Returns(evaluate=bad).to_client().evaluate(EvaluateIns(PARAMS, {}))


def test_wrong_get_parameters_return_raises() -> None:
    with pytest.raises(ClientReturnError, match="get_parameters must return a list"):
        Returns(params=np.ones(3)).to_client().get_parameters(GetParametersIns({}))


def test_numpy_integer_counts_and_losses_are_accepted() -> None:
    client = Returns(evaluate=(np.float32(0.5), np.int64(7), {})).to_client()
    res = client.evaluate(EvaluateIns(PARAMS, {}))
    assert res.loss == 0.5 and res.num_examples == 7


def test_methods_not_overridden_answer_not_implemented() -> None:
    class Bare(NumPyClient):
        pass

    client = Bare().to_client()
    assert client.get_properties(GetPropertiesIns({})).status.code == (
        Code.GET_PROPERTIES_NOT_IMPLEMENTED)
    assert client.fit(FitIns(PARAMS, {})).status.code == Code.FIT_NOT_IMPLEMENTED


def test_handler_turns_an_exception_into_a_failed_reply_with_its_text() -> None:
    class Raises(NumPyClient):
        def fit(self, parameters: Any, config: Any) -> Any:
            raise RuntimeError("disk full")

    res = handle_instruction(Raises().to_client(), FitIns(PARAMS, {}))
    assert res.status.code == Code.FIT_NOT_IMPLEMENTED  # type: ignore[union-attr]
    assert res.status.message == "RuntimeError: disk full"  # type: ignore[union-attr]


def test_handler_acknowledges_reconnect() -> None:
    client = Returns().to_client()
    assert handle_instruction(client, ReconnectIns(None)).reason == "ACK"  # type: ignore[union-attr]
    assert handle_instruction(client, ReconnectIns(3)).reason == "RECONNECT"  # type: ignore[union-attr]
