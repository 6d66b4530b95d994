"""Run a worker: `python -m services.worker` (settings from the environment)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from services.worker.models import ApiKeyFileError, GeminiModel, ModelRouter, OfflineModel, load_api_key
from services.worker.runner import WorkerRunner
from services.worker.settings import WorkerSettings

log = logging.getLogger("services.worker")


async def serve(settings: WorkerSettings, key: str | None) -> None:
    """Run the worker until SIGINT/SIGTERM."""
    router = ModelRouter(
        settings.model_mode,
        GeminiModel(settings.gemini_model, settings.gemini_base_url, settings.gemini_timeout_seconds),
        OfflineModel(settings.offline_latency_ms, settings.offline_latency_sd_ms),
        key,
    )
    runner = WorkerRunner(settings, router)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(runner.run())
    log.info(
        "worker %s up (model mode %s, %s s of simulated work)",
        settings.worker_id,
        settings.model_mode,
        settings.work_seconds,
    )
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    await runner.announce_offline()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    await router.aclose()


def main() -> int:
    """Entry point: read settings and the key, configure logging, serve."""
    try:
        settings = WorkerSettings.from_env()
        key = load_api_key(settings.gemini_api_key, settings.gemini_api_key_file)
    except (ValueError, ApiKeyFileError) as e:
        print(f"worker: bad setting: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request URL at INFO; keep the SDK's traffic out of our logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(serve(settings, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
