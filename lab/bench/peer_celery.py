"""The peer of `lab bench peer`: our zero-work job as a Celery task, with Redis as broker and result backend.

`celery -A lab.bench.peer_celery worker` imports this module and asks for `app`, which `worker_app` builds then from
the environment that `lab bench peer` sets (PEER_BROKER_URL, PEER_BACKEND_URL); importing the module reads
nothing. The benchmark's own clients build theirs with `make_app`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from celery import Celery

from services.worker.models import OfflineModel

BROKER_ENV = "PEER_BROKER_URL"
BACKEND_ENV = "PEER_BACKEND_URL"
TASK_NAME = "peer.answer"
_DEFAULT_URL = "redis://127.0.0.1:6379/0"  # only when started by hand, without the benchmark's environment


def answer(task: Any, query: str) -> dict[str, Any]:
    """The zero-work job: our offline model's answer, and which worker process ran it."""
    return {"text": OfflineModel.text_for(query), "pid": os.getpid(), "hostname": task.request.hostname}


def make_app(broker_url: str, backend_url: str, *, pool_limit: int = 10) -> Any:
    """A Celery app on this broker and result backend, configured to lose nothing, with `answer` registered.

    `pool_limit` is how many broker connections the app's publishers may hold: a client with more threads
    than that would queue for a connection.
    """
    app = Celery("lab.bench.peer_celery", broker=broker_url, backend=backend_url, set_as_current=False)
    app.conf.update(
        # Acknowledge after the task ran, not on receipt: a worker that dies mid-task gives it back (as our
        # master's leases do) ...
        task_acks_late=True,
        # ... also when the pool child running it is killed (prefork), instead of marking it failed.
        task_reject_on_worker_lost=True,
        # One task reserved per process at a time, like our master handing one task to an idle worker;
        # Celery's default (4) would let a busy process sit on tasks an idle one could run.
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_pool_limit=pool_limit,
        broker_connection_retry_on_startup=True,  # Celery 5 warns unless this is said
        result_expires=3600,  # a result nobody fetched is gone after an hour, as our answers are
    )
    # Called, not used as a decorator: celery has no type hints, and mypy strict refuses untyped decorators.
    app.task(name=TASK_NAME, bind=True)(answer)
    return app


def worker_app(environ: Mapping[str, str] | None = None) -> Any:
    """The app of the Celery worker command, on the broker and result backend `environ` names (default: this
    process's environment, as `lab bench peer` sets it)."""
    env = os.environ if environ is None else environ
    return make_app(env.get(BROKER_ENV, _DEFAULT_URL), env.get(BACKEND_ENV, _DEFAULT_URL))


@functools.cache
def _app() -> Any:
    return worker_app()


def __getattr__(name: str) -> Any:
    """`app`, built on first use: what `celery -A lab.bench.peer_celery` looks up."""
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
