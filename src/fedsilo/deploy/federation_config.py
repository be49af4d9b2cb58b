"""``federation.toml``: the app to federate, the server, and the sites to launch on.

::

    [app]                            # the app: code the federation runs, on both sides
    dir = "app"                      # its directory: packed and sent to every site
    server = "server:server_fn"      # module:function in dir: the strategy and ServerConfig
    program = "client.py"            # the site program in dir (script mode)
    config = { penalty = "l2", max-iter = 10 }   # run_config, sent to every site's job
    signature = "app.sig"            # optional: `fedsilo app sign`, for sites that trust signers

    [server]
    address = "127.0.0.1:0"          # where the FL server listens; port 0: a free one
    public_address = ""              # what the sites dial (default: address, as chosen)
    rounds = 3                       # overrides the app's ServerConfig.num_rounds
    round_timeout = 60
    connect_timeout = 60             # how long the server waits for the sites' clients
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
    source = ""                      # default: the app's archive, uploaded to the site;
                                     # or code the site holds already (s3://... on SageMaker)
    output = "fl"                    # under the site's artifacts (or s3://...)
    max_runtime = 3600
    channels = { train = "train", identity = "identity" }
    hyperparameters = { }            # this site's own, on top of the app's config
    client_certificate = "sites/site1/tls/client.pem"   # enrol the site: mutual TLS
    # SageMaker only: region, endpoint_url, training_image, instance_type, vpc_config

Relative paths are relative to the file's directory. When every site names its
``client_certificate``, the server admits only those sites' keys (mutual TLS with an
allowlist); the site's job then presents the certificate and key of its ``identity`` channel.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.deploy.errors import ValidationError

__all__ = ["AppConfig", "FederationConfig", "SiteConfig", "load_federation_config"]

LAUNCHERS = ("local", "sagemaker")


RunConfig = dict[str, bool | int | float | str]


@dataclass(frozen=True)
class AppConfig:
    """The app a federation runs: its directory, server function, site program, run config."""

    directory: Path
    server: str
    program: str = "client.py"
    run_config: RunConfig = field(default_factory=dict)
    signature: Path | None = None


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
    config = FederationConfig(
        address=str(server.get("address", "127.0.0.1:0")),
        public_address=str(server.get("public_address", "")),
        app=_app(_table(raw, "app"), base),
        rounds=_int(server, "rounds", "server", None),
        round_timeout=float(server.get("round_timeout", 60.0)),
        connect_timeout=float(server.get("connect_timeout", 60.0)),
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
    return config


def _app(raw: dict[str, Any], base: Path) -> AppConfig:
    directory = base / _str(raw, "dir", "app")
    server = _str(raw, "server", "app")
    module, _, function = server.partition(":")
    if not module or not function.isidentifier():
        raise ValidationError(f"app.server must be 'module:function', got {server!r}")
    program = str(raw.get("program", "client.py"))
    run_config = raw.get("config", {})
    if not isinstance(run_config, dict) or not all(
            isinstance(v, bool | int | float | str) for v in run_config.values()):
        raise ValidationError("app.config must be a table of strings, numbers and booleans")
    return AppConfig(directory=directory, server=server, program=program,
                     run_config={str(k): v for k, v in run_config.items()},
                     signature=(base / _str(raw, "signature", "app")) if "signature" in raw
                     else None)


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
    else:  # the orchestrator places code through site agents only
        _str(raw, "source", where)
    channels = raw.get("channels", {})
    hps = raw.get("hyperparameters", {})
    if not isinstance(channels, dict) or not isinstance(hps, dict):
        raise ValidationError(f"{where}.channels and .hyperparameters must be tables")
    return SiteConfig(
        name=_str(raw, "name", where), launcher=launcher, role=_str(raw, "role", where),
        execution_role=_str(raw, "execution_role", where),
        program=str(raw.get("program", "")), source=str(raw.get("source", "")),
        output=str(raw.get("output", "fl")),
        channels={str(k): str(v) for k, v in channels.items()},
        hyperparameters={str(k): str(v) for k, v in hps.items()},
        max_runtime=int(raw.get("max_runtime", 3600)),
        endpoint=str(raw.get("endpoint", "")),
        ca=(base / raw["ca"]) if "ca" in raw else None,
        region=str(raw.get("region", "us-east-1")),
        endpoint_url=raw.get("endpoint_url"),
        training_image=str(raw.get("training_image", "python")),
        instance_type=str(raw.get("instance_type", "ml.m5.xlarge")),
        vpc_config=raw.get("vpc_config"),
        client_certificate=(base / raw["client_certificate"]) if "client_certificate" in raw
        else None,
    )


# Every key a federation.toml may hold, per table: anything else is a typo, refused by name.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"app", "server", "strategy", "identity", "sites"}),
    "app": frozenset({"dir", "server", "program", "config", "signature"}),
    "server": frozenset({"address", "public_address", "rounds", "round_timeout",
                         "connect_timeout", "certificates", "data", "output"}),
    "strategy": frozenset({"min_sites"}),
    "identity": frozenset({"key", "certificate"}),
    "sites": frozenset({"name", "launcher", "role", "execution_role", "program", "source",
                        "output", "channels", "hyperparameters", "max_runtime", "endpoint",
                        "ca", "region", "endpoint_url", "training_image", "instance_type",
                        "vpc_config", "client_certificate"}),
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


def _int(raw: dict[str, Any], key: str, where: str, default: int | None) -> int | None:
    value = raw.get(key, default)
    if value is not None and not isinstance(value, int):
        raise ValidationError(f"{where}.{key} must be an integer")
    return value
