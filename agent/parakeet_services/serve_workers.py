"""``serve --workers N``: N worker processes on one device, each a whole dalston realtime worker of its own.

One Python process feeds its engine from one GIL; past some hundreds of streams that, not the device, is the
limit (``docs/benchmarks.md``). Several processes on one device lift it without a router of ours: each worker
listens on its own port, registers its own record and capacity in dalston's Redis, and dalston's session router
spreads sessions over them as over any workers. Each has its own ``/metrics``. This process only starts them,
forwards SIGTERM/SIGINT (each drains its own sessions) and reports a worker that exits on its own; the others
serve on, and a dead worker's record expires in Redis with its heartbeat.
"""
from __future__ import annotations

import argparse
import copy
import logging
import multiprocessing
import multiprocessing.connection
import signal
from typing import Callable

log = logging.getLogger("parakeet_services.serve")

PORT_PLACEHOLDER = "{port}"


def check_workers(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--workers`` and the options it multiplies, or None."""
    if args.workers < 1:
        return f"--workers must be at least 1, got {args.workers}"
    if args.workers > 1 and args.endpoint and PORT_PLACEHOLDER not in args.endpoint:
        return (f"--endpoint {args.endpoint!r} names one port, but --workers {args.workers} listen on "
                f"{args.workers} ports: write {PORT_PLACEHOLDER} where the port goes (ws://my-host:{{port}})")
    return None


def worker_args(args: argparse.Namespace, index: int, instance_base: str) -> argparse.Namespace:
    """Worker ``index``'s options: port and HTTP port counted up from the given ones (0: any free port each),
    its own instance id, the endpoint with its port."""
    one = copy.copy(args)
    one.workers = 1
    one.port = args.port + index if args.port else 0
    http = str(args.http_port).lower()
    one.http_port = http if http == "off" or int(http) == 0 else str(int(http) + index)
    one.instance = f"{instance_base}-{index}"
    return one


def supervise(args: argparse.Namespace, instance_base: str, serve: Callable[[argparse.Namespace], None]) -> int:
    """Start ``serve(worker_args)`` for each worker, forward stop signals, wait for them all; 0 when every worker
    stopped cleanly. ``serve`` is a module-level function (the new interpreters import it by name)."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: no torch state forked
    workers = [spawn.Process(target=serve, args=(worker_args(args, i, instance_base),),
                             name=f"serve-worker-{i}") for i in range(args.workers)]
    stopping = False

    def stop(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.is_alive():
                w.terminate()  # SIGTERM: the worker drains its sessions and deregisters
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    for w in workers:
        w.start()
    log.info("workers.started", extra={"workers": args.workers, "pids": [w.pid for w in workers]})
    running = {w.sentinel: i for i, w in enumerate(workers)}
    failed = 0
    while running:
        for sentinel in multiprocessing.connection.wait(list(running), timeout=1.0):
            index = running.pop(sentinel)
            workers[index].join()  # reaps it: exitcode is None until then
            code = workers[index].exitcode
            if code != 0:
                failed += 1
            if not stopping:
                log.error("worker.exited", extra={"worker": index, "exit_code": code, "serving": len(running),
                                                  "workers": args.workers})
    log.info("workers.stopped", extra={"workers": args.workers, "failed": failed})
    return 1 if failed else 0
