"""The federation run: FL server with TLS, one training job per site, progress, clean-up.

:func:`run_federation` does what the seed's server notebook does by hand, for any app:

1. packs the app (``[app] dir``) into a content-addressed archive, calls the app's server
   function for its strategy and ServerConfig, and starts the federation server (TLS with the
   certificates of ``fedsilo certs``; mutual TLS admitting only the enrolled sites when the
   sites name their client certificates) in a thread, checkpointing every round;
2. at each site assumes the launch role, uploads the app into the site's code store (the site
   runs it only once it approves it) and creates a training job that runs the app's site
   program against the server (the server's address and the run config go as
   hyperparameters; the CA's PEM, which a hyperparameter cannot hold, goes as the launcher
   hands it over: a ``federation`` channel on SageMaker, an environment variable at a local
   site);
3. follows the rounds and each job's status until the server finishes, keeping
   ``state.json`` current for ``fedsilo status``; a job that fails ends the run with its
   site's reason, unless ``min_sites`` sites still remain;
4. saves the final parameters as ``final_arrays.npz`` (``np.load(path)["arr_0"]``, ...: the
   arrays in the strategy's order), ``history.json`` and ``federation.json`` (metrics, app,
   jobs, artifact locations), with each SageMaker site's ``model.tar.gz`` under
   ``sites/<name>/`` unless the site keeps it; what the model means is the app's business;
5. whatever happened, stops the jobs still running and closes what it opened. A stop the site
   refuses (an expired session) is tried again under a new session; a job that still cannot
   be stopped is printed with its ARN and the command that stops it.

A Flower app (``[app]`` names a directory whose ``pyproject.toml`` has
``[tool.flwr.app.components]``, and no ``server`` or ``program``) runs its ServerApp on the
same server instead of a strategy, and each site's job runs its ClientApp
(:mod:`fedsilo.deploy.flower_app_job`). What a fedsilo strategy's ``start()`` reports after
each round gives such a run its figures, its History and its ``final_arrays.npz`` (the last
Result's arrays) and its round checkpoints (the Result and the strategy's ``state_dict()``),
from which ``resume=True`` goes on; a ``server_fn`` app's legacy Server reports, checkpoints
and resumes as the orchestrator's own server does; a ServerApp with a loop of its own keeps its
model itself and, resumed, starts its loop again.

With ``resume=True`` a run whose orchestrator died goes on: the same run id and server
address, the server's last round checkpoint, and the site jobs that are still running (a
site whose job failed or was stopped gets a new one; no site runs two at once).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

import fedsilo as fl
from fedsilo.app import Context, Message, MetricRecord, RecordDict
from fedsilo.app._legacy import arrays_to_parameters, parameters_to_arrays
from fedsilo.app.project import load_app_project
from fedsilo.common.exceptions import CheckpointError
from fedsilo.common.typing import Scalar
from fedsilo.deploy.app_archive import AppArchive, pack_app
from fedsilo.deploy.aws_session import AssumeRoleSettings
from fedsilo.deploy.certs import certificate_hosts
from fedsilo.deploy.errors import AccessDenied, AuthenticationError, DeployError, JobError
from fedsilo.deploy.federation_config import FederationConfig, SiteConfig, check_files
from fedsilo.deploy.identity import Identity
from fedsilo.deploy.jobspec import RUN_CONFIG_KEY, RUN_ID_KEY, SITE_KEY
from fedsilo.deploy.launchers import (
    TERMINAL,
    JobDefinition,
    JobHandle,
    Launcher,
    LocalLauncher,
    SageMakerLauncher,
)
from fedsilo.deploy.progress import FederationProgress
from fedsilo.deploy.run_state import RunState
from fedsilo.deploy.server_app import ServerContext, load_flower_server_app, load_server_app
from fedsilo.server.checkpoint import RoundCheckpoint, load_latest, save_checkpoint
from fedsilo.server.grpc.auth import ClientAllowlist
from fedsilo.server.grpc.server import start_grpc_server
from fedsilo.serverapp import ProxyGrid, ServerApp
from fedsilo.serverapp._grid import ReplyFold
from fedsilo.serverapp.strategy import Result, Strategy

__all__ = ["FederationError", "FederationResult", "job_definition", "make_launcher",
           "run_federation"]

log = logging.getLogger("fedsilo.deploy.orchestrator")

POLL_S = 0.5
STOP_WAIT_S = 30.0
FINAL_ARRAYS = "final_arrays.npz"


class FederationError(DeployError, RuntimeError):
    """The federation could not run or finish; the message names the failing party."""


@dataclass
class FederationResult:
    """What a run leaves: the History, final metrics and arrays, files, each site's job."""

    history: fl.server.History
    metrics: dict[str, float]
    files: dict[str, str]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    arrays: list[np.ndarray] = field(default_factory=list)


