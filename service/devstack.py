"""`relbank dev`: the whole service on one machine, on a data folder it owns.

Order matters: the folder is claimed first (a second `relbank dev` on it refuses, stopping
nothing), then settings, policy and the HTTP port are checked, all before anything heavy starts;
from the moment an embedded part starts it is on a stack that stops it however the run ends (a
bad setting, a failed migration, Ctrl-C during start-up, a normal stop).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from service.devfolder import DEFAULT, INFO, DevFolder
from service.errors import CommandFailed

if TYPE_CHECKING:
    from service.devkeeper import Parts
    from service.domain.policy import Policy
    from service.settings import Settings

# Start-up chatter that says nothing the summary does not (warnings still show).
_QUIET = ("alembic", "aiokafka", "uvicorn.error", "relbank.consumer", "relbank.kafka")


class Serve(Protocol):
    def __call__(
        self,
        settings: Settings,
        policy: Policy,
        *,
        sockets: list[socket.socket],
        on_started: Callable[[], None],
    ) -> None: ...


def add_parser(sub: Any, run: Callable[[argparse.Namespace], None]) -> None:
    dev = sub.add_parser(
        "dev",
        help="everything on this machine: embedded PostgreSQL and Kafka, API, page, workers",
        description="Run relbank on this machine with nothing installed: an embedded PostgreSQL "
        "and broker, migrations, the API and page, the consumer and the sweeper. The data folder "
        "belongs to one `relbank dev` at a time.",
    )
    dev.add_argument("--demo", action="store_true", help="seed a few months of demo customers")
    dev.add_argument("--data-dir", type=Path, default=DEFAULT, help="data folder (%(default)s)")
    dev.add_argument("--reset", action="store_true", help="empty the data folder first")
    dev.add_argument("--host", help="address of the API (default: RELBANK_HOST, 127.0.0.1)")
    dev.add_argument(
        "--port", type=_port, help="port of the API (default: RELBANK_PORT, 8000; 0: any free)"
    )
    dev.add_argument("--no-kafka", action="store_true", help="do not start the embedded broker")
    dev.add_argument("--kafka-port", type=int, default=9092, help="broker port (0: any free)")
    dev.set_defaults(func=run)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535)")
    return port


def listen(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before anything heavy starts: a clash is told at once,
    naming the option, and nothing can take the port while the rest starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CommandFailed(
            f"cannot listen on {host}:{port} (--port / RELBANK_PORT, --host / RELBANK_HOST): "
            f"{exc.strerror or exc}; choose another port, or --port 0 for any free one"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _quiet_start_up() -> None:
    if logging.getLogger().level >= logging.INFO:
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _stopping_on_exit() -> Iterator[contextlib.ExitStack]:
    """A stack of what to stop, unwound however the block ends; a second Ctrl-C or SIGTERM while
    it unwinds cannot cut it short and orphan what is left."""
    stack = contextlib.ExitStack()
    try:
        yield stack
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()


def run(args: argparse.Namespace, serve: Serve, load_policy: Callable[[Settings], Policy]) -> None:
    from service.settings import load_settings

    folder = Path(args.data_dir).resolve()
    # Tansu settles a group in about one session timeout: keep restarts quick on one machine.
    overrides: dict[str, Any] = {"auth": "disabled", "consumer_session_timeout_seconds": 3}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = load_settings(**overrides)  # a bad variable stops it here, before anything runs
    policy = load_policy(settings)
    with DevFolder.claim(folder) as owned, _stopping_on_exit() as stack:
        from service.embedded import stop_leftovers

        for what in stop_leftovers(folder):
            print(f"relbank dev: stopped the {what} a killed earlier run left", file=sys.stderr)
        if args.reset:
            owned.reset()
        sock = listen(settings.host, settings.port if args.port is None else args.port)
        stack.callback(sock.close)
        api = _url(settings.host, sock.getsockname()[1])
        overrides["port"] = sock.getsockname()[1]
        owned.record(api_url=api, ui_url=f"{api}/ui/", docs_url=f"{api}/docs")
        settings, parts = _start_embedded(args, folder, owned, stack, overrides)
        _quiet_start_up()
        from service.storage.migrate import upgrade

        upgrade(settings.async_database_url)
        if settings.kafka_bootstrap:
            from service.embedded import create_topics

            create_topics(settings)
        seeded = _demo(settings, policy) if args.demo else None
        from service.devkeeper import Keeper

        keeper = Keeper(parts, owned, settings)
        keeper.start()
        stack.callback(keeper.stop)  # unwound first: nothing is started again while stopping

        def started() -> None:
            owned.record(state="running")
            print(summary(owned.path, settings, seeded), file=sys.stderr, flush=True)

        # Ctrl-C while serving is how it is stopped: the stack then stops the rest.
        with contextlib.suppress(KeyboardInterrupt):
            serve(settings, policy, sockets=[sock], on_started=started)
        print("relbank dev: stopping", file=sys.stderr, flush=True)


def _start_embedded(
    args: argparse.Namespace,
    folder: Path,
    owned: DevFolder,
    stack: contextlib.ExitStack,
    overrides: dict[str, Any],
) -> tuple[Settings, Parts]:
    from service import embedded
    from service.devkeeper import Parts
    from service.settings import load_settings

    pg = embedded.start_postgres(folder / "pgdata")
    stack.callback(pg.stop)
    parts = Parts(pg)
    owned.record(database_url=pg.url)
    overrides["database_url"] = pg.url
    if not args.no_kafka:
        stack.callback(parts.stop_broker)  # the one running then: the keeper may replace it
        parts.broker = embedded.start_broker(
            folder / "broker.log", port=args.kafka_port, state_file=folder / "broker.json"
        )
        owned.record(kafka_bootstrap=parts.broker.bootstrap, broker_pid=parts.broker.pid)
        overrides["kafka_bootstrap"] = parts.broker.bootstrap
    return load_settings(**overrides), parts


def _demo(settings: Settings, policy: Policy) -> str:
    from service.tools import demo

    return demo.seed(settings, policy, via_kafka=settings.kafka_bootstrap is not None)


def summary(folder: Path, settings: Settings, seeded: str | None) -> str:
    """What a person needs on first run: where to look, what runs, how to stop and reset."""
    api = _url(settings.host, settings.port)
    here = Path.cwd() / DEFAULT
    if folder == here.resolve():
        beside = "run here"
    elif folder.name == DEFAULT.name:
        beside = f"run in {folder.parent}"
    else:
        beside = f"run with RELBANK_DATABASE_URL={settings.database_url}"
    kafka = (
        f"{settings.kafka_bootstrap} (embedded; keeps everything in memory, so it starts empty "
        "each time)"
        if settings.kafka_bootstrap
        else "off (--no-kafka): events come in over HTTP only"
    )
    workers = "consumer, sweeper, alert relay" if settings.kafka_bootstrap else "sweeper"
    lines = [
        "",
        f"relbank dev is running (PID {os.getpid()}).",
        f"  Page         {api}/ui/",
        f"  API          {api}   (docs: {api}/docs)",
        f"  Data folder  {folder}   (PostgreSQL data and logs)",
        f"  Kafka        {kafka}",
        f"  Running      API, {workers}",
        "  Auth         off: no API key needed (for this machine only)",
    ]
    if seeded:
        lines.append(f"  Demo         {seeded}")
    lines += [
        f"  relbank send, migrate, replay and simulate reach it when {beside} ({DEFAULT / INFO}).",
        "  Stop: Ctrl-C.   Start afresh: relbank dev --reset (or delete the data folder).",
        "",
    ]
    return "\n".join(lines)
