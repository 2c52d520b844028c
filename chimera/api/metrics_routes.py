"""GET /metrics: the service's Prometheus metrics in the text format.

It needs the API key when keys are configured, like every route but /healthz (Prometheus sends it with
`authorization: {credentials: <key>}` in the scrape config); with no keys it is open, like the rest of the API.
"""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from chimera.metrics import CONTENT_TYPE, Metrics

router = APIRouter()
STATS_TIMEOUT_S = 0.5  # the task queue's counts; past it the task gauges keep their last values


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Requests, timings, tokens, routing, guardrails, retrieval; task queue and engine gauges read now."""
    registry: Metrics = request.app.state.metrics
    try:
        stats = await asyncio.wait_for(request.app.state.tasks.queue.stats(), STATS_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError):
        stats = None
    return Response(registry.render(stats, request.app.state.engine_reports()), media_type=CONTENT_TYPE)