def run_federation(config: FederationConfig, console: Console | None = None,
                   launcher_factory: Callable[[SiteConfig, Identity], Launcher] | None = None,
                   *, resume: bool = False) -> FederationResult:
    """Run the federation ``config`` describes; raise JobError or FederationError on failure.

    ``resume`` continues the run left in ``config.output`` by an orchestrator that died.
    """
    started = time.monotonic()
    console = console if console is not None else Console()
    check_files(config)
    identity = Identity.load(config.identity_key, config.identity_certificate)
    ca_pem, server_pem, server_key = ((config.certificates / name).read_bytes()
                                      for name in ("ca.pem", "server.pem", "server.key"))
    certificates = (ca_pem, server_pem, server_key)
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"  # unique per run
    state = RunState.begin(config.output, run_id, resume=resume)
    launchers: dict[str, Launcher] = {}
    handles: dict[str, JobHandle] = {}
    server: _ServerRun | None = None
    try:
        checkpoints = config.output / "checkpoints"
        if not resume:  # a new run never continues an old run's rounds
            shutil.rmtree(checkpoints, ignore_errors=True)
        archive = pack_app(config.app.directory)
        if resume:
            _check_same_app(state, archive)
        address, public_address = ((state.data["address"], state.data["public_address"])
                                   if resume and "address" in state.data
                                   else _addresses(config))
        _check_server_names(server_pem, public_address)
        if config.app.flower:
            app, run_config = load_flower_server_app(config.app.directory,
                                                     config.app.run_config)
            config = replace(config, app=replace(config.app, run_config=run_config))
            rounds = int(run_config.get("num-server-rounds", config.rounds or 1))  # for show
            server = _ServerAppRun(address, app, Context(
                run_id=int(state.run_id.partition("-")[0]), node_id=0,
                node_config=_server_context(config, state.run_id).node_config,
                state=RecordDict(), run_config=run_config), config, certificates, rounds,
                resume=resume)
            server.on_train_round = lambda done: state.update(round=done)
            app_summary = {"digest": f"sha256:{archive.digest}",
                           "serverapp": load_app_project(config.app.directory).serverapp}
        else:
            strategy, server_config = load_server_app(
                config.app.directory, config.app.server,
                _server_context(config, state.run_id))
            rounds = config.rounds or server_config.num_rounds
            server = _ServerRun(address, strategy, config, certificates,
                                fl.server.ServerConfig(num_rounds=rounds, round_timeout=(
                                    server_config.round_timeout or config.round_timeout)),
                                checkpoints)
            app_summary = {"digest": f"sha256:{archive.digest}", "server": config.app.server}
        state.update(address=address, public_address=public_address, rounds=rounds,
                     app=app_summary)
        progress = FederationProgress(console, rounds, [s.name for s in config.sites])
        server.server.on_round_end = _round_reporter(progress, state)
        if isinstance(server, _ServerAppRun):
            server.on_result_round = _figures_reporter(progress, state)
        new_launcher = launcher_factory or make_launcher
        server.start()
        with progress:
            for site in config.sites:
                try:
                    launchers[site.name] = new_launcher(site, identity)
                    handles[site.name] = _site_job(launchers[site.name], site, config, archive,
                                                   state, public_address, certificates[0])
                except (DeployError, ConnectionError, OSError) as exc:
                    raise FederationError(f"{site.name}: could not start its job: {exc}") \
                        from exc
            tracker = _Tracker(progress, state)
            _follow(server, handles, tracker, config)
            history = server.result()
            jobs = _await_jobs(handles, tracker, config.required_sites, config.finish_timeout)
        arrays = server.final_arrays()
        metrics = server.final_metrics(history)
        downloads = _fetch_models(config, launchers, jobs)
        files = _save(config, history, arrays, {
            "metrics": metrics, "rounds": rounds, "run_id": state.run_id,
            "elapsed_s": round(time.monotonic() - started, 2),
            "app": state.data["app"],
            "transport": {"tls": True, "enrolled_sites": len(config.enrolled_certificates)},
            "jobs": {name: _public(d) for name, d in jobs.items()},
            "site_models": downloads})
        files.update({f"{name}.model": path for name, path in downloads.items()})
        state.update(status="finished")
        return FederationResult(history, metrics, files, jobs,
                                round(time.monotonic() - started, 2), arrays or [])
    except BaseException as exc:
        state.update(status="failed", error=str(exc) or type(exc).__name__)
        raise
    finally:
        if server is not None:  # no round is aggregated after a failure or Ctrl-C
            server.server.stop_requested.set()
            server.clients.cancel_waits()
        _clean_up(handles, launchers, console)
        if server is not None:
            server.stop(STOP_WAIT_S)


