"""Run a worker: `python -m services.worker` (settings from the environment);
`python -m services.worker --check` reads the heartbeat of the worker running here (exit 0 or 1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from typing import TYPE_CHECKING

from services.health import Heartbeat, check_worker, run_check
from services.loop import runner
from services.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from services.worker.gemini import GeminiModel

log = logging.getLogger("services.worker")


async def serve(settings: WorkerSettings, key: str | None) -> None:
    """Run the worker until SIGINT/SIGTERM, keeping its heartbeat file while it runs."""
    # Imported here, not at the top, so that `--check` (a health check every few seconds) starts fast.
    from services.worker.models import ModelRouter, OfflineModel
    from services.worker.runner import WorkerRunner

    def make_gemini() -> GeminiModel:
        from services.worker.gemini import GeminiModel

        return GeminiModel(settings.gemini_model, settings.gemini_base_url, settings.gemini_timeout_seconds)

    router = ModelRouter(
        settings.model_mode,
        make_gemini,
        OfflineModel(settings.offline_latency_ms, settings.offline_latency_sd_ms),
        key,
    )
    runner = WorkerRunner(settings, router)
    # Load google-genai (~0.5 s) once the worker has registered, beside the loop, not before: a worker
    # starts taking tasks sooner, and the first Gemini task does not pay for the import.
    preload = asyncio.create_task(preload_gemini(runner.mqtt.connected)) if router.may_use_gemini else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(runner.run())
    heartbeat = Heartbeat(settings.health_file, settings.worker_id, runner.mqtt.connected.is_set)
    beating = asyncio.create_task(heartbeat.run(), name="heartbeat")
    log.info(
        "worker %s up (model mode %s, %s s of simulated work)",
        settings.worker_id,
        settings.model_mode,
        settings.work_seconds,
    )
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    beating.cancel()
    if preload is not None:
        preload.cancel()
    heartbeat.close()
    await runner.announce_offline()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    await router.aclose()


async def preload_gemini(connected: asyncio.Event) -> None:
    """Import the Gemini module in a thread once `connected` is set."""
    await connected.wait()
    await asyncio.to_thread(importlib.import_module, "services.worker.gemini")


def main(argv: list[str] | None = None) -> int:
    """Entry point: read settings and the key, configure logging, serve (or, with --check, check and exit)."""
    parser = argparse.ArgumentParser(prog="python -m services.worker", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="check the worker running here: exit 0 if healthy, 1 if not"
    )
    args = parser.parse_args(argv)
    try:
        settings = WorkerSettings.from_env()
    except ValueError as e:
        print(f"worker: bad setting: {e}", file=sys.stderr)
        return 1 if args.check else 2
    if args.check:
        return run_check(lambda: check_worker(settings.health_file))
    from services.worker.models import ApiKeyFileError, load_api_key  # not needed by --check

    try:
        key = load_api_key(settings.gemini_api_key, settings.gemini_api_key_file)
        run_loop = runner(settings.event_loop)
    except (ApiKeyFileError, ValueError) as e:
        print(f"worker: bad setting: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request URL at INFO; keep the SDK's traffic out of our logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_loop(serve(settings, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
