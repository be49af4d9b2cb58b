"""The commands README.md and docs/*.md show, run the way a user types them.

Every ``fedsilo`` command in the docs (in a code block or an inline code span) must parse with
the real command line: a renamed option or sub-command fails here. The flows are run as
written, from a fresh working directory with relative paths: the README's first command, the
deployment walkthrough (only its agent ports are swapped for free ones), the server's
checkpoint commands and the simulation command. Each command runs through the installed
console script, as a user's shell would run it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from fedsilo.cli.main import app, main
from fedsilo.server.checkpoint import latest_round

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCRIPT_DIR = Path(sys.executable).parent  # where pip put the `fedsilo` console script
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(path: Path, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text())
            if language is None or lang == language]


def shell_commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and ``&`` dropped."""
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # not shell (a JSON or tree line), unless it is a command
            assert "fedsilo " not in line, f"a command that does not parse: {line}"
            continue
        if words and words[-1] == "&":
            words = words[:-1]
        part: list[str] = []
        for word in [*words, "&&"]:  # `a && b` is two commands
            if word != "&&":
                part.append(word)
            elif part:
                commands.append(shlex.join(part))
                part = []
    return commands


def documented_fedsilo_commands() -> list[tuple[str, str]]:
    """(where, command) for every fedsilo command in a code block; inline spans are in
    :func:`inline_references`."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        text = path.read_text()
        for language, block in FENCE.findall(text):
            if language not in ("", "bash", "sh", "shell"):
                continue
            for command in shell_commands(block):
                words = shlex.split(command)
                if words[0] == "fedsilo":
                    found.append((path.name, command))
                elif words[0].endswith("bin/fedsilo"):  # the README's .venv/bin/fedsilo
                    found.append((path.name, shlex.join(["fedsilo", *words[1:]])))
    return found


def inline_references() -> list[tuple[str, str]]:
    """(where, span) for every inline code span that names a fedsilo command or option."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        for span in re.findall(r"`(fedsilo [^`]+)`", FENCE.sub("", path.read_text())):
            if not re.match(r"fedsilo [a-z-]", span) or re.match(r"fedsilo [a-z -]*:", span):
                continue  # a path or module name, or a one-line error quoted: not a command
            found.append((path.name, re.sub(r"[\[\]]", "", span)))  # `[--x N]`: a synopsis
    return found


def resolve(words: list[str]) -> tuple[object, list[str]]:
    """The (sub-)command ``words`` name, and the words after its name."""
    command = typer.main.get_command(app)
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


def parse(args: list[str]) -> None:
    """Parse ``args`` with the real command line, sub-command by sub-command, running nothing."""
    command = typer.main.get_command(app)
    context = command.make_context("fedsilo", list(args))
    while hasattr(command, "resolve_command"):
        protected = list(getattr(context, "_protected_args", None) or [])
        rest = [*protected, *context.args]
        if not rest:
            break
        _, command, rest = command.resolve_command(context, rest)
        assert command is not None, f"no sub-command in {args}"
        context = command.make_context(command.name, rest, parent=context)


COMMANDS = documented_fedsilo_commands()


REFERENCES = inline_references()


@pytest.mark.parametrize(("where", "span"), REFERENCES,
                         ids=[f"{w}:{c[:60]}" for w, c in REFERENCES])
def test_every_command_named_in_the_text_exists_with_its_options(where: str, span: str) -> None:
    command, rest = resolve(shlex.split(span)[1:])
    assert command is not typer.main.get_command(app), f"{where}: `{span}` names no command"
    if rest and hasattr(command, "commands"):
        pytest.fail(f"{where}: `{span}`: {command.name} has no sub-command {rest[0]!r}")
    options = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=")[0] in options, f"{where}: `{span}`: no option {word}"


def test_the_docs_show_the_commands_this_suite_runs() -> None:
    shown = {command for _, command in COMMANDS}
    assert "fedsilo federate federation.toml" in shown
    assert "fedsilo server --config server.toml --resume" in shown
    assert "fedsilo demo" in shown and len(COMMANDS) >= 15


@pytest.mark.parametrize(("where", "command"), COMMANDS,
                         ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_every_documented_command_parses(where: str, command: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    words = shlex.split(command)
    assert words[0] == "fedsilo"
    try:
        parse(words[1:])
    except Exception as exc:  # the parser's own error says what is wrong
        if "does not exist" not in str(exc):
            pytest.fail(f"{where}: `{command}` does not parse: {exc}")
        # A file that an earlier `fedsilo certs` command of the same page makes: make it the
        # same way, in a directory that otherwise holds the repository's files, and parse again.
        monkeypatch.chdir(tmp_path)
        for entry in REPO.iterdir():
            (tmp_path / entry.name).symlink_to(entry)
        earlier = [c for w, c in COMMANDS[:COMMANDS.index((where, command))] if w == where]
        for step in earlier:
            if step.startswith("fedsilo certs "):
                assert main(shlex.split(step)[1:]) == 0, step
        try:
            parse(words[1:])
        except Exception as again:
            pytest.fail(f"{where}: `{command}` does not parse: {again}")


def run_shell(script: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``script`` under bash in ``cwd``, with the console script first on PATH, as a user has it.

    Background jobs the script starts are ended when it ends, whatever happened.
    """
    env = {**os.environ, "PATH": f"{SCRIPT_DIR}{os.pathsep}{os.environ['PATH']}"}
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n" + script
    return subprocess.run(["bash", "-c", wrapped], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
def test_readme_first_command_runs_as_written(tmp_path: Path) -> None:
    first = (REPO / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[0]
    assert first == ("python3.11 -m venv .venv && .venv/bin/pip install -e . && "
                     ".venv/bin/fedsilo demo")
    command = first.split(" && ")[-1].removeprefix(".venv/bin/")  # the venv is this one
    done = run_shell(command, tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    work = tmp_path / "fedsilo-demo"
    for name in ("model.joblib", "history.json", "report.json", "metrics.png",
                 "federation.toml"):
        assert (work / name).is_file(), name
    report = json.loads((work / "report.json").read_text())
    assert set(report["jobs"]) == {"site1", "site2", "site3"}
    for site in ("site1", "site2", "site3"):
        assert list((work / "sites" / site / "artifacts").rglob("model.tar.gz")), site
        assert report["jobs"][site]["status"] == "Completed"
    # Nothing in the run leads back to a relative path: every record holds absolute ones.
    for record in (work / "sites").rglob("record.json"):
        assert "fedsilo-demo/sites" not in record.read_text().replace(str(work), "")
    assert "Traceback" not in done.stderr
    # Output read from a file keeps a round's figures on one line.
    rounds = [line for line in done.stdout.splitlines() if line.startswith("round 5/5")]
    assert len(rounds) == 1 and "roc_auc" in rounds[0]


def deployment_walkthrough() -> tuple[str, str]:
    """docs/deployment.md's walkthrough: its shell block and its federation.toml, with free
    ports for the agents."""
    section = (REPO / "docs" / "deployment.md").read_text().split("## A site\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    shell = FENCE.search(section)
    toml = re.search(r"^```toml\n(.*?)^```", section, re.S | re.M)
    assert shell is not None and shell.group(1) == "bash" and toml is not None
    script, config = shell.group(2), toml.group(1)
    # The agents' ports are the one change: tests take free ports, chosen now.
    for documented, free in zip(("8441", "8442"), free_ports(2), strict=True):
        script, config = script.replace(documented, str(free)), config.replace(documented,
                                                                               str(free))
    return script, config


@pytest.mark.slow
def test_deployment_walkthrough_runs_as_written_with_relative_paths(tmp_path: Path) -> None:
    script, toml = deployment_walkthrough()
    (tmp_path / "federation.toml").write_text(toml)
    done = run_shell(script, tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "federation.json").read_text())
    assert set(summary["jobs"]) == {"site1", "site2"}
    assert all(j["TrainingJobStatus"] == "Completed" for j in summary["jobs"].values())
    assert summary["transport"] == {"tls": True, "enrolled_sites": 2}
    assert summary["metrics"]["roc_auc"] > 0.7
    for site in ("site1", "site2"):
        assert list((tmp_path / "sites" / site / "artifacts").rglob("model.tar.gz"))
    assert "final model, the server's evaluation" in done.stdout


NUMPY_CLIENT = textwrap.dedent("""
    import sys
    import numpy as np
    import fedsilo as fl

    class Client(fl.client.NumPyClient):
        def get_parameters(self, config):
            return [np.zeros(4, dtype=np.float32)]
        def fit(self, parameters, config):
            return [parameters[0] + 1], 10, {}
        def evaluate(self, parameters, config):
            return float(parameters[0].sum()), 10, {}

    fl.client.start_numpy_client(server_address=sys.argv[1], client=Client())
""")


@pytest.mark.slow
def test_server_checkpoint_commands_run_as_written(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "reliability.md").read_text()
    section = doc.split("The command line is stricter", 1)[1]
    commands = shell_commands(FENCE.findall(section)[0][1])
    toml = next(body for lang, body in FENCE.findall(section) if lang == "toml")
    port = free_ports(1)[0]
    (tmp_path / "server.toml").write_text(toml.replace(":8080", f":{port}"))
    (tmp_path / "client.py").write_text(NUMPY_CLIENT)
    env = {**os.environ, "PATH": f"{SCRIPT_DIR}{os.pathsep}{os.environ['PATH']}"}

    def serve(command: str) -> subprocess.CompletedProcess[str]:
        server = subprocess.Popen(shlex.split(command), cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        clients = [subprocess.Popen([sys.executable, "client.py", f"127.0.0.1:{port}"],
                                    cwd=tmp_path, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            out, err = server.communicate(timeout=300)
        finally:
            for client in clients:
                client.send_signal(signal.SIGTERM)
                client.wait(30)
        return subprocess.CompletedProcess(command, server.returncode, out, err)

    first, resume = commands
    done = serve(first)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "fraud").is_dir()  # relative to server.toml, as documented
    refused = subprocess.run(shlex.split(first), cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--resume" in refused.stderr
    assert latest_round(tmp_path / "runs" / "fraud") == 20
    # A finished run resumed returns its History without waiting for any client.
    again = subprocess.run(shlex.split(resume), cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert latest_round(tmp_path / "runs" / "fraud") == 20


@pytest.mark.slow
def test_simulation_command_runs_as_written(tmp_path: Path) -> None:
    block = (REPO / "docs" / "simulation.md").read_text().split("## The fraud example with 100")[1]
    first = shell_commands(FENCE.findall(block)[0][1])[0]
    assert first == "fedsilo simulate --output out --rounds 5 --sites 100"
    done = run_shell(first, tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["rounds"]) >= 5
