"""The `relbank` command: dev, serve, migrate, replay, send, bench."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvicorn

from service.api.app import Role, Service, create_app
from service.domain.policy import Policy, PolicyError, load_policy
from service.settings import Settings, load_settings

log = logging.getLogger("relbank")


def _policy(settings: Settings, override: Path | None = None) -> Policy:
    try:
        return load_policy(override or settings.policy)
    except PolicyError as exc:
        raise SystemExit(f"relbank: bad policy (RELBANK_POLICY): {exc}") from None


def _migrate(settings: Settings) -> None:
    from service.storage.migrate import upgrade

    upgrade(settings.async_database_url)


def _services(settings: Settings, role: Role) -> list[Service]:
    from service import workers

    services: list[Service] = []
    if role in ("all", "worker"):
        services.append(workers.sweeper)
    if settings.kafka_bootstrap and role in ("all", "consumer"):
        from service.kafka.consumer import run_consumer

        services.append(run_consumer)
    if settings.kafka_bootstrap and role in ("all", "worker"):
        from service.kafka.relay import run_relay

        services.append(run_relay)
    return services


def _serve(settings: Settings, policy: Policy, role: Role) -> None:
    app = create_app(settings, policy, role=role, services=_services(settings, role))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=True,
    )


def cmd_serve(args: argparse.Namespace) -> None:
    settings = load_settings()
    _serve(settings, _policy(settings), args.role)


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = load_settings()
    _migrate(settings)
    print("relbank: database migrated to head")


def _exit_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM once it has shut down; make that a SystemExit, so the `finally`
    that stops the embedded PostgreSQL and broker runs instead of the process just dying."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def cmd_dev(args: argparse.Namespace) -> None:
    from service import embedded

    _exit_on_sigterm()
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    # Tansu settles a group in about one session timeout: keep restarts quick on one machine.
    overrides: dict[str, Any] = {"auth": "disabled", "consumer_session_timeout_seconds": 3}
    pg = embedded.start_postgres(data / "pgdata")
    overrides["database_url"] = pg.url
    broker = None
    if not args.no_kafka:
        broker = embedded.start_broker(
            data / "broker.log", port=args.kafka_port, state_file=data / "broker.json"
        )
        overrides["kafka_bootstrap"] = broker.bootstrap
    settings = load_settings(**overrides)
    policy = _policy(settings)
    _migrate(settings)
    print(f"relbank dev: PostgreSQL {pg.url}", file=sys.stderr)
    if broker:
        embedded.create_topics(settings)
        print(f"relbank dev: Kafka-compatible broker on {broker.bootstrap}", file=sys.stderr)
    print(
        "relbank dev: WARNING: authentication is DISABLED (RELBANK_AUTH=disabled); "
        "this is for local use only",
        file=sys.stderr,
    )
    if args.demo:
        embedded.seed_demo(settings, policy, via_kafka=broker is not None)
    print(
        f"relbank dev: API on http://{settings.host}:{settings.port}  (docs at /docs)",
        file=sys.stderr,
    )
    try:
        _serve(settings, policy, "all")
    finally:
        if broker:
            broker.stop()
        pg.stop()


def cmd_replay(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from service.replay import replay
    from service.storage import writes
    from service.storage.db import make_engine

    settings = load_settings()
    policy = _policy(settings, args.policy)

    async def run() -> list[str]:
        engine = make_engine(settings.async_database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                total = await writes.event_count(conn)
                with tqdm(total=total, unit="ev", desc="replay", file=sys.stderr) as bar:
                    report = await replay(
                        conn,
                        policy,
                        alerts_topic=settings.alerts_topic,
                        progress=bar.update,
                    )
            return report.lines()
        finally:
            await engine.dispose()

    for line in asyncio.run(run()):
        print(f"relbank replay: {line}")


def cmd_send(args: argparse.Namespace) -> None:
    from service.kafka.send import send

    send(args)


def cmd_schemas(args: argparse.Namespace) -> None:
    from service.schemas import write_schemas

    for path in write_schemas(Path(args.directory)):
        print(path)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=os.environ.get("RELBANK_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parser = argparse.ArgumentParser(prog="relbank", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="everything on this machine, embedded PostgreSQL and Kafka")
    dev.add_argument("--demo", action="store_true", help="seed synthetic customers and events")
    dev.add_argument("--data-dir", default=".relbank", help="where embedded data lives")
    dev.add_argument("--no-kafka", action="store_true", help="do not start the embedded broker")
    dev.add_argument("--kafka-port", type=int, default=9092, help="broker port (0: any free)")
    dev.set_defaults(func=cmd_dev)

    serve = sub.add_parser("serve", help="production: external PostgreSQL and Kafka")
    serve.add_argument("--role", choices=["all", "api", "consumer", "worker"], default="all")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to head")
    migrate.set_defaults(func=cmd_migrate)

    replay = sub.add_parser("replay", help="rebuild ledger, projections and statuses")
    replay.add_argument("--policy", type=Path, help="policy file (default: RELBANK_POLICY)")
    replay.set_defaults(func=cmd_replay)

    send = sub.add_parser("send", help="post events from a JSON-lines file (backfills, trials)")
    send.add_argument("file", type=Path, help="one CloudEvent per line; - for standard input")
    send.add_argument("--to", choices=["kafka", "http"], default="http")
    send.add_argument("--url", default=None, help="API base URL (default http://HOST:PORT)")
    send.add_argument("--api-key", default=os.environ.get("RELBANK_API_KEY"))
    send.add_argument("--binary", action="store_true", help="Kafka binary mode (ce_* headers)")
    send.add_argument("--batch", type=int, default=500, help="events per HTTP request")
    send.set_defaults(func=cmd_send)

    schemas = sub.add_parser("schemas", help="write the JSON Schemas of envelope and policy")
    schemas.add_argument("directory", nargs="?", default="schemas")
    schemas.set_defaults(func=cmd_schemas)

    from service import bench

    bench.add_parser(sub)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
