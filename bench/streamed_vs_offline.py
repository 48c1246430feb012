"""Does streaming still give the offline text on this device? The bundled demo model decodes held-out sentences
(spoken by training voices and by the held-out voice groups) streamed through the engine at 160 ms and offline,
per dtype. On the CPU in fp32 both are expected identical; on CUDA the step's rounding depends on the batch
(cuBLAS picks kernels by shape) and the engine keeps the cached frames' keys and values (kv_cache.py), so this
counts how many texts differ and what that costs in WER. Prints a markdown table and writes JSON.

    .venv/bin/python bench/streamed_vs_offline.py [--device cuda] [--dtypes bf16,fp32] [--sentences 25]
        [--features-devices auto,cpu] [--data DIR] [--out PATH]

``--features-devices``: where the log-mel features are computed (``EngineConfig.features_device``), each tried with
every dtype: ``auto`` on the model's device, ``cpu`` on the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--dtypes", default="fp32", help="comma list of fp32, bf16, fp16")
    p.add_argument("--features-devices", default="auto", help="comma list of auto, cpu")
    p.add_argument("--sentences", type=int, default=25, help="held-out sentences, each spoken once per voice group")
    p.add_argument("--data", default=None, help="test set folder (made when missing; default: a temporary one)")
    p.add_argument("--out", default=None, help="JSON path (default: bench/results/streamed-vs-offline-DEVICE.json)")
    args = p.parse_args(argv)

    from parakeet_services import logs
    from parakeet_services.train_demo.evaluate import evaluate
    from parakeet_services.train_demo.synth import synthesize
    from parakeet_stream.models import KNOWN_MODELS, resolve_device

    logs.configure("INFO", quiet_root=True)
    device = resolve_device(args.device)
    data = args.data or tempfile.mkdtemp(prefix="streamed-vs-offline-")
    synthesize(data, n_train=0, n_test=args.sentences, procs=os.cpu_count() or 2)
    model = str(KNOWN_MODELS["espeak-demo-en"].local_path)
    rows = []
    for dtype, features in [(d, f) for d in args.dtypes.split(",") for f in args.features_devices.split(",")]:
        report = evaluate(model, data, device=device, dtype=dtype, chunk_ms=160, features_device=features)
        everything = report["all"]
        rows.append(dict(dtype=report["dtype"], device=report["device"], features_device=report["features_device"],
                         utterances=everything["utterances"],
                         identical=everything["identical"], wer_stream=everything["wer_stream"],
                         wer_offline=everything["wer_offline"], seconds=report["seconds"],
                         mismatches=[{k: r[k] for k in ("text", "stream", "offline")} for r in report["mismatches"]]))
    print("| device | dtype | features on | utterances | streamed == offline | WER streamed % | WER offline % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['dtype']} | {r['features_device']} | {r['utterances']} | {r['identical']} | "
              f"{r['wer_stream']} | {r['wer_offline']} |")
    out = Path(args.out or f"bench/results/streamed-vs-offline-{device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(machine=_machine(device), when=time.strftime("%Y-%m-%d %H:%M:%S"),
                                   sentences=args.sentences, rows=rows), indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(r["identical"] == r["utterances"] for r in rows) else 1


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
