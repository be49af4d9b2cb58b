"""The federation run: FL server with TLS, one training job per site, progress, clean-up.

:func:`run_federation` does what the seed's server notebook does by hand:

1. starts the federation server (TLS with the certificates of ``fedsilo certs``; mutual TLS
   admitting only the enrolled sites when the sites name their client certificates) in a
   thread;
2. at each site assumes the launch role and creates a training job that runs the site's
   program against the server (the server's address and CA go as hyperparameters);
3. follows the rounds and each job's status until the server finishes; a job that fails ends
   the run with its site's reason, unless ``min_sites`` sites still remain;
4. evaluates the final model on the server's test data and saves ``model.joblib``,
   ``history.json`` and ``federation.json`` (metrics, jobs, artifact locations);
5. whatever happened, stops the jobs still running and closes what it opened.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

import fedsilo as fl
from fedsilo.deploy.errors import DeployError, JobError
from fedsilo.deploy.federation_config import FederationConfig, SiteConfig, check_files
from fedsilo.deploy.identity import Identity
from fedsilo.deploy.launchers import (
    TERMINAL,
    JobDefinition,
    JobHandle,
    Launcher,
    LocalLauncher,
    SageMakerLauncher,
)
from fedsilo.deploy.progress import FederationProgress
from fedsilo.server.grpc.auth import ClientAllowlist

__all__ = ["FederationError", "FederationResult", "job_definition", "make_launcher",
           "run_federation"]

log = logging.getLogger("fedsilo.deploy.orchestrator")

POLL_S = 0.5
JOB_EXIT_S = 60.0  # how long jobs may take to finish once the server is done
STOP_WAIT_S = 30.0


class FederationError(DeployError, RuntimeError):
    """The federation could not run or finish; the message names the failing party."""


@dataclass
class FederationResult:
    """What a run leaves: the History, final metrics, files, and each site's job."""

    history: fl.server.History
    metrics: dict[str, float]
    files: dict[str, str]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_s: float = 0.0


def run_federation(config: FederationConfig, console: Console | None = None,
                   launcher_factory: Callable[[SiteConfig, Identity], Launcher] | None = None
                   ) -> FederationResult:
    """Run the federation ``config`` describes; raise JobError or FederationError on failure."""
    from fedsilo.examples.fraud.model import new_model, save_model
    from fedsilo.examples.fraud.prepare import load_test_set
    from fedsilo.examples.fraud.server_side import build_strategy, evaluation_metrics

    started = time.monotonic()
    console = console if console is not None else Console()
    check_files(config)
    identity = Identity.load(config.identity_key, config.identity_certificate)
    certificates = tuple((config.certificates / name).read_bytes()
                         for name in ("ca.pem", "server.pem", "server.key"))
    X_test, y_test = load_test_set(config.test_data)
    model = new_model(config.penalty, config.max_iter)
    address, public_address = _addresses(config)
    progress = FederationProgress(console, config.rounds, [s.name for s in config.sites])
    strategy = build_strategy(model, X_test, y_test, config.required_sites,
                              on_round=progress.on_round)
    server = _ServerRun(address, strategy, config, certificates)  # type: ignore[arg-type]
    new_launcher = launcher_factory or make_launcher
    launchers: dict[str, Launcher] = {}
    handles: dict[str, JobHandle] = {}
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"  # unique per run
    server.start()
    try:
        with progress:
            for site in config.sites:
                try:
                    launchers[site.name] = new_launcher(site, identity)
                    handles[site.name] = launchers[site.name].launch(job_definition(
                        site, run_id, public_address, certificates[0], config))
                except (DeployError, ConnectionError, OSError) as exc:
                    raise FederationError(f"{site.name}: could not start its job: {exc}") \
                        from exc
                log.info("%s: job %s created", site.name, handles[site.name].name)
            _follow(server, handles, progress, config)
            history = server.result()
            jobs = _await_jobs(handles, progress, config.required_sites)
        metrics = evaluation_metrics(model, X_test, y_test)
        config.output.mkdir(parents=True, exist_ok=True)
        model_path = save_model(config.output / "model.joblib", model)
        history_path = config.output / "history.json"
        history_path.write_text(json.dumps(history.to_dict(), indent=2) + "\n")
        summary_path = config.output / "federation.json"
        elapsed = round(time.monotonic() - started, 2)
        summary_path.write_text(json.dumps({
            "metrics": metrics, "rounds": config.rounds, "elapsed_s": elapsed,
            "transport": {"tls": True, "enrolled_sites": len(config.enrolled_certificates)},
            "jobs": {name: _public(d) for name, d in jobs.items()}}, indent=2) + "\n")
        files = {"model": str(model_path), "history": str(history_path),
                 "summary": str(summary_path)}
        return FederationResult(history, metrics, files, jobs, elapsed)
    finally:
        server.server.stop_requested.set()  # no round is aggregated after a failure or Ctrl-C
        server.clients.cancel_waits()
        _clean_up(handles, launchers)
        server.stop(STOP_WAIT_S)


def job_definition(site: SiteConfig, run_id: str, server_address: str, ca_pem: bytes,
                   config: FederationConfig) -> JobDefinition:
    """The job a site runs for this federation: its program, pointed at the server."""
    hyperparameters = {
        **site.hyperparameters,
        "server-address": server_address,
        "root-certificates": ca_pem.decode(),
        "max-wait-time": str(int(config.connect_timeout)),
    }
    return JobDefinition(
        name=f"fl-{site.name}-{run_id}"[:63].rstrip("-"), program=site.program, source=site.source,
        channels=site.channels, output=site.output, execution_role_arn=site.execution_role,
        hyperparameters=hyperparameters, max_runtime_s=site.max_runtime,
        instance_type=site.instance_type, training_image=site.training_image,
        vpc_config=site.vpc_config)


