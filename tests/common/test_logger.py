"""fedsilo logs its progress at INFO by default, as Flower does, and users can turn it down."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import fedsilo as fl
from fedsilo.common import logger as fedsilo_logger
from tests.conftest import free_port
from tests.interop.harness import fedsilo_environ

SCRIPT = Path(__file__).with_name("log_federation.py")

ROUND_LINES = [
    "INFO fedsilo.server: round {r}: fit sampled 1 clients (out of 1)",
    "INFO fedsilo.server: round {r}: fit received 1 results and 0 failures",
    "INFO fedsilo.server: round {r}: evaluate sampled 1 clients (out of 1)",
    "INFO fedsilo.server: round {r}: evaluate received 1 results and 0 failures",
    "INFO fedsilo.server: round {r}/2: 1 trained, 0 failed, distributed loss",
]


def run_federation(mode: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), str(free_port()), mode],
                          capture_output=True, text=True, timeout=120, env=fedsilo_environ())
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    return done.stderr


@pytest.mark.timeout(150)
def test_a_federation_reports_each_round_and_phase_at_info_without_setup() -> None:
    lines = run_federation("default").splitlines()
    for server_round in (1, 2):
        for expected in ROUND_LINES:
            want = expected.format(r=server_round)
            assert sum(line.startswith(want) for line in lines) == 1, (want, lines)
    for kind in ("fit", "evaluate"):
        assert lines.count(f"INFO fedsilo.client: received {kind} instruction") == 2
        assert lines.count(f"INFO fedsilo.client: sent {kind} reply") == 2
    assert any(line.startswith("INFO fedsilo.server: federation finished") for line in lines)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["handler", "logger"])
def test_users_turn_the_progress_lines_down(mode: str) -> None:
    assert "INFO" not in run_federation(mode)


def test_flowers_names_log_to_the_fedsilo_logger(caplog: pytest.LogCaptureFixture) -> None:
    assert fl.common.logger.logger is logging.getLogger("fedsilo")
    with caplog.at_level(logging.INFO, logger="fedsilo"):
        fl.common.log(logging.INFO, "value %d", 42)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("fedsilo", logging.INFO, "value 42")]


def test_configure_writes_every_level_with_the_identifier(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    before_level, before_handlers = fedsilo_logger.logger.level, list(
        fedsilo_logger.logger.handlers)
    try:
        fl.common.configure("silo-a", filename=str(path))
        logging.getLogger("fedsilo.server").debug("detail %s", "x")
        fl.common.log(logging.WARNING, "careful")
    finally:
        for handler in fedsilo_logger.logger.handlers:
            if handler not in before_handlers:
                handler.close()
                fedsilo_logger.logger.removeHandler(handler)
        fedsilo_logger.logger.setLevel(before_level)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("silo-a | DEBUG fedsilo.server ") and lines[0].endswith("detail x")
    assert lines[1].startswith("silo-a | WARNING fedsilo ") and lines[1].endswith("careful")


def test_the_command_line_prints_each_fedsilo_line_once() -> None:
    # The CLI installs a root handler for every library; fedsilo's own console handler
    # must not print the same line a second time.
    script = ("import logging\n"
              "from fedsilo.cli._output import setup_logging\n"
              "setup_logging(True)\n"
              "logging.getLogger('fedsilo.server').info('round 1/1: said once')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=fedsilo_environ())
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("round 1/1: said once") == 1, done.stderr
