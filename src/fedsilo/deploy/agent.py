"""The site agent: an HTTPS service (FastAPI on uvicorn) through which others run jobs here.

Routes (the OpenAPI description is served at ``/openapi.json``)::

    GET  /health                    the site's name; no credentials needed
    POST /sts/assume-role           AssumeRole, signed by the caller (see fedsilo.deploy.sts)
    POST /jobs                      CreateTrainingJob     job:CreateTrainingJob + iam:PassRole
    GET  /jobs                      ListTrainingJobs      job:ListTrainingJobs
    GET  /jobs/{name}               DescribeTrainingJob   job:DescribeTrainingJob
    POST /jobs/{name}/stop          StopTrainingJob       job:StopTrainingJob
    POST /jobs/{name}/update        UpdateTrainingJob     job:UpdateTrainingJob
    GET  /jobs/{name}/logs          GetLogEvents          logs:GetLogEvents (only if granted)
    PUT  /code/apps/{file}          PutCode: an app       code:PutCode (only if granted)

Every route but the first two needs ``Authorization: Bearer <SessionToken>`` and is checked
against the session's role before the request is even parsed. No route reads a channel, the
code store or an artifact: the answers carry job state and artifact locations only. Errors are
JSON ``{"code": ..., "message": ...}`` with the status of :mod:`fedsilo.deploy.errors`.
The agent speaks TLS only, with the site's certificate from ``tls/``. Every call is written to
the site's audit log (:mod:`fedsilo.deploy.audit`): who, which checks and their statements,
the job, the answer's status. An uploaded app is stored under its own digest and runs only once
the site approves it (:mod:`fedsilo.deploy.app_approval`).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import fedsilo
from fedsilo.deploy.app_approval import store_upload
from fedsilo.deploy.audit import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, AuditEntry, AuditLog
from fedsilo.deploy.authz import Authorizer, Session
from fedsilo.deploy.errors import AccessDenied, DeployError, NotFound, ValidationError
from fedsilo.deploy.jobspec import parse_job_request
from fedsilo.deploy.roles import RoleStore, code_arn, job_arn
from fedsilo.deploy.runner import JobRunner
from fedsilo.deploy.site import SiteLayout
from fedsilo.deploy.sts import SIGNATURE_HEADER, AssumeRoleService, SeenSignatures

__all__ = ["create_app", "serve"]

log = logging.getLogger("fedsilo.deploy.agent")

# Idle keep-alive connections must not hold a stopping agent; jobs run on without it.
GRACEFUL_SHUTDOWN_S = 2

_JOB_EXAMPLE = {
    "TrainingJobName": "fl-site1-1",
    "HyperParameters": {"server-address": "10.0.0.5:8080", "sagemaker_program": "client.py",
                        "sagemaker_submit_directory": "fraud/source.tar.gz"},
    "AlgorithmSpecification": {"TrainingImage": "python", "TrainingInputMode": "File"},
    "RoleArn": "arn:fedsilo:iam::site1:role/service-role/FL-execution",
    "InputDataConfig": [{"ChannelName": "train",
                         "DataSource": {"SiteDataSource": {"Path": "train"}}}],
    "OutputDataConfig": {"OutputPath": "fl"},
    "ResourceConfig": {"InstanceType": "local", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


def create_app(site: SiteLayout) -> FastAPI:
    """The agent's application for ``site``.

    The job runner starts with the service (reading the job records back and adopting jobs
    still running), not with the application object, so the OpenAPI description can be
    produced without touching any job.
    """
    name = site.name
    roles = RoleStore(site.roles_path)
    roles.load()  # a policy that does not load stops the agent here, with the reason
    key = site.signing_key()
    sts = AssumeRoleService(name, roles, key,
                            SeenSignatures(site.state / "assume-role-seen.sqlite3"))
    authz = Authorizer(name, roles, key.public_key())
    runners: list[JobRunner] = []
    audits: list[AuditLog] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = site.config()
        audits.append(AuditLog(site.audit_path,
                               max_bytes=int(config.get("audit_max_bytes", DEFAULT_MAX_BYTES)),
                               backups=int(config.get("audit_backups", DEFAULT_BACKUPS))))
        runners.append(JobRunner(site))
        yield  # jobs keep running when the agent stops; the next agent adopts them
        audits[0].close()

    def jobs() -> JobRunner:
        return runners[0]

    app = FastAPI(lifespan=lifespan, title=f"fedsilo site agent ({name})",
                  version=fedsilo.__version__,
                  description="Start, watch and stop training jobs at this site through a "
                              "role it trusts you to assume. The site's data is never served.")

    @app.middleware("http")
    async def audit_every_call(request: Request, call_next: Any) -> Any:
        entry = AuditEntry(request.method, request.url.path,
                           request.client.host if request.client else None)
        request.state.audit = entry
        try:
            response = await call_next(request)
            entry.status = response.status_code
            return response
        finally:
            if entry.status is None:  # an error no handler turned into an answer
                entry.status, entry.error = 500, entry.error or "InternalFailure"
            if audits:
                audits[0].write(entry)

    @app.exception_handler(DeployError)
    async def deploy_error(request: Request, exc: DeployError) -> JSONResponse:
        request.state.audit.error = exc.code
        return JSONResponse({"code": exc.code, "message": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"code": ValidationError.code, "message": problems},
                            status_code=ValidationError.status)

    def session(request: Request, authorization: str | None, action: str, resource: str,
                job: str | None = None) -> Session:
        entry: AuditEntry = request.state.audit
        entry.job = job
        current = authz.session(authorization)
        entry.principal = current.claims.principal
        entry.session = current.claims.session_name
        entry.role = current.role.arn
        authz.check(current, action, resource, entry)
        return current

    @app.get("/health", summary="The site's name and the agent's version")
    def health() -> dict[str, str]:
        return {"site": name, "version": fedsilo.__version__}

    @app.post("/sts/assume-role", summary="AssumeRole: signed, expiring session credentials",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object", "required": [
                      "RoleArn", "RoleSessionName", "Audience", "Timestamp"]}}}}})
    async def assume_role(
        request: Request,
        signature: str | None = Header(default=None, alias=SIGNATURE_HEADER),
    ) -> dict[str, Any]:
        return sts.assume_role(await request.body(), signature, request.state.audit)

    @app.post("/jobs", summary="CreateTrainingJob")
    def create_training_job(
        request: Request,
        body: Annotated[dict[str, Any], Body(openapi_examples={"job": {"value": _JOB_EXAMPLE}})],
        authorization: str | None = Header(default=None),
    ) -> dict[str, str]:
        job = str(body.get("TrainingJobName", ""))
        current = session(request, authorization, "job:CreateTrainingJob", job_arn(name, job),
                          job)
        role = str(body.get("RoleArn", ""))
        authz.check(current, "iam:PassRole", role, request.state.audit)
        try:
            roles.execution_role(role)
        except NotFound:  # as a role that may not be passed: nothing more is said
            raise AccessDenied(f"{current.role.arn} is not authorized to perform "
                               f"iam:PassRole on {role}") from None
        spec = parse_job_request(site, body)
        record = jobs().create(spec)
        log.info("job %s created by %s (%s)", job, current.claims.principal,
                 current.claims.session_name)
        return {"TrainingJobArn": record.arn}

    @app.get("/jobs", summary="ListTrainingJobs")
    def list_training_jobs(request: Request,
                           authorization: str | None = Header(default=None)) -> dict[str, Any]:
        session(request, authorization, "job:ListTrainingJobs", job_arn(name, "*"))
        return {"TrainingJobSummaries": jobs().list()}

    @app.get("/jobs/{job}", summary="DescribeTrainingJob")
    def describe_training_job(job: str, request: Request,
                              authorization: str | None = Header(default=None)) -> dict[str, Any]:
        session(request, authorization, "job:DescribeTrainingJob", job_arn(name, job), job)
        return jobs().describe(job)

    @app.post("/jobs/{job}/stop", summary="StopTrainingJob")
    def stop_training_job(job: str, request: Request,
                          authorization: str | None = Header(default=None)) -> dict[str, Any]:
        current = session(request, authorization, "job:StopTrainingJob", job_arn(name, job),
                          job)
        log.info("job %s stop asked by %s", job, current.claims.principal)
        return jobs().stop(job)

    @app.post("/jobs/{job}/update", summary="UpdateTrainingJob (StoppingCondition only)")
    def update_training_job(
        job: str,
        request: Request,
        body: Annotated[dict[str, Any], Body(openapi_examples={"longer": {"value": {
            "StoppingCondition": {"MaxRuntimeInSeconds": 7200}}}})],
        authorization: str | None = Header(default=None),
    ) -> dict[str, Any]:
        session(request, authorization, "job:UpdateTrainingJob", job_arn(name, job), job)
        condition = body.get("StoppingCondition")
        if not isinstance(condition, dict):
            raise ValidationError("UpdateTrainingJob needs a StoppingCondition object")
        return jobs().update(job, condition)

    @app.get("/jobs/{job}/logs", summary="GetLogEvents: the job's output, where granted")
    def get_log_events(job: str, request: Request, start: int = Query(0, ge=0),
                       limit: int = Query(1000, ge=1, le=10000),
                       authorization: str | None = Header(default=None)) -> dict[str, Any]:
        session(request, authorization, "logs:GetLogEvents", job_arn(name, job), job)
        return jobs().logs(job, start, limit)

    @app.put("/code/apps/{file}", summary="PutCode: an app archive (or its signature)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string",
                                                         "format": "binary"}}}}})
    async def put_code(file: str, request: Request,
                       authorization: str | None = Header(default=None)) -> dict[str, Any]:
        current = session(request, authorization, "code:PutCode",
                          code_arn(name, f"apps/{file}"))
        stored = store_upload(site, f"apps/{file}", await request.body())
        log.info("%s uploaded by %s", stored["Location"], current.claims.principal)
        return stored

    return app


def serve(site: SiteLayout, *, host: str | None = None, port: int | None = None,
          log_level: str = "warning") -> None:
    """Run the agent until interrupted; TLS with the site's certificate, always."""
    import uvicorn

    config = site.config()
    cert, key = site.tls / "agent.pem", site.tls / "agent.key"
    if not cert.is_file() or not key.is_file():
        raise NotFound(f"{site.tls} lacks agent.pem/agent.key; the agent serves TLS only")
    app = create_app(site)
    _warn_about_isolation(site, config)
    host = host or str(config.get("host", "127.0.0.1"))
    port = port if port is not None else int(config.get("port", 8443))
    # Bind first, so a busy port is one clear error and "serving" is only said once it is true.
    try:
        sock = socket.create_server((host, port), family=_family(host), reuse_port=False)
    except OSError as exc:
        raise OSError(f"the site agent cannot listen on {host}:{port}: "
                      f"{exc.strerror or exc}; choose another --port") from exc
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        app, ssl_certfile=str(cert), ssl_keyfile=str(key), log_level=log_level,
        access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    log.info("site agent of %s at https://%s:%d (OpenAPI at /openapi.json)", site.name, host,
             bound_port)
    with sock:
        server.run(sockets=[sock])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _warn_about_isolation(site: SiteLayout, config: dict[str, Any]) -> None:
    from fedsilo.deploy.site import namespaces_available

    if not config.get("isolate_jobs", True):
        log.warning("jobs at site %s are NOT isolated (site.json: \"isolate_jobs\": false): "
                    "they can read whatever this agent's user can, the site's keys included",
                    site.name)
    elif not namespaces_available():
        log.warning("site %s isolates jobs, but this machine does not allow user, PID and "
                    "mount namespaces: every job will fail until it does, or the site opts out",
                    site.name)


def openapi_document(site: SiteLayout) -> str:
    """The agent's OpenAPI description as JSON text (for publishing without a server)."""
    return json.dumps(create_app(site).openapi(), indent=2)
