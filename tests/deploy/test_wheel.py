"""The built wheel is the product: installed outside the checkout it imports the plugin and transcribes.

The wheel goes into a fresh venv with ``--no-deps``; the dependencies come from the test venv's site-packages,
added as a plain path (its ``.pth`` files, among them the checkout's editable install, are not processed), so the
package that runs is the wheel's, from a working directory outside the checkout.
"""
from __future__ import annotations

import email
import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("parakeet_stream-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "v"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def test_the_wheel_carries_the_demo_model_and_declares_each_adapters_extra(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert "parakeet_stream/assets/espeak-demo-en.nemo" in names
    assert "livekit/plugins/parakeet/__init__.py" in names
    assert {"livekit", "pipecat", "dalston", "all"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("livekit-agents") and 'extra == "livekit"' in r for r in requires)
    assert not any("==" in r.split(";")[0] for r in requires), "dependencies are ranges; the pinned set is constraints.txt"


def test_the_installed_wheel_imports_the_plugin_and_transcribes_the_sample(installed, tmp_path):
    python = installed / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import livekit.plugins.parakeet as p, parakeet_stream as ps; "
                            "print(p.__file__); print(ps.__file__)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert all(path.startswith(str(installed)) for path in where), where
    out = subprocess.run([str(installed / "bin" / "parakeet-stream"), "transcribe", str(ROOT / "examples/sample.wav"),
                          "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    finals = [e["text"] for e in map(json.loads, out.stdout.splitlines()) if e["type"] == "Final"]
    assert finals == ["set a timer for ten minutes", "call me at seven thirty tomorrow morning"]