def _check_same_app(state: RunState, archive: AppArchive) -> None:
    """A run resumes with the app it started with: its checkpoints are that app's."""
    before = (state.data.get("app") or {}).get("digest")
    if before is not None and before != f"sha256:{archive.digest}":
        raise FederationError(f"the app changed since run {state.run_id} started ({before}, "
                              f"now sha256:{archive.digest}); resume with the same app, or "
                              "start a new run without --resume")


def _server_context(config: FederationConfig, run_id: str) -> ServerContext:
    node_config: dict[str, Any] = {"output-dir": str(config.output),
                                   "num-sites": len(config.sites),
                                   "min-sites": config.required_sites,
                                   "site-names": ",".join(s.name for s in config.sites)}
    if config.data is not None:
        node_config["data-dir"] = str(config.data)
    return ServerContext(run_id, dict(config.app.run_config), node_config)


def _site_job(launcher: Launcher, site: SiteConfig, config: FederationConfig,
              archive: AppArchive, state: RunState, public_address: str,
              ca_pem: bytes) -> JobHandle:
    """The site's job for this run: the one still running (on resume), else a new one."""
    previous = state.data["jobs"].get(site.name, {}).get("name")
    if previous:
        handle = launcher.attach(previous)
        # Still running: reattach. Completed: the server had finished and let it go.
        if handle.poll() in (None, "Completed"):
            log.info("%s: job %s %s; reattached", site.name, previous,
                     handle.last_.get("TrainingJobStatus"))
            return handle
    if not site.source:  # the app travels with the run, under its own digest
        launcher.put_code(archive.store_name, archive.data)
        if config.app.signature is not None:
            launcher.put_code(f"apps/{archive.digest}.sig", config.app.signature.read_bytes())
    attempt = len(state.data["jobs"].get(site.name, {}).get("names", [])) + 1
    definition = job_definition(site, state.run_id, public_address, ca_pem, config,
                                source=site.source or archive.store_name, attempt=attempt)
    handle = launcher.launch(definition)
    state.record_job(site.name, definition.name)
    log.info("%s: job %s created", site.name, handle.name)
    return handle


