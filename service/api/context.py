"""What request handlers get: the process's Runtime, set on the app in its lifespan."""

from __future__ import annotations

from fastapi import Request

from service.runtime import Runtime


async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt
