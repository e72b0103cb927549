"""The admin app serves only routes of the web layer's module-level routers, each a named
module-level function: a route built inside a factory (out of reach of imports, tests and
tools) fails here."""

from __future__ import annotations

import sys

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter, iter_route_contexts
from pydantic import SecretStr
from starlette.routing import Mount

from engine.settings import Settings
from engine.web import (
    api,
    dashboard,
    routes_dead,
    routes_jobs,
    routes_overview,
    routes_pauses,
    routes_service,
    routes_workflows,
    triage,
    workflow_pages,
)
from engine.web.api import create_app

# the JSON API, in order
SUBJECTS = (routes_dead, routes_jobs, routes_pauses, routes_overview, routes_workflows)
ROUTERS: dict[str, APIRouter] = {
    module.__name__: module.router
    for module in (*SUBJECTS, routes_service, dashboard, triage, workflow_pages)
}


def app(token: str | None) -> FastAPI:
    settings = Settings(admin_token=SecretStr(token) if token else None)
    return create_app(settings, open_access=token is None)


def declared() -> dict[int, str]:
    """Each route of the routers, by identity, with the module that declares it."""
    return {id(route): module for module, router in ROUTERS.items() for route in router.routes}


@pytest.fixture(params=["a-token-of-thirty-two-characters", None], ids=["token", "open"])
def served(request: pytest.FixtureRequest) -> FastAPI:
    return app(request.param)


def test_every_route_of_the_app_comes_from_a_module_level_router(served: FastAPI) -> None:
    owned = declared()
    strays = [
        context.path
        for context in iter_route_contexts(served.routes)
        if id(context.original_route) not in owned and not isinstance(context.original_route, Mount)
    ]
    assert strays == []


def test_the_app_itself_adds_only_the_static_files(served: FastAPI) -> None:
    mounts = [
        (context.path, context.name)
        for context in iter_route_contexts(served.routes)
        if isinstance(context.original_route, Mount)
    ]
    assert mounts == [("/static", "static")]


def test_every_route_of_the_routers_is_served_once(served: FastAPI) -> None:
    served_ids = [id(context.original_route) for context in iter_route_contexts(served.routes)]
    for module, router in ROUTERS.items():
        for route in router.routes:
            assert served_ids.count(id(route)) == 1, (module, getattr(route, "path", route))


@pytest.mark.parametrize("module", sorted(ROUTERS))
def test_every_route_is_a_named_module_level_function(module: str) -> None:
    router = ROUTERS[module]
    assert router.routes, f"{module}.router declares no route"
    for route in router.routes:
        assert isinstance(route, APIRoute), (module, route)
        endpoint = route.endpoint
        assert route.name == endpoint.__name__ == endpoint.__qualname__, route.path
        assert route.name.isidentifier(), route.path
        assert endpoint.__module__ == module, route.path
        assert getattr(sys.modules[module], route.name) is endpoint, route.path


def test_every_operation_of_the_schema_has_its_own_id(served: FastAPI) -> None:
    operations = [
        operation for path in served.openapi()["paths"].values() for operation in path.values()
    ]
    ids = [operation.get("operationId") for operation in operations]
    assert operations and None not in ids
    assert len(set(ids)) == len(ids)
    routes = list(iter_route_contexts(api.router.routes))
    assert len(operations) == len(routes) + 1  # the API, and the health probe


def test_the_api_router_is_the_subject_routers_under_api() -> None:
    expected = [
        ("/api" + route.path, route) for module in SUBJECTS for route in module.router.routes
    ]
    included = [
        (context.path, context.original_route) for context in iter_route_contexts(api.router.routes)
    ]
    assert included == expected


def test_no_two_routes_of_a_router_share_a_name() -> None:
    for module, router in ROUTERS.items():
        names = [route.name for route in router.routes if isinstance(route, APIRoute)]
        assert len(set(names)) == len(names), module