def _figures_reporter(progress: FederationProgress, state: RunState
                      ) -> Callable[[int, dict[str, float]], None]:
    """A round's figures, shown and recorded."""
    def report(server_round: int, figures: dict[str, float]) -> None:
        progress.on_round(server_round, figures)
        state.on_round(server_round, figures)
    return report


def _round_reporter(progress: FederationProgress, state: RunState
                    ) -> Callable[[int, fl.server.History], None]:
    """The server's end-of-round hook: the round's centralized figures, shown and recorded."""
    report_figures = _figures_reporter(progress, state)

    def report(server_round: int, history: fl.server.History) -> None:
        losses = dict(history.losses_centralized)
        if server_round not in losses:
            return
        metrics = {name: float(dict(series)[server_round])
                   for name, series in history.metrics_centralized.items()
                   if server_round in dict(series)}
        report_figures(server_round, {"loss": float(losses[server_round]), **metrics})
    return report


def _final_metrics(history: fl.server.History) -> dict[str, float]:
    """The last centralized evaluation's loss and metrics (empty when the app has none)."""
    if not history.losses_centralized:
        return {}
    last, loss = history.losses_centralized[-1]
    return {"loss": float(loss), **{name: float(dict(series)[last])
                                    for name, series in history.metrics_centralized.items()
                                    if last in dict(series)}}


def _save(config: FederationConfig, history: fl.server.History,
          arrays: list[np.ndarray] | None, summary: dict[str, Any]) -> dict[str, str]:
    """final_arrays.npz (where the server has them), history.json and federation.json in the
    output directory."""
    config.output.mkdir(parents=True, exist_ok=True)
    files = {"history": str(config.output / "history.json"),
             "summary": str(config.output / "federation.json")}
    if arrays is not None:
        files["arrays"] = str(config.output / FINAL_ARRAYS)
        with open(files["arrays"], "wb") as handle:
            np.savez(handle, *arrays)
    (config.output / "history.json").write_text(json.dumps(history.to_dict(), indent=2) + "\n")
    (config.output / "federation.json").write_text(
        json.dumps({**summary, "files": files}, indent=2) + "\n")
    return files


class _Tracker:
    """Job descriptions go to the progress view and to the run's state file."""

    def __init__(self, progress: FederationProgress, state: RunState) -> None:
        self.progress = progress
        self.state = state

    def on_job(self, site: str, description: dict[str, Any]) -> None:
        self.progress.on_job(site, description)
        self.state.on_job(site, description)

    def note(self, text: str) -> None:
        self.progress.note(text)


def job_definition(site: SiteConfig, run_id: str, server_address: str, ca_pem: bytes,
                   config: FederationConfig, *, source: str | None = None,
                   attempt: int = 1) -> JobDefinition:
    """The job a site runs for this federation: the app's program, pointed at the server.

    The run config reaches the program as ``--key value`` options (script mode) and, typed,
    as the job's Context (``fedsilo_run_config``); the site's own hyperparameters come on top.
    """
    run_config = config.app.run_config
    hyperparameters = {
        **{key: _option(value) for key, value in run_config.items()},
        **site.hyperparameters,
        "server-address": server_address,
        "max-wait-time": str(int(config.connect_timeout)),
        RUN_CONFIG_KEY: json.dumps(run_config),
        RUN_ID_KEY: run_id,
        SITE_KEY: site.name,
    }
    suffix = "" if attempt == 1 else f"-{attempt}"
    return JobDefinition(
        name=f"fl-{site.name}-{run_id}"[:63 - len(suffix)].rstrip("-") + suffix,
        program=site.program or config.app.program, source=source or site.source,
        channels=site.channels, output=site.output, execution_role_arn=site.execution_role,
        hyperparameters=hyperparameters, max_runtime_s=site.max_runtime,
        instance_type=site.instance_type, training_image=site.training_image,
        vpc_config=site.vpc_config,
        environment=site.environment, root_certificates=ca_pem,
        volume_size_gb=site.volume_size, checkpoint_uri=site.checkpoint_uri, spot=site.spot,
        max_wait_s=site.max_wait, tags=site.tags)


