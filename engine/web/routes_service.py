"""What tools read beside the API: the health probe, ``/metrics`` and the OpenAPI schema.

The probe answers without a token (a load balancer has none); the schema and the metrics
ask for the API's bearer token when the app has one.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from engine.filters import DeadFilter
from engine.health import check_services
from engine.states import DeadStatus
from engine.web import models as m
from engine.web.deps import AdminDep, SettingsDep, token_auth

DEAD_LETTERS = Gauge("lazarus_dead_letters", "Dead-letter rows by status.", ["status"])
GUARD = [Depends(token_auth)]

router = APIRouter()


@router.get("/api/health", tags=["health"], responses={503: {"model": m.Health}})
async def health(settings: SettingsDep) -> JSONResponse:
    """Whether RabbitMQ and PostgreSQL answer: 200 if both do, else 503."""
    report = await check_services(settings)
    ok = all(problem is None for problem in report.values())
    body = m.Health(status="ok" if ok else "unavailable", **report)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/openapi.json", include_in_schema=False, dependencies=GUARD)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/metrics", include_in_schema=False, dependencies=GUARD)
async def metrics(admin: AdminDep) -> Response:
    for status in DeadStatus:
        DEAD_LETTERS.labels(status.value).set(await admin.count(DeadFilter(status=status)))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
