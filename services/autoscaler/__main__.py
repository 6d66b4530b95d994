"""Run the autoscaler: `python -m services.autoscaler` (settings from the environment).

Every AUTOSCALE_INTERVAL_S: observe the master, decide with the policy, move the actuator to the target, report
the decision. A master that does not answer is waited for: nothing is scaled on missing data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from services.autoscaler.actuators import Actuator, local_actuator
from services.autoscaler.client import MasterClient, MasterUnavailableError
from services.autoscaler.observe import Observer
from services.autoscaler.policy import Policy
from services.autoscaler.report import Reporter
from services.autoscaler.settings import AutoscalerSettings

log = logging.getLogger("services.autoscaler")


class CannotActError(Exception):
    """The actuator the settings name cannot work here (a worker not built, no Docker SDK); the message says why."""


def make_actuator(settings: AutoscalerSettings, master: MasterClient) -> Actuator:
    """The actuator `settings` name; CannotActError when it cannot work here."""
    try:
        if settings.actuator == "swarm":
            from services.autoscaler.swarm import swarm_actuator_from_env

            return swarm_actuator_from_env(settings.swarm_service, settings.docker_host)
        return local_actuator(settings, master, os.environ)
    except (ValueError, ImportError) as e:
        raise CannotActError(str(e)) from None


class Loop:
    """One autoscaler: observe -> decide -> actuate -> report, once per interval."""

    def __init__(self, settings: AutoscalerSettings, master: MasterClient, actuator: Actuator) -> None:
        self.settings = settings
        self.actuator = actuator
        self._observer = Observer(master, settings.measure_window_s)
        self._policy = Policy(settings.policy())
        self._reporter = Reporter(master)
        self._outage: str | None = None  # what the master's last failure said, while it lasts

    async def round(self) -> None:
        """One round; a master that does not answer, or an actuator that fails, is logged (once per outage) and
        nothing changes."""
        try:
            actuated = await self.actuator.current()
        except Exception as e:  # whatever the actuator's failure (an engine that does not answer): next round
            self._holding(f"the actuator cannot say how many workers it runs ({type(e).__name__}: {e})")
            return
        try:
            seen = await self._observer.observe(actuated)
        except MasterUnavailableError as e:
            self._holding(f"the master does not answer as expected ({e})")
            return
        if self._outage is not None:
            log.info("observing again")
            self._outage = None
        if seen is None:
            log.debug("first read of the master's counters: deciding from the next one")
            return
        decision = self._policy.decide(seen.observation)
        try:
            # A hold keeps the actuator's fleet as it is: the master may still list a worker that is stopping.
            target = decision.target if decision.direction != "hold" else await self.actuator.current()
            await self.actuator.scale_to(target, seen.idle_workers)
        except Exception as e:  # as above: logged, and the next round tries again (a master not answering
            # the retire call is handled by the local actuator itself)
            log.warning("could not scale to %d workers: %s: %s", decision.target, type(e).__name__, e)
        await self._reporter.report(decision)

    def _holding(self, why: str) -> None:
        """Say why nothing changes this round, once until the reason changes."""
        if why != self._outage:
            log.warning("holding: %s", why)
        self._outage = why

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop` is set."""
        while not stop.is_set():
            await self.round()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.interval_s)


async def serve(settings: AutoscalerSettings) -> None:
    """Run until SIGINT/SIGTERM, then stop the actuator's workers (local) and return."""
    assert settings.operator_token is not None  # the settings refuse to be made without one
    master = MasterClient(settings.master_url, settings.operator_token)
    try:
        actuator = make_actuator(settings, master)
    except BaseException:
        await master.aclose()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    s = settings
    log.info(
        "autoscaler up: %s actuator, %d..%d workers, latency target %g s, utilization %.0f%%-%.0f%%, "
        "scale-down window %g s, cooldown %g s, every %g s, master %s",
        s.actuator,
        s.min_workers,
        s.max_workers,
        s.latency_target_s,
        s.utilization_low * 100,
        s.utilization_high * 100,
        s.scale_down_window_s,
        s.cooldown_s,
        s.interval_s,
        s.master_url,
    )
    try:
        await Loop(settings, master, actuator).run(stop)
    finally:
        log.info("autoscaler stopping")
        await actuator.close()
        await master.aclose()


def main(argv: list[str] | None = None) -> int:
    """Entry point: read settings, configure logging, run until stopped; 2 on a bad setting."""
    parser = argparse.ArgumentParser(prog="python -m services.autoscaler", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = AutoscalerSettings.from_env()
    except ValueError as e:
        print(f"autoscaler: bad setting: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per read of the master, twice per interval.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        asyncio.run(serve(settings))
    except CannotActError as e:
        print(f"autoscaler: bad setting: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
