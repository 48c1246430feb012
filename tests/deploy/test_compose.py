"""The deployment bundle names only subcommands, options and environment variables the CLI really has.

The lists come from the CLI itself (its argparse parser, and the env lookups in the parakeet_services modules),
so a renamed flag or variable breaks this test instead of a deployment.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES_DIR = ROOT / "agent" / "parakeet_services"
MODEL_SERVICES = {"captions", "dalston-worker"}


def cli_subcommands() -> dict[str, argparse.ArgumentParser]:
    from parakeet_services.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _env_lookup_names(tree: ast.AST) -> set[str]:
    """String constants read as environment variables: os.environ.get/[]/in, os.getenv, and helpers named *env."""
    names: set[str] = set()

    def is_environ(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ" or \
            isinstance(node, ast.Name) and node.id == "environ"

    for node in ast.walk(tree):
        args: list = []
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "get" and is_environ(f.value) \
                    or isinstance(f, ast.Attribute) and f.attr == "getenv" \
                    or isinstance(f, ast.Name) and f.id.lstrip("_").endswith("env"):
                args = node.args
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            args = [node.slice]
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            args = [node.left]
        names |= {a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return names


def cli_env_names() -> set[str]:
    names: set[str] = set()
    for path in SERVICES_DIR.rglob("*.py"):
        names |= _env_lookup_names(ast.parse(path.read_text(), str(path)))
    return names


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def cli_invocations(spec: dict) -> list[tuple[str, list[str]]]:
    """(where, argv after `parakeet-stream`) for every service whose entrypoint is the CLI, and the Dockerfile."""
    out = []
    for name, svc in spec["services"].items():
        if svc.get("entrypoint") == ["parakeet-stream"]:
            out.append((f"service {name}", list(svc.get("command") or ["serve"])))
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("RUN ") and "parakeet-stream " in line:
            out.append(("Dockerfile RUN", line.split("parakeet-stream ", 1)[1].split()))
        if line.startswith("CMD "):
            out.append(("Dockerfile CMD", json.loads(line[4:])))
    return out


def unknown_cli_names(spec: dict, raw_text: str) -> list[str]:
    """Every subcommand, option and environment variable the bundle names that the CLI does not have."""
    subcommands, env = cli_subcommands(), cli_env_names()
    problems = []
    for where, argv in cli_invocations(spec):
        if argv[0] not in subcommands:
            problems.append(f"{where}: subcommand {argv[0]!r}")
            continue
        options = set(subcommands[argv[0]]._option_string_actions)
        problems += [f"{where}: option {a}" for a in argv[1:] if a.startswith("--") and a not in options]
    for name, svc in spec["services"].items():
        if svc.get("entrypoint") == ["parakeet-stream"]:
            problems += [f"service {name}: env {v}" for v in svc.get("environment") or {} if v not in env]
    # ${VAR} / ${VAR:-default} anywhere in the file: the operator's knobs must be the CLI's own variables
    problems += [f"interpolation ${{{v}}}" for v in sorted(set(re.findall(r"\$\{(\w+)", raw_text))) if v not in env]
    return problems


def test_the_bundle_names_only_what_the_cli_has():
    spec = compose()
    invoked = {argv[0] for _, argv in cli_invocations(spec)}

    assert unknown_cli_names(spec, COMPOSE.read_text()) == []
    assert invoked == {"captions", "serve", "download-files"}


def test_the_check_catches_a_name_the_cli_lacks():
    spec = compose()
    spec["services"]["dalston-worker"]["environment"]["PARAKEET_NO_SUCH_VAR"] = "1"
    spec["services"]["captions"]["command"] = ["captions", "--no-such-flag"]
    spec["services"]["dalston-worker"]["command"] = ["no-such-command"]

    assert unknown_cli_names(spec, "x: ${NO_SUCH_KNOB:-1}") == [
        "service captions: option --no-such-flag", "service dalston-worker: subcommand 'no-such-command'",
        "service dalston-worker: env PARAKEET_NO_SUCH_VAR", "interpolation ${NO_SUCH_KNOB}"]


def check_structure(spec: dict) -> None:
    services = spec["services"]
    assert set(services) == {"livekit-server", "redis", "captions", "dalston-worker"}
    for name in MODEL_SERVICES:
        [gpu] = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert (gpu["driver"], gpu["count"], gpu["capabilities"]) == ("nvidia", 1, ["gpu"])
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in services[name]["volumes"]]
        assert mounts == ["model-cache:/models"]
    assert all(svc.get("healthcheck", {}).get("test") for svc in services.values())
    assert set(spec["volumes"]) == {"model-cache"}
    assert services["captions"]["depends_on"]["livekit-server"]["condition"] == "service_healthy"
    assert services["dalston-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_file_layout():
    check_structure(compose())


def _docker_compose() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run(cmd + ["version"], capture_output=True).returncode == 0:
            return cmd
    return None


@pytest.mark.skipif(_docker_compose() is None, reason="no Docker Compose v2 client (`docker compose`) here")
def test_docker_compose_config_accepts_the_file(tmp_path):
    result = subprocess.run(_docker_compose() + ["-f", str(COMPOSE), "--project-directory", str(ROOT),
                                                 "config", "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path,
                            # defaults only: none of the file's variables leak in from the caller's environment
                            env={k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ})
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    check_structure(spec)
    assert unknown_cli_names(spec, COMPOSE.read_text()) == []
    worker = spec["services"]["dalston-worker"]["environment"]
    assert (worker["PARAKEET_MODEL"], worker["REDIS_URL"]) == ("nvidia/nemotron-speech-streaming-en-0.6b",
                                                               "redis://redis:6379/0")
