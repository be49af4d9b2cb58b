"""An orchestrator started right after ``fedsilo site serve ... &`` finds the agent: a
connection refused while the agent starts is tried again (for about 15 s), and an agent that
never comes is reported as unreachable, naming it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fedsilo.deploy.client import SiteClient
from fedsilo.deploy.sandbox import SiteAgentProcess
from fedsilo.deploy.site import SiteLayout, init_site
from tests.conftest import free_port


def test_a_request_made_before_the_agent_listens_reaches_it(tmp_path: Path) -> None:
    site = init_site(tmp_path / "site1", "site1")
    port = free_port()
    agent = SiteAgentProcess(SiteLayout(site.root), port, tmp_path / "agent.log")
    starting = threading.Thread(target=lambda: (time.sleep(0.5), agent.start()))
    starting.start()
    try:
        client = SiteClient(f"https://127.0.0.1:{port}", site.root / "tls" / "ca.pem",
                            site="site1")
        assert client.health()["site"] == "site1"
    finally:
        starting.join(60)
        agent.stop()


def test_an_agent_that_never_comes_is_named(tmp_path: Path) -> None:
    site = init_site(tmp_path / "site1", "site1")
    port = free_port()
    client = SiteClient(f"https://127.0.0.1:{port}", site.root / "tls" / "ca.pem",
                        site="site1")
    with pytest.raises(ConnectionError, match=f"site site1 at https://127.0.0.1:{port}"):
        client.health()
