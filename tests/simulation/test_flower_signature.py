"""start_simulation takes Flower's arguments, in Flower's order, with Flower's defaults."""

from __future__ import annotations

import inspect
import json
import subprocess

import pytest

import fedsilo.simulation as sim
from tests.interop.conftest import build_or_fail
from tests.interop.flower_envs import FLWR_SIMULATION

pytestmark = pytest.mark.flwr

FLOWER_SIGNATURE = """
import inspect, json
from flwr.simulation.legacy_app import start_simulation
print(json.dumps([[n, p.kind.name, repr(p.default)]
                  for n, p in inspect.signature(start_simulation).parameters.items()]))
"""

# Flower's names that fedsilo does not take: its own actor classes have no counterpart.
NOT_TAKEN = {"actor_type", "actor_kwargs"}
# Flower 1.42 requires num_clients; earlier 1.x releases default it to None so that
# clients_ids alone will do, and fedsilo keeps that.
DEFAULT_KEPT_FROM_EARLIER = {"client_fn", "num_clients"}


def test_start_simulation_takes_flowers_arguments() -> None:
    env = build_or_fail(FLWR_SIMULATION)
    done = subprocess.run([env.python, "-c", FLOWER_SIGNATURE], capture_output=True,
                          text=True, timeout=120, env=env.environ())
    assert done.returncode == 0, done.stderr[-2000:]
    flower = [(n, kind, default) for n, kind, default in json.loads(done.stdout)
              if n not in NOT_TAKEN]
    ours = inspect.signature(sim.start_simulation).parameters
    ours_in_order = [n for n in ours if n in {name for name, _, _ in flower}]
    assert ours_in_order == [name for name, _, _ in flower]
    for name, kind, default in flower:
        assert ours[name].kind.name == kind, name
        if name not in DEFAULT_KEPT_FROM_EARLIER:
            assert repr(ours[name].default) == default, name