def make_launcher(site: SiteConfig, identity: Identity) -> Launcher:
    """The site's launcher: a site agent, or SageMaker in the site's AWS account."""
    if site.launcher == "sagemaker":
        settings = AssumeRoleSettings(
            site.role, external_id=site.external_id, source_identity=site.source_identity,
            tags=site.session_tags, duration_s=site.session_duration)
        return SageMakerLauncher(site=site.name, role_arn=site.role, region=site.region,
                                 endpoint_url=site.endpoint_url, assume=settings,
                                 code_prefix=site.code_prefix, kms_key_id=site.kms_key_id)
    assert site.ca is not None  # checked when the configuration was read
    return LocalLauncher(site=site.name, endpoint=site.endpoint, ca=site.ca,
                         role_arn=site.role, identity=identity, external_id=site.external_id)


def _option(value: bool | int | float | str) -> str:
    """A run-config value as a command-line option's text (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _follow(server: _ServerRun, handles: dict[str, JobHandle], progress: _Tracker,
            config: FederationConfig) -> None:
    """Watch the jobs until the server is done; a failed site ends the run if it must."""
    budget = config.connect_timeout + server.config.num_rounds * config.round_timeout
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


def _await_jobs(handles: dict[str, JobHandle], progress: _Tracker,
                required: int, finish_timeout: float) -> dict[str, dict[str, Any]]:
    """Each site's job once it has ended (they end when the server lets them go)."""
    out: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + finish_timeout
    for name, handle in handles.items():
        try:
            out[name] = handle.wait(max(0.0, deadline - time.monotonic()))
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


