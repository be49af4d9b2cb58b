"""How many clients run at once on a Ray cluster, from its resources and client_resources."""

from __future__ import annotations

import pytest

from fedsilo.simulation.local import default_num_workers
from fedsilo.simulation.ray_backend import ray_pool_size


@pytest.mark.parametrize(("cluster", "client", "expected"), [
    ({"CPU": 8.0}, {"num_cpus": 1.0, "num_gpus": 0.0}, 8),
    ({"CPU": 8.0}, {"num_cpus": 3.0, "num_gpus": 0.0}, 2),
    ({"CPU": 8.0, "GPU": 2.0}, {"num_cpus": 1.0, "num_gpus": 0.5}, 4),
    ({"CPU": 8.0, "GPU": 2.0}, {"num_cpus": 1.0, "num_gpus": 1.0}, 2),
    ({"CPU": 2.0, "GPU": 4.0}, {"num_cpus": 1.0, "num_gpus": 0.25}, 2),
    ({"CPU": 1.0}, {"num_cpus": 0.1, "num_gpus": 0.0}, 10),
])
def test_pool_holds_as_many_clients_as_the_scarcest_resource_allows(
        cluster: dict[str, float], client: dict[str, float], expected: int) -> None:
    assert ray_pool_size(cluster, client) == expected


def test_clients_that_fit_nowhere_get_a_clear_error() -> None:
    with pytest.raises(ValueError, match="do not fit on the Ray cluster, which has 8 CPUs and 0"):
        ray_pool_size({"CPU": 8.0}, {"num_cpus": 1.0, "num_gpus": 1.0})


def test_local_pool_has_a_worker_per_core_or_per_num_cpus() -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    assert default_num_workers() == cores
    assert default_num_workers(2.0) == max(1, cores // 2)
    assert default_num_workers(1000.0) == 1
