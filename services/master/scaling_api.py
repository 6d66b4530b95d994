"""The master's HTTP API for the autoscaler, beside the operator views and behind the same token:
`POST /api/scaling` (one decision, a `ScalingReport`) and `POST /api/workers/{worker_id}/retire`."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Request

from services.master.face import MasterFace
from services.protocol import DecodeError, ScalingReport, validate

# The body is small (a dozen fields, a reason of at most 500 characters); anything much larger is not one.
MAX_BODY_BYTES = 16_384


async def read_report(request: Request) -> ScalingReport:
    """The request's body as a `ScalingReport`, or a 400 that says what is wrong with it."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(400, f"invalid scaling report: the body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPException(400, f"invalid scaling report: not JSON ({e})") from e
    try:
        return validate(ScalingReport, data)
    except DecodeError as e:
        raise HTTPException(400, str(e)) from e


def autoscaler_routes(master: Callable[[], MasterFace], operator_only: Callable[[Request], None]) -> APIRouter:
    """The autoscaler's routes; `master` gives the bound master, `operator_only` refuses a request without the
    operator token (401, or 403 when the master has none), before the body is read."""
    router = APIRouter(dependencies=[Depends(operator_only)])

    @router.post("/api/scaling")
    async def scaling(request: Request) -> dict[str, bool]:
        await master().report_scaling(await read_report(request))
        return {"accepted": True}

    @router.post("/api/workers/{worker_id}/retire")
    async def retire(worker_id: str) -> dict[str, bool]:
        idle = await master().retire_worker(worker_id)
        if idle is None:
            raise HTTPException(404, f"no worker {worker_id[:128]!r} is known to this master")
        return {"retired": True, "idle": idle}

    return router
