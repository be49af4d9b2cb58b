"""Bad input on the command line: one line on stderr, exit 1 or 2, nothing made, nothing left.

Each case runs the installed console script in a fresh working directory with relative paths,
as a user types it. After it: exactly one line on stderr, no traceback, no file or directory
that was not there before, and no process still running from that directory. A property test
then throws generated bad arguments at the file-reading commands in-process.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsilo.cli.main import main

SCRIPT = Path(sys.executable).with_name("fedsilo")


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def processes_in(directory: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd"]):
        if proc.pid == os.getpid():  # this test runs there itself
            continue
        try:
            if proc.info["cwd"] and Path(proc.info["cwd"]).is_relative_to(directory):
                found.append(proc)
        except (psutil.Error, ValueError):
            continue
    return found


@contextmanager
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def make_certs(root: Path) -> None:
    for command in ("certs init certs", "certs client certs orchestrator"):
        assert main(shlex.split(command)) == 0


def make_site(root: Path) -> None:
    assert main(["site", "init", "sites/site1", "--name", "site1"]) == 0


def federation_toml(extra_server: str = "", ca: str = "sites/site1/tls/ca.pem") -> str:
    return f"""
[app]
dir = "app"
server = "server:server_fn"
[server]
certificates = "certs"
{extra_server}
[identity]
key = "certs/orchestrator.key"
[[sites]]
name = "site1"
endpoint = "https://127.0.0.1:9"
ca = "{ca}"
role = "arn:fedsilo:iam::site1:role/FL-kickoff-client-job"
execution_role = "arn:fedsilo:iam::site1:role/service-role/FL-execution"
source = "fraud/source.tar.gz"
"""


def write(name: str, text: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return setup


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for step in steps:
            step(root)
    return setup


def nothing(root: Path) -> None:
    return None


# (id, set-up, arguments, the words the error line must hold). "{busy}" is a port in use.
CASES: list[tuple[str, Callable[[Path], None], str, tuple[str, ...]]] = [
    ("server-port-in-use", nothing, "server --address 127.0.0.1:{busy} --rounds 1",
     ("cannot listen", "{busy}")),
    ("server-rounds-0", nothing, "server --rounds 0 --address 127.0.0.1:0", ("--rounds",)),
    ("server-config-missing", nothing, "server --config server.toml", ("server.toml",)),
    ("server-config-unknown-key", write("server.toml", "roundz = 3\n"),
     "server --config server.toml", ("unknown", "roundz")),
    ("certs-client-without-ca", nothing, "certs client certs alice", ("no CA", "certs init")),
    ("certs-fingerprint-missing", nothing, "certs fingerprint nope.pem", ("nope.pem",)),
    ("certs-fingerprint-not-pem", write("junk.pem", "hello\n"), "certs fingerprint junk.pem",
     ("junk.pem", "not a PEM")),
    ("site-init-trust-key-missing", nothing,
     "site init sites/site1 --name site1 --trust-key nope.pem", ("nope.pem",)),
    ("site-trust-key-missing", make_site, "site trust sites/site1 --key nope.pem",
     ("nope.pem",)),
    ("site-trust-key-not-pem", both(make_site, write("junk.pem", "x")),
     "site trust sites/site1 --key junk.pem", ("junk.pem", "not a PEM")),
    ("site-add-channel-missing-source", make_site,
     "site add-channel sites/site1 train data/none", ("data/none", "not a directory")),
    ("site-add-channel-not-a-site", write("data/a.csv", "x\n"),
     "site add-channel elsewhere train data", ("elsewhere", "not a site")),
    ("site-add-code-not-a-site", write("prog/client.py", "x\n"), "site add-code elsewhere prog",
     ("not a site",)),
    ("site-approve-not-a-digest", make_site, "site approve sites/site1 nonsense",
     ("nonsense", "SHA-256")),
    ("app-new-unknown-example", nothing, "app new myapp --example nope", ("nope", "fraud")),
    ("site-serve-port-in-use", make_site, "site serve sites/site1 --port {busy}",
     ("cannot listen", "{busy}")),
    ("federate-missing-file", nothing, "federate federation.toml", ("federation.toml",)),
    ("federate-wrong-ca", both(make_certs, write("federation.toml", federation_toml())),
     "federate federation.toml", ("sites.site1.ca", "sites/site1/tls/ca.pem")),
    ("federate-unknown-key", both(make_certs,
                                  write("federation.toml", federation_toml("roundz = 3"))),
     "federate federation.toml", ("unknown keys", "roundz")),
    ("federate-app-dir-missing", both(make_certs, make_site,
                                      write("federation.toml", federation_toml())),
     "federate federation.toml", ("app.dir", "not a directory")),
    ("demo-output-is-a-file", write("taken", "x"), "demo --output taken", ("taken",)),
    ("demo-unknown-app", nothing, "demo --app nope", ("nope", "fraud, fraud-xgb or mlp")),
    ("demo-mlp-with-data", write("providers.csv", "x\n"), "demo --app mlp --data providers.csv",
     ("--data", "draws its own data")),
    ("unknown-command", nothing, "frobnicate", ("frobnicate",)),
]


@pytest.mark.parametrize(("setup", "arguments", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: Callable[[Path], None],
        arguments: str, expected: tuple[str, ...]) -> None:
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    before = snapshot(tmp_path)
    with busy_port() as port:
        argv = shlex.split(arguments.replace("{busy}", str(port)))
        done = subprocess.run([str(SCRIPT), *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode in (1, 2), (done.returncode, done.stdout, done.stderr)
    error_lines = done.stderr.splitlines()
    assert len(error_lines) == 1, done.stderr
    assert error_lines[0].startswith("fedsilo"), error_lines
    assert "Traceback" not in done.stderr + done.stdout
    for word in expected:
        assert word.replace("{busy}", str(port)) in error_lines[0], error_lines[0]
    assert snapshot(tmp_path) == before
    assert processes_in(tmp_path) == []


FILE_COMMANDS = [
    "certs fingerprint {path}",
    "certs client {path} alice",
    "site trust {path} --key {path}",
    "site add-channel {path} train {path}",
    "site add-code {path} {path}",
    "site approve {path} {path}",
    "site openapi {path}",
    "federate {path}",
]  # `server --config` is in the table above: an empty file is a valid configuration
BAD_PATHS = st.one_of(
    st.sampled_from(["missing", "missing/deeper", "empty.pem", "garbage.pem", "adir",
                     "adir/../missing", "~nobody-here/x", "binary.bin"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
            min_size=1, max_size=12).map(lambda s: f"zz-{s}"),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(FILE_COMMANDS), path=BAD_PATHS)
def test_generated_bad_paths_never_give_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        command: str, path: str) -> None:
    root = tmp_path / "cwd"
    root.mkdir(exist_ok=True)
    monkeypatch.chdir(root)
    (root / "empty.pem").write_text("")
    (root / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    (root / "binary.bin").write_bytes(os.urandom(64))
    (root / "adir").mkdir(exist_ok=True)
    before = snapshot(root)
    capfd.readouterr()
    argv = [word.replace("{path}", path) for word in command.split()]
    code = main(argv)
    out, err = capfd.readouterr()
    assert code in (1, 2), (argv, code, out, err)
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, (argv, err)
    assert snapshot(root) == before, argv


def test_the_xgboost_demo_without_xgboost_says_what_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "no-xgboost"  # an install without XGBoost, as far as imports go
    (blocker / "xgboost").mkdir(parents=True)
    (blocker / "xgboost" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'xgboost'\")\n")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([str(SCRIPT), "demo", "--app", "fraud-xgb"], cwd=work,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(blocker)})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        'fedsilo demo: error: the fraud-xgb app needs XGBoost, which this install lacks: '
        'pip install "fedsilo[xgboost]"'], done.stderr
    assert snapshot(work) == set()
