"""What the request handlers share: built in the app's lifespan, disposed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.auth import Authenticator
from service.domain.policy import Policy
from service.settings import Settings


@dataclass(slots=True)
class Context:
    settings: Settings
    policy: Policy
    engine: AsyncEngine
    authenticator: Authenticator
    # Component name -> why it is not ready; empty means ready (the database is checked live).
    not_ready: dict[str, str] = field(default_factory=dict)


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx
