"""The names Flower users rely on are exported, and nothing else changes silently."""

from __future__ import annotations

import inspect

import fedsilo as fl


def test_top_level_modules() -> None:
    assert set(fl.__all__) == {"__version__", "client", "common", "server", "simulation"}
    assert callable(fl.simulation.start_simulation)


def test_client_exports() -> None:
    assert set(fl.client.__all__) == {"Client", "NumPyClient", "start_client",
                                      "start_numpy_client"}
    params = inspect.signature(fl.client.start_numpy_client).parameters
    for name in ("server_address", "client", "grpc_max_message_length", "root_certificates",
                 "insecure", "max_retries", "max_wait_time"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_server_exports_and_start_server_signature() -> None:
    assert {"start_server", "ServerConfig", "History", "Server", "SimpleClientManager",
            "ClientManager", "ClientProxy", "strategy"} <= set(fl.server.__all__)
    params = inspect.signature(fl.server.start_server).parameters
    assert list(params)[:7] == ["server_address", "server", "config", "strategy",
                                "client_manager", "grpc_max_message_length", "certificates"]


def test_fedavg_constructor_is_keyword_only_with_flower_defaults() -> None:
    params = inspect.signature(fl.server.strategy.FedAvg).parameters
    defaults = {name: p.default for name, p in params.items()}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert defaults == {
        "fraction_fit": 1.0, "fraction_evaluate": 1.0, "min_fit_clients": 2,
        "min_evaluate_clients": 2, "min_available_clients": 2, "evaluate_fn": None,
        "on_fit_config_fn": None, "on_evaluate_config_fn": None, "accept_failures": True,
        "initial_parameters": None, "fit_metrics_aggregation_fn": None,
        "evaluate_metrics_aggregation_fn": None, "inplace": True,
    }


def test_fedavg_stores_constructor_arguments_unchanged() -> None:
    def fit_config(server_round: int) -> dict[str, int]:
        return {"r": server_round}

    strategy = fl.server.strategy.FedAvg(fraction_fit=0.3, min_fit_clients=7,
                                         on_fit_config_fn=fit_config, accept_failures=False)
    assert strategy.fraction_fit == 0.3 and strategy.min_fit_clients == 7
    assert strategy.on_fit_config_fn is fit_config and strategy.accept_failures is False


def test_common_exports_the_flower_names() -> None:
    for name in ("ndarrays_to_parameters", "parameters_to_ndarrays", "NDArrays", "Scalar",
                 "FitRes", "FitIns", "EvaluateRes", "EvaluateIns", "Parameters", "Status",
                 "Code", "GetParametersIns", "GetParametersRes", "Metrics", "Config"):
        assert name in fl.common.__all__ and hasattr(fl.common, name)


def test_app_api_exports_flowers_names() -> None:
    import fedsilo.app
    import fedsilo.clientapp
    import fedsilo.serverapp
    import fedsilo.serverapp.strategy

    assert {"Array", "ArrayRecord", "ConfigRecord", "Context", "Error", "Message",
            "MessageType", "Metadata", "MetricRecord", "RecordDict", "DEFAULT_TTL",
            "UserConfig"} <= set(fedsilo.app.__all__)
    assert {"ClientApp", "mod"} <= set(fedsilo.clientapp.__all__)
    assert {"Grid", "ServerApp", "ServerAppComponents", "strategy"} <= set(
        fedsilo.serverapp.__all__)
    assert {"FedAvg", "FedProx", "FedAvgM", "FedAdagrad", "FedAdam", "FedYogi", "FedMedian",
            "FedTrimmedAvg", "Krum", "MultiKrum", "Result", "Strategy"} <= set(
        fedsilo.serverapp.strategy.__all__)
    assert callable(fl.simulation.run_simulation)
    params = inspect.signature(fedsilo.serverapp.strategy.FedAvg).parameters
    assert {name: p.default for name, p in params.items()} == {
        "fraction_train": 1.0, "fraction_evaluate": 1.0, "min_train_nodes": 2,
        "min_evaluate_nodes": 2, "min_available_nodes": 2, "weighted_by_key": "num-examples",
        "arrayrecord_key": "arrays", "configrecord_key": "config",
        "train_metrics_aggr_fn": None, "evaluate_metrics_aggr_fn": None}
