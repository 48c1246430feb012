"""``parakeet-stream serve``: the dalston-compatible realtime worker (WebSocket ``/session`` + Redis registration)."""
from __future__ import annotations

import argparse
import os
from typing import Any


def _env(*names: str, default: str | None = None) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return default


def add_parser(subparsers: Any) -> None:
    from parakeet_stream.models import DEFAULT_MODEL
    from parakeet_stream.runtime.threads import LANES_HELP, THREADS_HELP, lanes_argument, threads_argument

    p = subparsers.add_parser(
        "serve", help="run a dalston-compatible realtime worker",
        description="Serve dalston's realtime worker protocol on ws://HOST:PORT/session over one shared engine, "
                    "and register in dalston's Redis so its gateway routes sessions here.")
    p.add_argument("--model", default=_env("PARAKEET_MODEL", default=DEFAULT_MODEL),
                   help="model name or .nemo path (env PARAKEET_MODEL; default %(default)s)")
    p.add_argument("--device", default=_env("PARAKEET_DEVICE", default="auto"))
    p.add_argument("--dtype", default="auto")
    p.add_argument("--chunk-ms", type=int, default=None, help="streaming chunk size (default: the model's)")
    p.add_argument("--threads", type=threads_argument, default=None, help=THREADS_HELP)
    p.add_argument("--lanes", type=lanes_argument, default=None, help=LANES_HELP)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=int(_env("DALSTON_WORKER_PORT", "WORKER_PORT", default="9000")))
    p.add_argument("--workers", type=int, default=int(_env("PARAKEET_WORKERS", default="1")),
                   help="worker processes on this device, each with its own engine, port (counted up from --port "
                        "and --http-port; 0: any free port each), dalston record and --max-sessions; dalston's "
                        "router spreads sessions over them (env PARAKEET_WORKERS; default 1)")
    p.add_argument("--max-sessions", type=int,
                   default=int(_env("DALSTON_MAX_SESSIONS", "MAX_SESSIONS", default="16")),
                   help="sessions before new connections close 1013 (env DALSTON_MAX_SESSIONS / MAX_SESSIONS)")
    p.add_argument("--http-port", default=_env("DALSTON_METRICS_PORT", default="9100"),
                   help="HTTP side port for /health, /v1/capabilities, /metrics; 'off' disables")
    p.add_argument("--http-host", default=None, help="bind address of the HTTP side port (default: --host)")
    p.add_argument("--redis-url", default=_env("REDIS_URL"), help="dalston's Redis; unset = standalone")
    p.add_argument("--legacy-registry", action="store_true",
                   help="register in the M22 layout (dalston:realtime:worker:*) instead of dalston:engine:*")
    p.add_argument("--engine-id", default=_env("DALSTON_ENGINE_ID", default="parakeet-stream"),
                   help="routing key dalston's model registry points at (default %(default)s)")
    p.add_argument("--instance", default=None,
                   help="instance id (default {engine_id}-rt-{DALSTON_WORKER_ID|DALSTON_INSTANCE|uuid}[:12]; "
                        "legacy: WORKER_ID or realtime-worker)")
    p.add_argument("--endpoint", default=_env("DALSTON_WORKER_ENDPOINT", "WORKER_ENDPOINT"),
                   help="URL the gateway dials; {port} is replaced by the worker's port (default "
                        "ws://{hostname}:{port})")
    p.add_argument("--models", default=None, help="comma list advertised in models_loaded (default: the model name)")
    p.add_argument("--languages", default="en", help="comma list accepted in ?language= (plus auto)")
    p.add_argument("--timeline", choices=("audio", "speech"), default="audio",
                   help="timestamps: seconds of audio received (audio) or dalston's compressed speech timeline")
    p.add_argument("--engine-yaml", default=_env("DALSTON_ENGINE_YAML"), help="engine card (default: shipped)")
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--drain-grace", type=float, default=30.0, help="seconds SIGTERM waits for open sessions")
    p.add_argument("--api-key", default=_env("PARAKEET_API_KEY"),
                   help="sessions must present this key (Authorization: Bearer, X-API-Key or ?api_key=); others "
                        "close 1008 'unauthorized' (env PARAKEET_API_KEY; default: no key)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from . import logs

    from .shutdown import exit_skipping_native_teardown

    logs.configure(args.log_level)
    if args.workers != 1:
        exit_skipping_native_teardown(_supervise(args))
    exit_skipping_native_teardown(asyncio.run(_serve(args)))


def _supervise(args: argparse.Namespace) -> int:
    import logging

    from .dalston import registry as reg
    from .serve_workers import check_workers, supervise

    problem = check_workers(args)
    if problem:
        logging.getLogger("parakeet_services.serve").error("%s", problem)
        return 2
    return supervise(args, _instance(args, reg), run)


def _instance(args: argparse.Namespace, reg) -> str:
    """This worker's id in dalston's registry (with ``--workers``: the base of each worker's id)."""
    if args.legacy_registry:
        return args.instance or _env("WORKER_ID", default="realtime-worker")
    return args.instance or reg.generate_instance_id(args.engine_id)


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    import parakeet_stream as ps

    from .dalston import registry as reg
    from .dalston.http import SidePort
    from .dalston.server import DalstonWorker, WorkerOptions

    log = logging.getLogger("parakeet_services.serve")
    config = ps.EngineConfig(model=args.model, device=args.device, dtype=args.dtype, chunk_ms=args.chunk_ms,
                             max_streams=args.max_sessions, num_threads=args.threads,
                             lanes=args.lanes)
    engine = await asyncio.to_thread(ps.shared_engine, config)
    instance = _instance(args, reg)
    options = WorkerOptions(
        host=args.host, port=args.port, max_sessions=args.max_sessions, instance=instance, endpoint=args.endpoint,
        models=[m for m in (args.models or "").split(",") if m], timeline=args.timeline,
        languages=[lang for lang in args.languages.split(",") if lang], drain_grace_s=args.drain_grace,
        api_key=args.api_key or None)
    worker = DalstonWorker(engine, options)
    capabilities = reg.load_capabilities(args.engine_yaml, engine_id=args.engine_id,
                                         max_concurrency=args.max_sessions, model_variants=worker.models)
    await worker.start()
    side = None
    if str(args.http_port).lower() != "off":
        side = SidePort(worker, capabilities, args.http_host or args.host, int(args.http_port))
        try:
            await side.start()
        except OSError as exc:  # dalston skips its metrics server when the port is busy; so do we
            log.warning("http.disabled port=%s error=%s", args.http_port, exc)
            side = None
    registration = None
    if args.redis_url:
        identity = reg.Identity(engine_id=args.engine_id, instance=instance, capabilities=capabilities)
        layout = (reg.LegacyLayout(identity, worker, options.languages) if args.legacy_registry
                  else reg.CurrentLayout(identity, worker))
        registration = reg.Registration(args.redis_url, layout, interval_s=args.heartbeat_interval)
        registration.start()
    else:
        log.info("registry.standalone (no --redis-url / REDIS_URL)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"parakeet-stream serve: ws://{args.host}:{worker.port}/session"
          + (f" http://{args.host}:{side.port}" if side else ""), flush=True)
    await stop.wait()
    await worker.drain()
    if registration is not None:
        await registration.stop(deregister=True)
    if side is not None:
        await side.close()
    log.info("worker.stopped")
    return 0
