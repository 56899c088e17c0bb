"""The `relbank` command: dev, serve, migrate, replay, simulate, send, bench.

Each command imports what it needs when it runs, so `relbank --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from service import devfolder
from service.errors import CommandFailed, StartupError

if TYPE_CHECKING:
    import uvicorn

    from service.domain.policy import Policy
    from service.runtime import Role, Service
    from service.settings import Settings

log = logging.getLogger("relbank")
ROLES = ("all", "api", "consumer", "worker")  # service.runtime.ROLES, without importing it


def _policy(settings: Settings, override: Path | None = None) -> Policy:
    from service.domain.policy import PolicyError, load_policy

    try:
        return load_policy(override or settings.policy)
    except PolicyError as exc:
        where = "--policy" if override else "RELBANK_POLICY"
        raise CommandFailed(f"bad policy ({where}): {exc}") from None


def _migrate(settings: Settings) -> None:
    from service.storage.migrate import upgrade

    upgrade(settings.async_database_url)


def _services(settings: Settings, role: Role) -> list[Service]:
    """The background services of a role (the composition root)."""
    from service.monitoring import run_database_probe, run_gauges
    from service.sweeper import run_sweeper
    from service.webhook_relay import run_webhooks

    services: list[Service] = [run_database_probe]
    if role in ("all", "worker"):
        services += [run_sweeper, run_webhooks, run_gauges]
    if settings.kafka_bootstrap and role in ("all", "consumer"):
        from service.kafka.consumer import run_consumer

        services.append(run_consumer)
    if settings.kafka_bootstrap and role in ("all", "worker"):
        from service.kafka.relay import run_relay

        services.append(run_relay)
    return services


def _serve(
    settings: Settings,
    policy: Policy,
    role: Role,
    *,
    sockets: list[socket.socket] | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:

    from service import tracing
    from service.api.app import create_app
    from service.api.server import server_config
    from service.runtime import tune_gc

    fatal: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(exc: BaseException) -> None:
        # Found by a background task (say, the database came up unmigrated): stop serving.
        fatal.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(
        settings, policy, role=role, services=_services(settings, role), on_fatal=on_fatal
    )
    tracing.instrument(app)
    server = _server(on_started, server_config(app, settings))
    tune_gc()
    server.run(sockets=sockets)
    if fatal:
        raise StartupError(str(fatal[0]))


def _server(on_started: Callable[[], None] | None, config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that calls `on_started` once it accepts connections."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if on_started is not None and not self.should_exit:
                on_started()

    return Server(config)


def cmd_serve(args: argparse.Namespace) -> None:
    from service.settings import load_settings

    settings = load_settings().for_role(args.role)
    _serve(settings, _policy(settings), args.role)


def cmd_migrate(args: argparse.Namespace) -> None:
    from service.storage.migrate import pending

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the line printed below says it all
    settings = devfolder.load_local_settings()
    waiting = pending(settings.async_database_url)
    if args.check:
        if waiting:
            raise CommandFailed(f"the database is not at head; pending: {', '.join(waiting)}")
        print("relbank migrate: the database is at head")
        return
    if waiting:
        _migrate(settings)
    print(f"relbank migrate: applied {', '.join(waiting) or 'nothing'}; the database is at head")


def _exit_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM once it has shut down; make that a SystemExit, so the `finally`
    that stops the embedded PostgreSQL and broker runs instead of the process just dying."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def cmd_dev(args: argparse.Namespace) -> None:
    from service import devstack

    _exit_on_sigterm()

    def serve(
        settings: Settings,
        policy: Policy,
        *,
        sockets: list[socket.socket],
        on_started: Callable[[], None],
    ) -> None:
        _serve(settings, policy, "all", sockets=sockets, on_started=on_started)

    devstack.run(args, serve, _policy)


def cmd_replay(args: argparse.Namespace) -> None:
    import asyncio

    from tqdm import tqdm

    from service.runtime import Runtime

    settings = devfolder.load_local_settings()
    policy = _policy(settings, args.policy)

    async def run() -> list[str]:
        rt = Runtime.build(settings.model_copy(update={"database_pool_size": 1}), policy)
        try:
            total = await rt.app.event_count()
            with tqdm(total=total, unit="ev", desc="replay", file=sys.stderr) as bar:
                report = await rt.app.replay(policy, progress=bar.update)
            return report.lines()
        finally:
            await rt.close()

    for line in asyncio.run(run()):
        print(f"relbank replay: {line}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from service.tools.simulate import simulate

    settings = devfolder.load_local_settings()
    simulate(settings, _policy(settings), args.policy, as_json=args.json)


def cmd_send(args: argparse.Namespace) -> None:
    from service.tools.send import send

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its failures end in our one line
    send(args)


def cmd_schemas(args: argparse.Namespace) -> None:
    from service.schemas import write_schemas

    for path in write_schemas(Path(args.directory)):
        print(path)


def _parser() -> argparse.ArgumentParser:
    from service import devstack
    from service.tools import bench

    parser = argparse.ArgumentParser(
        prog="relbank",
        description="A relationship bank balance per customer. Start with `relbank dev --demo`: "
        "everything on this machine, with a few months of demo customers.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    devstack.add_parser(sub, cmd_dev)

    serve = sub.add_parser("serve", help="production: external PostgreSQL and Kafka")
    serve.add_argument("--role", choices=ROLES, default="all")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to head")
    migrate.add_argument(
        "--check", action="store_true", help="only check: exit 1 unless the schema is at head"
    )
    migrate.set_defaults(func=cmd_migrate, reaches="database")

    replay = sub.add_parser("replay", help="rebuild ledger, projections and statuses")
    replay.add_argument("--policy", type=Path, help="policy file (default: RELBANK_POLICY)")
    replay.set_defaults(func=cmd_replay, reaches="database")

    simulate = sub.add_parser(
        "simulate", help="what-if: replay the events under a policy, writing nothing"
    )
    simulate.add_argument("--policy", type=Path, required=True, help="the candidate policy file")
    simulate.add_argument("--json", action="store_true", help="print the answer as JSON")
    simulate.set_defaults(func=cmd_simulate, reaches="database")

    send = sub.add_parser("send", help="post events from a JSON-lines file (backfills, trials)")
    send.add_argument("file", type=Path, help="one CloudEvent per line; - for standard input")
    send.add_argument("--to", choices=["kafka", "http"], default="http")
    send.add_argument(
        "--url",
        default=None,
        help="API base URL (default: the relbank dev running here, else http://HOST:PORT)",
    )
    send.add_argument("--api-key", default=os.environ.get("RELBANK_API_KEY"))
    send.add_argument("--binary", action="store_true", help="Kafka binary mode (ce_* headers)")
    send.add_argument("--batch", type=int, default=500, help="events per HTTP request")
    send.set_defaults(func=cmd_send)

    schemas = sub.add_parser("schemas", help="write the JSON Schemas of envelope and policy")
    schemas.add_argument("directory", nargs="?", default="schemas")
    schemas.set_defaults(func=cmd_schemas)

    bench.add_parser(sub)
    return parser


def _unreachable(args: argparse.Namespace, exc: Exception) -> str | None:
    """One line for a failure of the database or broker a command reaches, naming the variable
    that points at it; None when the failure is not of that kind."""
    from service import logs

    reaches = "kafka" if getattr(args, "to", None) == "kafka" else getattr(args, "reaches", None)
    if reaches is None or isinstance(exc, CommandFailed | StartupError):
        return None
    if reaches == "kafka":
        from aiokafka.errors import KafkaError

        if not isinstance(exc, KafkaError | OSError):
            return None
        name, field = "Kafka", "kafka_bootstrap"
    else:
        from sqlalchemy.exc import DBAPIError

        if not isinstance(exc, DBAPIError | OSError):
            return None
        name, field = "PostgreSQL", "database_url"
    settings = devfolder.load_local_settings()
    where = devfolder.origin(field)
    address = _address(getattr(settings, field) or "")
    reason = _innermost(exc)
    if not logs.expected(exc):
        hint = "; run `relbank migrate` first?" if "does not exist" in reason else ""
        return f"{name} at {address} ({where}) refused: {reason}{hint}"
    hint = "; is `relbank dev` running here?" if where.endswith("the default") else ""
    return f"cannot reach {name} at {address} ({where}): {reason}{hint}"


def _address(url: str) -> str:
    """host:port/database of a URL, the socket folder when it names one; no credentials."""
    from urllib.parse import parse_qs, urlsplit

    if "://" not in url:
        return url
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host")
    host = socket_dir[0] if socket_dir else f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    return host + parts.path


def _innermost(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    from service import logs
    from service.errors import summary
    from service.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_format)
        args.func(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    except CommandFailed as exc:
        print(f"relbank {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except StartupError as exc:
        log.error("relbank %s: %s", args.command, exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"relbank {args.command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        if line := _unreachable(args, exc):
            print(f"relbank {args.command}: {line}", file=sys.stderr)
            raise SystemExit(1) from None
        if not logs.expected(exc):
            raise
        log.error("relbank %s: %s", args.command, summary(exc, limit=1000))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
