"""``federation.toml``: the app to federate, the server, and the sites to launch on.

::

    [app]                            # the app: code the federation runs, on both sides
    dir = "app"                      # its directory: packed and sent to every site
    server = "server:server_fn"      # module:function in dir: the strategy and ServerConfig
    program = "client.py"            # the site program in dir (script mode)
                                     # (neither, for a Flower app: its pyproject.toml's
                                     # ServerApp and ClientApp run; config overrides its
                                     # [tool.flwr.app.config])
    config = { penalty = "l2", max-iter = 10 }   # run_config, sent to every site's job
    signature = "app.sig"            # optional: `fedsilo app sign`, for sites that trust signers

    [server]
    address = "127.0.0.1:0"          # where the FL server listens; port 0: a free one
    public_address = ""              # what the sites dial (default: address, as chosen)
    rounds = 3                       # overrides the app's ServerConfig.num_rounds
    round_timeout = 60
    connect_timeout = 60             # how long the server waits for the sites' clients
    finish_timeout = 60              # how long jobs may take to end once the server is done
    certificates = "certs"           # ca.pem, server.pem, server.key from `fedsilo certs init`
    data = "server"                  # the server's own data (e.g. a test set), for the app
    output = "run"                   # final_arrays.npz, history.json, federation.json

    [strategy]
    min_sites = 3                    # go on while this many sites remain (default: all)

    [identity]                       # the key sites trust, with its certificate if any
    key = "certs/orchestrator.key"
    certificate = "certs/orchestrator.pem"

    [[sites]]
    name = "site1"
    launcher = "local"               # or "sagemaker"
    endpoint = "https://127.0.0.1:8443"
    ca = "sites/site1/tls/ca.pem"
    role = "arn:fedsilo:iam::site1:role/FL-kickoff-client-job"
    execution_role = "arn:fedsilo:iam::site1:role/service-role/FL-execution"
    external_id = "acme-fl-42"       # optional: AssumeRole's ExternalId, if the site asks one
    source = ""                      # default: the app's archive, uploaded to the site;
                                     # or code the site holds already (s3://... on SageMaker)
    output = "fl"                    # under the site's artifacts (or s3://...)
    max_runtime = 3600
    channels = { train = "train", identity = "identity" }
    hyperparameters = { }            # this site's own, on top of the app's config
    client_certificate = "sites/site1/tls/client.pem"   # enrol the site: mutual TLS
    # SageMaker only: region, endpoint_url, training_image, instance_type, vpc_config,
    # external_id, source_identity, session_tags, session_duration, code_prefix, kms_key_id,
    # volume_size, environment, checkpoint_uri, spot, max_wait, tags, download_model

Relative paths are relative to the file's directory. A SageMaker site is remote: its job dials
the server from AWS, so a federation with one needs ``public_address`` (a name or address the
jobs can reach, not a loopback one, and named in the server certificate) and a fixed port;
its timeouts default to minutes (``connect_timeout`` 900 s: a training job takes minutes to
start; ``finish_timeout`` 600 s: the Uploading phase), against 60 s for local sites only. A
SageMaker ``source`` that is not an ``s3://`` URI is a file here, uploaded under
``code_prefix``. When every site names its
``client_certificate``, the server admits only those sites' keys (mutual TLS with an
allowlist); the site's job then presents the certificate and key of its ``identity`` channel.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.deploy.app_archive import FLOWER_JOB_ENTRY, is_flower_app
from fedsilo.deploy.errors import ValidationError

__all__ = ["AppConfig", "FederationConfig", "SiteConfig", "load_federation_config"]

LAUNCHERS = ("local", "sagemaker")
LOCAL_WINDOW_S = 60.0
REMOTE_CONNECT_S = 900.0
REMOTE_FINISH_S = 600.0
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


RunConfig = dict[str, bool | int | float | str]


@dataclass(frozen=True)
class AppConfig:
    """The app a federation runs: its directory, server function, site program, run config.

    ``flower``: the directory is a Flower app (``pyproject.toml`` names its ServerApp and
    ClientApp) and ``[app]`` names neither ``server`` nor ``program``: the orchestrator runs
    the ServerApp, each site's job the ClientApp.
    """

    directory: Path
    server: str
    program: str = "client.py"
    run_config: RunConfig = field(default_factory=dict)
    signature: Path | None = None
    flower: bool = False


@dataclass(frozen=True)
class SiteConfig:
    """One site to launch a training job on."""

    name: str
    launcher: str
    role: str
    execution_role: str
    program: str
    source: str
    output: str
    channels: dict[str, str]
    hyperparameters: dict[str, str] = field(default_factory=dict)
    max_runtime: int = 3600
    endpoint: str = ""
    ca: Path | None = None
    region: str = "us-east-1"
    endpoint_url: str | None = None
    training_image: str = "python"
    instance_type: str = "ml.m5.xlarge"
    vpc_config: dict[str, Any] | None = None
    client_certificate: Path | None = None
    external_id: str | None = None
    source_identity: str | None = None
    session_tags: dict[str, str] = field(default_factory=dict)
    session_duration: int = 3600
    code_prefix: str = ""
    kms_key_id: str | None = None
    volume_size: int = 10
    environment: dict[str, str] = field(default_factory=dict)
    checkpoint_uri: str | None = None
    spot: bool = False
    max_wait: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    download_model: bool = True

    @property
    def remote(self) -> bool:
        """Whether the site's job runs elsewhere (it must reach the server from outside)."""
        return self.launcher == "sagemaker"