def _fetch_models(config: FederationConfig, launchers: dict[str, Launcher],
                  jobs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each completed job's model.tar.gz (site to local path), where the launcher can fetch it
    and the site allows; a download that fails is logged, the model stays at the site."""
    files: dict[str, str] = {}
    for site in config.sites:
        job = jobs.get(site.name, {})
        if not site.download_model or job.get("TrainingJobStatus") != "Completed":
            continue
        destination = config.output / "sites" / site.name / "model.tar.gz"
        try:
            path = launchers[site.name].fetch_model(job, destination)
        except DeployError as exc:
            log.warning("%s: model.tar.gz not downloaded: %s", site.name, exc)
            continue
        if path is not None:
            files[site.name] = str(path)
    return files


def _clean_up(handles: dict[str, JobHandle], launchers: dict[str, Launcher],
              console: Console) -> None:
    """Stop every job still running and close the launchers (the seed's clean-up step).

    A site that refuses the stop because the session ended (expired, or refresh failed) is
    asked again under a newly assumed role; whatever still cannot be stopped is printed with
    its ARN and the command its owner runs to stop it, since it would otherwise run, and bill,
    until its MaxRuntimeInSeconds.
    """
    running: list[JobHandle] = []
    stranded: list[tuple[JobHandle, Exception]] = []
    for name, handle in handles.items():
        try:
            _stop(handle, launchers[name])
            if handle.last_.get("TrainingJobStatus") not in TERMINAL:
                running.append(handle)
        except (DeployError, ConnectionError) as exc:
            stranded.append((handle, exc))
    for handle in running:
        try:
            handle.wait(STOP_WAIT_S)
        except (TimeoutError, DeployError, ConnectionError) as exc:
            log.warning("%s: job %s did not stop: %s", handle.site, handle.name, exc)
    for handle, error in stranded:
        log.error("%s: could not stop job %s: %s", handle.site, handle.arn, error)
        console.print(f"[bold red]job still running:[/] {escape(handle.arn)} (site "
                      f"{escape(handle.site)}); stop it with: {escape(handle.stop_command())}",
                      highlight=False, soft_wrap=True)
    for launcher in launchers.values():
        launcher.close()


def _stop(handle: JobHandle, launcher: Launcher) -> None:
    """Stop ``handle`` unless it has ended; on a refused session, renew it and try once more."""
    for attempt in (1, 2):
        try:
            if handle.last_.get("TrainingJobStatus") in TERMINAL or handle.poll() is not None:
                return
            handle.stop()
            return
        except (AuthenticationError, AccessDenied):
            if attempt == 2:
                raise
            launcher.renew()


def _check_server_names(server_pem: bytes, public_address: str) -> None:
    """The address the sites dial must be among the server certificate's names."""
    from cryptography import x509

    host = public_address.rpartition(":")[0].strip("[]")
    names = certificate_hosts(x509.load_pem_x509_certificate(server_pem))
    if host not in names:
        raise FederationError(
            f"the server certificate names {', '.join(names)}, not {host}, which the sites "
            f"dial; issue it again: fedsilo certs server <certificates> --host {host}")


class _ServerRun(threading.Thread):
    """The FL server in a daemon thread; ``result()`` returns its History or raises."""

    def __init__(self, address: str, strategy: fl.server.strategy.Strategy,
                 federation: FederationConfig, certificates: tuple[bytes, bytes, bytes],
                 config: fl.server.ServerConfig, checkpoints: Path) -> None:
        super().__init__(name="federation-server", daemon=True)
        self.address = address
        self.strategy = strategy
        self.federation = federation
        self.config = config
        self.certificates = certificates
        self.clients = fl.server.SimpleClientManager(wait_timeout=federation.connect_timeout)
        self.server = fl.server.Server(client_manager=self.clients, strategy=strategy,
                                       checkpoint_dir=checkpoints)
        self.done = threading.Event()
        self._history: fl.server.History | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._history = fl.server.start_server(
                server_address=self.address,
                config=self.config,
                server=self.server,
                certificates=self.certificates,
                client_allowlist=_allowlist(self.federation),
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

    def final_arrays(self) -> list[np.ndarray] | None:
        return fl.common.parameters_to_ndarrays(self.server.parameters)

    def final_metrics(self, history: fl.server.History) -> dict[str, float]:
        return _final_metrics(history)


class _ServerAppRun(_ServerRun):
    """A Flower app's ServerApp on the federation's server (TLS, the enrolled sites only) in
    a daemon thread.

    What a fedsilo strategy's ``start()`` tells the Grid after each round (see
    :meth:`~fedsilo.serverapp.Grid.on_round_end`) gives the run its figures per round, its
    History (unless the ServerApp returns one) and its final arrays; a ServerApp that runs
    its own loop leaves only the rounds its train messages name, and keeps its model itself.
    """

    def __init__(self, address: str, app: ServerApp, context: Context,
                 federation: FederationConfig, certificates: tuple[bytes, bytes, bytes],
                 rounds: int, *, resume: bool = False) -> None:
        super().__init__(address, fl.server.strategy.FedAvg(), federation, certificates,
                         fl.server.ServerConfig(num_rounds=rounds,
                                                round_timeout=federation.round_timeout),
                         federation.output / "checkpoints")
        self.app = app
        self.context = context
        self.resume = resume
        self.on_train_round: Callable[[int], None] = lambda done: None
        self.on_result_round: Callable[[int, dict[str, float]], None] = lambda done, f: None
        self.result_: Result | None = None
        self.grid: _RoundGrid | None = None

    def run(self) -> None:
        try:
            grpc_server, _ = start_grpc_server(
                client_manager=self.clients, server_address=self.address,
                certificates=self.certificates, client_allowlist=_allowlist(self.federation))
            grid = self.grid = _RoundGrid(
                self.clients, run_id=self.context.run_id,
                checkpoints=self.federation.output / "checkpoints", resume=self.resume,
                on_round=lambda done: self.on_train_round(done), on_result=self._on_result,
                on_legacy_round=self._on_legacy_round)
            try:
                returned = self.app(grid, self.context)
                self._history = returned if isinstance(returned, fl.server.History) \
                    else _history_of(self.result_)
                self.server.disconnect_all_clients(timeout=5.0)
            finally:
                grid.close()
                grpc_server.stop(grace=5.0).wait(6.0)
        except BaseException as exc:  # handed to the caller's thread by result()
            self._error = exc
        finally:
            self.done.set()

    def _on_result(self, server_round: int, result: Result) -> None:
        self.result_ = result
        figures = _round_figures(server_round, result)
        if figures:
            self.on_result_round(server_round, figures)

    def _on_legacy_round(self, server_round: int, history: fl.server.History) -> None:
        if self.server.on_round_end is not None:  # the orchestrator's report, as for a strategy
            self.server.on_round_end(server_round, history)

    def final_arrays(self) -> list[np.ndarray] | None:
        if self.grid is not None and self.grid.legacy is not None:
            return fl.common.parameters_to_ndarrays(self.grid.legacy.parameters)
        if self.result_ is None or not self.result_.arrays:
            return None
        return self.result_.arrays.to_numpy_ndarrays()

    def final_metrics(self, history: fl.server.History) -> dict[str, float]:
        if self.result_ is None:
            return _final_metrics(history)
        rounds = [*self.result_.evaluate_metrics_serverapp,
                  *self.result_.evaluate_metrics_clientapp]
        return _round_figures(max(rounds), self.result_) if rounds else {}


def _round_figures(server_round: int, result: Result) -> dict[str, float]:
    """The round's numbers to show: the server's own evaluation where the app has one, else
    the nodes' aggregated evaluation."""
    for by_round in (result.evaluate_metrics_serverapp, result.evaluate_metrics_clientapp):
        if server_round in by_round:
            return {k: float(v) for k, v in _scalars(by_round[server_round]).items()}
    return {}


def _scalars(record: MetricRecord) -> dict[str, int | float]:
    """The record's single numbers (a History holds no lists)."""
    return {k: v for k, v in record.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def _history_of(result: Result | None) -> fl.server.History:
    """A History of what a strategy's Result holds (empty without one): the server's
    evaluation as the centralized series (its ``loss`` as the losses), the nodes' evaluate
    and train metrics as the distributed ones."""
    history = fl.server.History()
    if result is None:
        return history
    for server_round, record in sorted(result.evaluate_metrics_serverapp.items()):
        metrics: dict[str, Scalar] = dict(_scalars(record))
        if isinstance(loss := metrics.pop("loss", None), int | float):
            history.add_loss_centralized(server_round, float(loss))
        history.add_metrics_centralized(server_round, metrics)
    for server_round, record in sorted(result.evaluate_metrics_clientapp.items()):
        metrics = dict(_scalars(record))
        key = "loss" if "loss" in metrics else "eval_loss"  # Flower's examples say eval_loss
        if isinstance(loss := metrics.pop(key, None), int | float):
            history.add_loss_distributed(server_round, float(loss))
        history.add_metrics_distributed(server_round, metrics)
    for server_round, record in sorted(result.train_metrics_clientapp.items()):
        history.add_metrics_distributed_fit(server_round, dict(_scalars(record)))
    return history


class _RoundGrid(ProxyGrid):
    """The ServerApp's Grid. It tells ``on_round`` of each round whose train messages came
    back (the round is their group id, as fedsilo's and Flower's strategies set it), and
    ``on_result`` of what a fedsilo strategy reports at the end of each round, which it also
    checkpoints (the Result and the strategy's state) in ``checkpoints``. With ``resume``,
    the first ``start()`` on it goes on from the newest of those checkpoints. A ``server_fn``
    app's legacy Server checkpoints there itself and reports to ``on_legacy_round``."""

    def __init__(self, client_manager: fl.server.SimpleClientManager, *, run_id: int,
                 checkpoints: Path, resume: bool, on_round: Callable[[int], None],
                 on_result: Callable[[int, Result], None],
                 on_legacy_round: Callable[[int, fl.server.History], None]) -> None:
        super().__init__(client_manager, run_id=run_id)
        self.checkpoints = checkpoints
        self.resuming = resume
        self.on_round = on_round
        self.on_result = on_result
        self.on_legacy_round = on_legacy_round
        self.legacy: fl.server.Server | None = None

    def adopt_server(self, server: fl.server.Server) -> None:
        """A server_fn app's Server checkpoints every round into the run's checkpoints (a new
        run starts with none, so a Server that finds one there is resuming) and reports its
        rounds as the orchestrator's own server would."""
        server.checkpoint_dir = self.checkpoints
        server.on_round_end = self.on_legacy_round
        self.legacy = server

    def send_and_fold(self, messages: Iterable[Message], fold: ReplyFold, *,
                      timeout: float | None = None, keep_arrays: bool = False) -> None:
        messages = list(messages)
        super().send_and_fold(messages, fold, timeout=timeout, keep_arrays=keep_arrays)
        rounds = {m.metadata.group_id for m in messages if m.metadata.message_type == "train"}
        for group in sorted(r for r in rounds if r.isdigit()):
            self.on_round(int(group))

    def on_round_end(self, server_round: int, result: Result, strategy: Strategy) -> None:
        save_checkpoint(self.checkpoints, RoundCheckpoint(
            server_round=server_round, parameters=arrays_to_parameters(result.arrays),
            history=_history_of(result), strategy_type=type(strategy).__name__,
            strategy_state={"strategy": strategy.state_dict(), "result": _result_state(result)}))
        self.on_result(server_round, result)

    def resume(self, strategy: Strategy) -> tuple[int, Result] | None:
        if not self.resuming:
            return None
        self.resuming = False  # a second start() in the same ServerApp starts afresh
        loaded = load_latest(self.checkpoints)
        if loaded is None:
            return None
        if loaded.strategy_type != type(strategy).__name__:
            raise CheckpointError(f"the checkpoints in {self.checkpoints} are of a "
                                  f"{loaded.strategy_type}, not a {type(strategy).__name__}; "
                                  "start a new run without --resume")
        saved = loaded.strategy_state
        strategy.load_state_dict(dict(saved.get("strategy", {})))
        log.info("resuming the ServerApp's %s after round %d", loaded.strategy_type,
                 loaded.server_round)
        return loaded.server_round, _result_from_state(saved["result"], loaded.parameters)


def _result_state(result: Result) -> dict[str, Any]:
    """A Result's metrics and array keys as JSON (its arrays go as the checkpoint's
    parameters)."""
    def by_round(records: dict[int, MetricRecord]) -> dict[str, dict[str, Any]]:
        return {str(r): dict(record) for r, record in records.items()}
    return {"keys": list(result.arrays.keys()),
            "train_metrics_clientapp": by_round(result.train_metrics_clientapp),
            "evaluate_metrics_clientapp": by_round(result.evaluate_metrics_clientapp),
            "evaluate_metrics_serverapp": by_round(result.evaluate_metrics_serverapp)}


def _result_from_state(state: dict[str, Any], parameters: fl.common.Parameters) -> Result:
    def by_round(name: str) -> dict[int, MetricRecord]:
        return {int(r): MetricRecord(values) for r, values in state[name].items()}
    return Result(arrays=parameters_to_arrays(parameters, list(state["keys"])),
                  train_metrics_clientapp=by_round("train_metrics_clientapp"),
                  evaluate_metrics_clientapp=by_round("evaluate_metrics_clientapp"),
                  evaluate_metrics_serverapp=by_round("evaluate_metrics_serverapp"))


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

