"""``parakeet-stream download-files``: bundled and local models need nothing; hub models land where loads look."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from parakeet_services.cli import main
from parakeet_stream.models import KNOWN_MODELS
from tests.support import speech

DEMO = KNOWN_MODELS["espeak-demo-en"].local_path
REVISION = "0123456789abcdef0123456789abcdef01234567"


def test_bundled_model_needs_no_download(capsys):
    assert main(["download-files", "--model", "espeak-demo-en"]) == 0
    assert capsys.readouterr().out == f"espeak-demo-en is bundled with parakeet-stream ({DEMO}): nothing to download\n"


def test_local_file_needs_no_download(tmp_path, capsys):
    local = tmp_path / "mine.nemo"
    shutil.copy(DEMO, local)

    assert main(["download-files", "--model", str(local)]) == 0
    assert capsys.readouterr().out == f"{local} is a local file: nothing to download\n"


def test_missing_local_file_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "gone.nemo"

    assert main(["download-files", "--model", str(missing)]) == 2
    assert capsys.readouterr().err == (f"error: {missing} is neither a known model, a hub id (org/name) nor an "
                                       f"existing .nemo file; `parakeet-stream models` lists the known ones\n")


SCRIPT = """
import json, sys
import numpy as np
from parakeet_services.cli import main
import parakeet_stream as ps
codes = [main(["download-files", "--model", "acme/espeak-demo"]), main(["download-files", "--model", "acme/missing"])]
engine = ps.Engine.load(ps.EngineConfig(model="acme/espeak-demo", device="cpu"))
text = engine.transcribe(np.load(sys.argv[1])).text
print(json.dumps({"codes": codes, "text": text}))
"""


def test_hub_model_in_the_cache_is_found_and_loads_offline(tmp_path):
    # a Hugging Face hub cache holding acme/espeak-demo (the demo checkpoint), as a download leaves it
    repo = tmp_path / "hf" / "hub" / "models--acme--espeak-demo"
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    cached = repo / "snapshots" / REVISION / "espeak-demo.nemo"
    shutil.copy(DEMO, cached)
    import numpy as np

    np.save(tmp_path / "audio.npy", speech("turn on the lights"))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "NEMO_CACHE_DIR": str(tmp_path / "nemo")}

    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "audio.npy")], env=env,
                            capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    size = cached.stat().st_size / 1e6
    assert lines[0] == (f"acme/espeak-demo: {cached} ({size:.1f} MB) is in the cache; later loads of "
                        f"--model acme/espeak-demo work offline")
    assert json.loads(lines[-1]) == {"codes": [0, 1], "text": "turn on the lights"}
    assert ("error: could not download acme/missing (OfflineModeIsEnabled: Cannot reach "
            "https://huggingface.co/acme/missing/resolve/main/missing.nemo: offline mode is enabled."
            in result.stderr)