@dataclass(frozen=True)
class FederationConfig:
    """The whole run; see the module's docstring for the file's shape."""

    address: str
    app: AppConfig
    certificates: Path
    output: Path
    identity_key: Path
    sites: tuple[SiteConfig, ...]
    rounds: int | None = None
    data: Path | None = None
    public_address: str = ""
    round_timeout: float = 60.0
    connect_timeout: float = 60.0
    finish_timeout: float = 60.0
    min_sites: int = 0
    identity_certificate: Path | None = None

    @property
    def required_sites(self) -> int:
        return self.min_sites or len(self.sites)

    @property
    def enrolled_certificates(self) -> list[Path]:
        """The sites' client certificates, when mutual TLS is on (every site names one)."""
        return [s.client_certificate for s in self.sites if s.client_certificate is not None]


def load_federation_config(path: Path) -> FederationConfig:
    """Read and check ``path``; errors name the table and key to fix."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"{path}: {exc}") from exc
    base = Path(path).resolve().parent
    if "evaluation" in raw:
        raise ValidationError(f"{path}: the [evaluation] table is gone; name the app to run in "
                              "an [app] table (dir, server, program, config) and the server's "
                              "data in server.data (see docs/deployment.md)")
    _known(raw, KNOWN_KEYS[""], path.name if isinstance(path, Path) else str(path))
    for table in ("app", "server", "strategy", "identity"):
        if isinstance(raw.get(table), dict):
            _known(raw[table], KNOWN_KEYS[table], table)
    server, strategy = _table(raw, "server"), raw.get("strategy", {})
    identity = _table(raw, "identity")
    sites = tuple(_site(s, base, i) for i, s in enumerate(raw.get("sites", [])))
    if not sites:
        raise ValidationError(f"{path}: add at least one [[sites]] table")
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValidationError(f"{path}: site names must be unique, got {names}")
    remote = any(s.remote for s in sites)
    config = FederationConfig(
        address=str(server.get("address", "127.0.0.1:0")),
        public_address=str(server.get("public_address", "")),
        app=_app(_table(raw, "app"), base),
        rounds=_int(server, "rounds", "server", 0) if "rounds" in server else None,
        round_timeout=float(server.get("round_timeout", 60.0)),
        connect_timeout=float(server.get("connect_timeout",
                                         REMOTE_CONNECT_S if remote else LOCAL_WINDOW_S)),
        finish_timeout=float(server.get("finish_timeout",
                                        REMOTE_FINISH_S if remote else LOCAL_WINDOW_S)),
        certificates=base / _str(server, "certificates", "server"),
        output=base / str(server.get("output", "run")),
        data=(base / _str(server, "data", "server")) if "data" in server else None,
        min_sites=int(strategy.get("min_sites", 0)),
        identity_key=base / _str(identity, "key", "identity"),
        identity_certificate=(base / identity["certificate"]) if "certificate" in identity
        else None,
        sites=sites,
    )
    if config.rounds is not None and config.rounds < 1:
        raise ValidationError("server.rounds must be at least 1")
    if not 0 <= config.min_sites <= len(sites):
        raise ValidationError(f"strategy.min_sites must be 0 (all) to {len(sites)}")
    enrolled = len(config.enrolled_certificates)
    if 0 < enrolled < len(sites):
        raise ValidationError(f"{path}: {enrolled} of {len(sites)} sites name a "
                              "client_certificate; mutual TLS needs one for every site")
    if remote:
        _check_reachable(config, path)
    return config


def _app(raw: dict[str, Any], base: Path) -> AppConfig:
    directory = base / _str(raw, "dir", "app")
    run_config = raw.get("config", {})
    if not isinstance(run_config, dict) or not all(
            isinstance(v, bool | int | float | str) for v in run_config.values()):
        raise ValidationError("app.config must be a table of strings, numbers and booleans")
    signature = (base / _str(raw, "signature", "app")) if "signature" in raw else None
    if "server" not in raw and "program" not in raw and is_flower_app(directory):
        return AppConfig(directory=directory, server="", program=FLOWER_JOB_ENTRY,
                         run_config={str(k): v for k, v in run_config.items()},
                         signature=signature, flower=True)
    server = _str(raw, "server", "app")
    module, _, function = server.partition(":")
    if not module or not function.isidentifier():
        raise ValidationError(f"app.server must be 'module:function', got {server!r}")
    program = str(raw.get("program", "client.py"))
    return AppConfig(directory=directory, server=server, program=program,
                     run_config={str(k): v for k, v in run_config.items()},
                     signature=signature)


def _check_reachable(config: FederationConfig, path: Path) -> None:
    """Remote sites' jobs must be able to dial the server: a public address, a fixed port."""
    remote = ", ".join(s.name for s in config.sites if s.remote)
    if not config.public_address:
        raise ValidationError(f"{path}: sites {remote} run elsewhere and must dial the server: "
                              "set server.public_address to a name or IP address they reach "
                              "(and name it in the server certificate)")
    host, _, port = config.public_address.rpartition(":")
    if not host or not port.isdigit() or port == "0":
        raise ValidationError(f"{path}: server.public_address must be host:port with a fixed "
                              f"port, got {config.public_address!r}")
    if is_loopback(host):
        raise ValidationError(f"{path}: server.public_address {config.public_address!r} is this "
                              f"machine's loopback; sites {remote} cannot reach it")
    if config.address.rpartition(":")[2] == "0":
        raise ValidationError(f"{path}: server.address needs a fixed port (open in the security "
                              f"group) for sites {remote}, not port 0")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, 0.0.0.0, localhost)."""
    import ipaddress

    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _site(raw: Any, base: Path, index: int) -> SiteConfig:
    where = f"sites[{index}]"
    if not isinstance(raw, dict):
        raise ValidationError(f"{where} must be a table")
    _known(raw, KNOWN_KEYS["sites"], where)
    launcher = str(raw.get("launcher", "local"))
    if launcher not in LAUNCHERS:
        raise ValidationError(f"{where}.launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if launcher == "local":
        for key in ("endpoint", "ca"):
            _str(raw, key, where)
    tables = {key: raw.get(key, {}) for key in ("channels", "hyperparameters", "environment",
                                                "session_tags", "tags")}
    bad = [key for key, value in tables.items() if not isinstance(value, dict)]
    if bad:
        raise ValidationError(f"{where}.{bad[0]} must be a table")
    channels, hps = tables["channels"], tables["hyperparameters"]
    source = str(raw.get("source", ""))  # default: the app's archive, uploaded by the agent
    if launcher == "sagemaker":
        source = _str(raw, "source", where)  # the orchestrator uploads through agents only
        if not source.startswith("s3://"):
            source = str(base / source)  # a file here, uploaded to the site's code_prefix
    max_wait, max_runtime = raw.get("max_wait"), _int(raw, "max_runtime", where, 3600)
    if max_wait is not None and (not isinstance(max_wait, int) or max_wait < max_runtime):
        raise ValidationError(f"{where}.max_wait (managed spot: waiting plus running) must be "
                              f"an integer of at least max_runtime ({max_runtime} s)")
    return SiteConfig(
        name=_str(raw, "name", where), launcher=launcher, role=_str(raw, "role", where),
        execution_role=_str(raw, "execution_role", where),
        program=str(raw.get("program", "")), source=source,
        output=str(raw.get("output", "fl")),
        channels=_strings(channels), hyperparameters=_strings(hps),
        max_runtime=max_runtime,
        endpoint=str(raw.get("endpoint", "")),
        ca=(base / raw["ca"]) if "ca" in raw else None,
        region=str(raw.get("region", "us-east-1")),
        endpoint_url=raw.get("endpoint_url"),
        training_image=str(raw.get("training_image", "python")),
        instance_type=str(raw.get("instance_type", "ml.m5.xlarge")),
        vpc_config=raw.get("vpc_config"),
        client_certificate=(base / raw["client_certificate"]) if "client_certificate" in raw
        else None,
        external_id=raw.get("external_id"),
        source_identity=raw.get("source_identity"),
        session_tags=_strings(tables["session_tags"]),
        session_duration=_int(raw, "session_duration", where, 3600),
        code_prefix=str(raw.get("code_prefix", "")),
        kms_key_id=raw.get("kms_key_id"),
        volume_size=_int(raw, "volume_size", where, 10),
        environment=_strings(tables["environment"]),
        checkpoint_uri=raw.get("checkpoint_uri"),
        spot=bool(raw.get("spot", False)),
        max_wait=max_wait,
        tags=_strings(tables["tags"]),
        download_model=bool(raw.get("download_model", True)),
    )


# Every key a federation.toml may hold, per table: anything else is a typo, refused by name.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"app", "server", "strategy", "identity", "sites"}),
    "app": frozenset({"dir", "server", "program", "config", "signature"}),
    "server": frozenset({"address", "public_address", "rounds", "round_timeout",
                         "connect_timeout", "finish_timeout", "certificates", "data",
                         "output"}),
    "strategy": frozenset({"min_sites"}),
    "identity": frozenset({"key", "certificate"}),
    "sites": frozenset({"name", "launcher", "role", "execution_role", "program", "source",
                        "output", "channels", "hyperparameters", "max_runtime", "endpoint",
                        "ca", "region", "endpoint_url", "training_image", "instance_type",
                        "vpc_config", "client_certificate", "external_id", "source_identity",
                        "session_tags", "session_duration", "code_prefix", "kms_key_id",
                        "volume_size", "environment", "checkpoint_uri", "spot", "max_wait",
                        "tags", "download_model"}),
}


def check_files(config: FederationConfig) -> None:
    """Every file the run reads must be there; the error names the key and the file."""
    _must_exist(config.identity_key, "identity.key")
    for name in ("ca.pem", "server.pem", "server.key"):
        _must_exist(config.certificates / name, f"server.certificates ({name})")
    for site in config.sites:
        if site.ca is not None:
            _must_exist(site.ca, f"sites.{site.name}.ca")
        if site.client_certificate is not None:
            _must_exist(site.client_certificate, f"sites.{site.name}.client_certificate")
    if not config.app.directory.is_dir():
        raise ValidationError(f"app.dir names {config.app.directory}, which is not a directory")
    if not config.app.flower:  # a Flower app's job entry is added when it is packed
        _must_exist(config.app.directory / config.app.program, "app.program")
    if config.app.signature is not None:
        _must_exist(config.app.signature, "app.signature")
    if config.data is not None and not config.data.exists():
        raise ValidationError(f"server.data names {config.data}, which does not exist")


def _known(raw: dict[str, Any], keys: frozenset[str], where: str) -> None:
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ValidationError(f"{where}: unknown keys {unknown}; known: {sorted(keys)}")


def _must_exist(path: Path, key: str) -> None:
    if not path.is_file():
        raise ValidationError(f"{key} names {path}, which is not a file")


def _strings(table: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in table.items()}


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise ValidationError(f"federation.toml needs a [{name}] table")
    return value


def _str(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{where}.{key} is required (a string)")
    return value


def _int(raw: dict[str, Any], key: str, where: str, default: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"{where}.{key} must be an integer")
    return value