def make_launcher(site: SiteConfig, identity: Identity) -> Launcher:
    """The site's launcher: a site agent, or SageMaker in the site's AWS account."""
    if site.launcher == "sagemaker":
        return SageMakerLauncher(site=site.name, role_arn=site.role, region=site.region,
                                 endpoint_url=site.endpoint_url)
    assert site.ca is not None  # checked when the configuration was read
    return LocalLauncher(site=site.name, endpoint=site.endpoint, ca=site.ca,
                         role_arn=site.role, identity=identity)


def _follow(server: _ServerRun, handles: dict[str, JobHandle], progress: FederationProgress,
            config: FederationConfig) -> None:
    """Watch the jobs until the server is done; a failed site ends the run if it must."""
    budget = config.connect_timeout + config.rounds * config.round_timeout
    deadline = time.monotonic() + budget
    lost: dict[str, JobError] = {}
    while not server.done.wait(POLL_S):
        for name, handle in handles.items():
            if name in lost:
                continue
            ended = handle.poll()
            progress.on_job(name, handle.last_)
            try:
                if ended is not None:
                    handle.check()
            except JobError as exc:
                lost[name] = exc
                progress.note(f"{name} dropped out: {exc.reason}")
                if len(handles) - len(lost) < config.required_sites:
                    raise exc from None
        if time.monotonic() > deadline:
            raise FederationError(f"the federation did not finish within {budget:.0f} s")


def _await_jobs(handles: dict[str, JobHandle], progress: FederationProgress,
                required: int) -> dict[str, dict[str, Any]]:
    """Each site's job once it has ended (they end when the server lets them go)."""
    out: dict[str, dict[str, Any]] = {}
    for name, handle in handles.items():
        try:
            out[name] = handle.wait(JOB_EXIT_S)
        except TimeoutError as exc:
            raise FederationError(str(exc)) from exc
        progress.on_job(name, out[name])
    failed = [h for h in handles.values() if h.last_.get("TrainingJobStatus") != "Completed"]
    for handle in failed:
        log.warning("%s: job %s ended %s", handle.site, handle.name,
                    handle.last_.get("TrainingJobStatus"))
    if failed and len(handles) - len(failed) < required:
        failed[0].check()
    return out


def _clean_up(handles: dict[str, JobHandle], launchers: dict[str, Launcher]) -> None:
    """Stop every job still running and close the launchers (the seed's clean-up step)."""
    running = []
    for name, handle in handles.items():
        try:
            if handle.last_.get("TrainingJobStatus") in TERMINAL or handle.poll() is not None:
                continue
            handle.stop()
            running.append(handle)
        except (DeployError, ConnectionError) as exc:
            log.warning("%s: could not stop job %s: %s", name, handle.name, exc)
    for handle in running:
        try:
            handle.wait(STOP_WAIT_S)
        except (TimeoutError, DeployError, ConnectionError) as exc:
            log.warning("%s: job %s did not stop: %s", handle.site, handle.name, exc)
    for launcher in launchers.values():
        launcher.close()


class _ServerRun(threading.Thread):
    """The FL server in a daemon thread; ``result()`` returns its History or raises."""

    def __init__(self, address: str, strategy: fl.server.strategy.Strategy,
                 config: FederationConfig, certificates: tuple[bytes, bytes, bytes]) -> None:
        super().__init__(name="federation-server", daemon=True)
        self.address = address
        self.strategy = strategy
        self.config = config
        self.certificates = certificates
        self.clients = fl.server.SimpleClientManager(wait_timeout=config.connect_timeout)
        self.server = fl.server.Server(client_manager=self.clients, strategy=strategy)
        self.done = threading.Event()
        self._history: fl.server.History | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._history = fl.server.start_server(
                server_address=self.address,
                config=fl.server.ServerConfig(num_rounds=self.config.rounds,
                                              round_timeout=self.config.round_timeout),
                server=self.server,
                certificates=self.certificates,
                client_allowlist=_allowlist(self.config),
            )
        except BaseException as exc:  # handed to the caller's thread by result()
            self._error = exc
        finally:
            self.done.set()

    def stop(self, timeout: float) -> None:
        """End the run after the phase in progress (nothing more is aggregated) and wait."""
        self.server.stop_requested.set()
        self.clients.cancel_waits()
        self.done.wait(timeout)

    def result(self) -> fl.server.History:
        self.done.wait()
        if self._error is not None:
            raise FederationError(f"the federation server failed: {self._error}") \
                from self._error
        assert self._history is not None
        return self._history


def _allowlist(config: FederationConfig) -> ClientAllowlist | None:
    """The enrolled sites' keys, or None when the server takes any client the CA vouches for."""
    enrolled = config.enrolled_certificates
    return ClientAllowlist.from_pem(enrolled) if enrolled else None


def _addresses(config: FederationConfig) -> tuple[str, str]:
    """The address to bind (a free port for port 0) and the one the sites dial."""
    host, _, port = config.address.rpartition(":")
    if port == "0":
        with socket.socket() as sock:  # sandbox.free_port would import the orchestrator
            sock.bind((host.strip("[]") or "127.0.0.1", 0))
            port = str(sock.getsockname()[1])
    address = f"{host}:{port}"
    return address, config.public_address or address


def _public(description: dict[str, Any]) -> dict[str, Any]:
    """A job's description for the run's summary, without the long certificate text."""
    keep = ("TrainingJobName", "TrainingJobArn", "TrainingJobStatus", "SecondaryStatus",
            "FailureReason", "ModelArtifacts", "TrainingTimeInSeconds")
    return {k: _plain(description[k]) for k in keep if k in description}


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | dict | list) else str(value)

