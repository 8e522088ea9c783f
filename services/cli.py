"""The ``borderwatch`` command.

borderwatch up [--demo [--seed N]] [--tls]  start the whole system on the embedded broker
    [--brokers 3]                 ... on a replicated 3-node KRaft cluster
    [--workers N --ingest N --api N]  several processes of each service
borderwatch broker install       fetch the Kafka jars (once)
borderwatch topics create        create every topic on BW_KAFKA_BOOTSTRAP
borderwatch token create --scopes read,ack [--label L] [--expires 30d] [--countries LV]
borderwatch token list | revoke ID | rotate ID
borderwatch schemas export [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from pydantic import Field

from services.common.errors import BorderwatchError, ConfigError
from services.common.settings import (
    DEFAULT_CONFIG_DIR,
    CommonSettings,
    default_data_dir,
    load_settings,
)

FAUST_ENV = ("BROKER_URL", "STORE_URL", "CACHE_URL", "WEB_URL", "APP_DEBUG", "DATADIR")


class UpSettings(CommonSettings):
    """Settings of ``borderwatch up`` (flags override them)."""

    data_dir: Path = Field(default_factory=default_data_dir)
    rules_file: Path = Field(DEFAULT_CONFIG_DIR / "rules.yaml")
    kafka_port: int = Field(0, ge=0, le=65535, description="0: a free port (the last one if free)")
    kafka_controller_port: int = Field(0, ge=0, le=65535)
    kafka_heap: str = Field("512m", pattern=r"^\d+[mg]$")
    # Fixed, so a bookmark of the dashboard keeps working; a taken port is an error
    # that names the flag and the setting (never a silent other port).
    api_port: int = Field(8080, ge=1, le=65535)
    ingest_port: int = Field(8081, ge=1, le=65535)
    aggregator_port: int = Field(6066, ge=1, le=65535)
    field_partitions: int = Field(6, ge=1, le=256)
    ready_timeout: float = Field(90.0, gt=0)
    # Scale-out on one host (flags --brokers, --workers, --ingest, --api win).
    brokers: int = Field(1, ge=1, le=9, description="Embedded Kafka nodes (KRaft).")
    workers: int = Field(1, ge=1, le=32, description="Aggregator worker processes.")
    ingest_processes: int = Field(1, ge=1, le=32, description="Ingest processes on one port.")
    api_processes: int = Field(1, ge=1, le=32, description="API processes on one port.")


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# Each service port of `up`: (name shown to the user, flag, setting).
UP_PORTS = {
    "api": ("API and dashboard", "--api-port", "BW_API_PORT"),
    "ingest": ("ingest", "--ingest-port", "BW_INGEST_PORT"),
    "aggregator": ("aggregator metrics", "--aggregator-port", "BW_AGGREGATOR_PORT"),
}


def up_ports(args: argparse.Namespace, settings: UpSettings) -> dict[str, int]:
    """The ports of `up`'s services: a flag wins over its BW_ setting, which wins over
    the fixed default (API 8080, ingest 8081, aggregator 6066)."""
    ports = {}
    for name in UP_PORTS:
        flag = getattr(args, f"{name}_port", None)
        if flag is not None and not 1 <= flag <= 65535:
            raise ConfigError(f"{UP_PORTS[name][1]} {flag}: give a port from 1 to 65535")
        ports[name] = flag if flag is not None else int(getattr(settings, f"{name}_port"))
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            other = seen[port]
            raise ConfigError(
                f"the {UP_PORTS[other][0]} and the {UP_PORTS[name][0]} would both use port "
                f"{port}; give one of them another port ({UP_PORTS[name][1]} or "
                f"{UP_PORTS[name][2]})"
            )
        seen[port] = name
    return ports


def check_ports_free(
    ports: dict[str, int],
    kafka_port: int | None = None,
    *,
    workers: int = 1,
    brokers: int = 1,
) -> None:
    """Refuse to start, naming every taken port and how to choose another, before
    anything binds or starts. ``workers`` aggregator workers use the aggregator port
    and the ones after it; ``brokers`` Kafka nodes the Kafka port and the ones after."""
    from services.runtime.broker import port_is_free

    wanted = [
        (name, port + i)
        for name, port in ports.items()
        for i in range(workers if name == "aggregator" else 1)
    ]
    taken = [
        f"port {port} ({UP_PORTS[name][0]}) is already in use on 127.0.0.1: stop what "
        f"uses it or choose another with {UP_PORTS[name][1]} PORT or {UP_PORTS[name][2]}=PORT"
        for name, port in wanted
        if not port_is_free(port)
    ]
    for port in range(kafka_port, kafka_port + brokers) if kafka_port else ():
        if not port_is_free(port):
            taken.append(
                f"port {port} (Kafka) is already in use on 127.0.0.1: stop what uses it "
                "or choose another with --kafka-port PORT or BW_KAFKA_PORT=PORT"
            )
    if taken:
        raise ConfigError("cannot start: " + "; ".join(taken))


def up_counts(args: argparse.Namespace, settings: UpSettings) -> dict[str, int]:
    """How many of each: Kafka nodes and processes per service (flags win)."""
    counts = {}
    for key, flag, setting in (
        ("brokers", "brokers", "brokers"),
        ("workers", "workers", "workers"),
        ("ingest", "ingest", "ingest_processes"),
        ("api", "api", "api_processes"),
    ):
        value = getattr(args, flag, None)
        if value is not None and not 1 <= value <= 32:
            raise ConfigError(f"--{flag} {value}: give a number from 1 to 32")
        counts[key] = value if value is not None else int(getattr(settings, setting))
    if counts["brokers"] > 9:
        raise ConfigError(f"--brokers {counts['brokers']}: at most 9 embedded Kafka nodes")
    return counts


def cmd_up(args: argparse.Namespace) -> int:
    from schemas.models import AuditAction
    from services.aggregator.rules import load_rules
    from services.common.auth import TokenStore, create_token
    from services.common.catalogue import Catalogue
    from services.common.kafka import ensure_topics, replication_for, wait_for_brokers
    from services.runtime.broker import (
        EmbeddedCluster,
        EmbeddedKafka,
        free_port,
        install,
        replication_defaults,
    )
    from services.runtime.supervisor import Child, ChildFailed, Supervisor
    from services.runtime.tls import ensure_local_tls

    settings = load_settings(UpSettings)
    if getattr(args, "seed", None) is not None and not args.demo:
        raise ConfigError("--seed chooses the demo's events: give it with --demo")
    # Validate operator files before starting anything.
    Catalogue.load(settings.sections_file)
    load_rules(settings.rules_file)
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    external = "kafka_bootstrap" in settings.model_fields_set
    kafka_port = None if external else (args.kafka_port or settings.kafka_port or None)
    ports = up_ports(args, settings)
    counts = up_counts(args, settings)
    if external and counts["brokers"] > 1:
        raise ConfigError(
            "--brokers starts embedded Kafka nodes; with BW_KAFKA_BOOTSTRAP the cluster "
            "is yours: leave --brokers out"
        )
    check_ports_free(
        ports, kafka_port, workers=counts["workers"], brokers=1 if external else counts["brokers"]
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    t0 = time.monotonic()

    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    sup = Supervisor()
    broker: EmbeddedKafka | EmbeddedCluster | None = None
    try:
        if external:
            bootstrap = settings.kafka_bootstrap
            _print(f"borderwatch: using the Kafka cluster at {bootstrap} (BW_KAFKA_BOOTSTRAP)")
        elif counts["brokers"] == 1:
            install()
            broker = EmbeddedKafka(
                data_dir / "kafka",
                port=kafka_port or 0,
                controller_port=settings.kafka_controller_port,
                heap=settings.kafka_heap,
            )
            broker.start()
            _print(f"borderwatch: starting Kafka {broker.bootstrap} (data in {broker.data_dir})")
            broker.wait_ready(timeout=settings.ready_timeout)
            bootstrap = broker.bootstrap
        else:
            install()
            # Its own directory: a cluster of another size is another cluster.
            broker = EmbeddedCluster(
                data_dir / f"kafka-{counts['brokers']}",
                counts["brokers"],
                first_port=kafka_port or 0,
                # Three JVMs on a small machine: a smaller heap each, unless set.
                heap=settings.kafka_heap if "kafka_heap" in settings.model_fields_set else "384m",
            )
            broker.start()
            _print(
                f"borderwatch: starting a {broker.size}-node Kafka cluster {broker.bootstrap} "
                f"(data in {broker.data_dir})"
            )
            broker.wait_ready(timeout=settings.ready_timeout)
            bootstrap = broker.bootstrap
        kafka_settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        if not external and counts["brokers"] > 1:
            # The cluster's size is known: ask for its copies outright, so a broker
            # that misses a heartbeat while the topics are made cannot leave them
            # (and the worker's changelog) with fewer.
            factor, min_insync = replication_defaults(counts["brokers"])
            kafka_settings = kafka_settings.model_copy(
                update={
                    "topic_replication_factor": settings.topic_replication_factor or factor,
                    "topic_min_insync_replicas": settings.topic_min_insync_replicas or min_insync,
                }
            )
            # Such a broker drops out of the cluster's metadata until its next
            # heartbeat: CI once saw 2 of 3 listed just after all 3 were, and the
            # check below refused the copies asked for. Our own cluster's size is
            # known, so wait for it whole rather than refuse.
            asyncio.run(wait_for_brokers(kafka_settings, counts["brokers"]))
        # Checked against the cluster before any topic is made (a ConfigError if
        # the settings ask for more copies than there are brokers).
        replication = asyncio.run(replication_for(kafka_settings))
        asyncio.run(ensure_topics(kafka_settings, settings.field_partitions))

        token: str | None = None
        created_local: str | None = None
        tokens_file = data_dir / "tokens.json"
        if not args.insecure_no_auth:
            token_path = data_dir / "local-token"
            if token_path.exists():
                token = token_path.read_text(encoding="utf-8").strip()
                if TokenStore.load(tokens_file).verify(token) is None:
                    token = None
            if token is None:
                all_scopes = ["ingest:field", "ingest:report", "read", "ack", "admin"]
                token = create_token(tokens_file, all_scopes, "local")
                token_path.write_text(token, encoding="utf-8")
                token_path.chmod(0o600)
                created_local = token.split("_")[1]
        from services.common.audit import cli_actor, new_record, publish_now

        records = []
        if created_local:
            records.append(
                new_record(
                    AuditAction.token_create,
                    "cli",
                    cli_actor(),
                    target=created_local,
                    detail={"label": "local", "scopes": "all", "by": "borderwatch up"},
                )
            )
        # Also sends what token commands kept while Kafka was down.
        problem = publish_now(kafka_settings, tokens_file, records)
        if problem:
            _print(f"borderwatch: audit records not sent yet: {problem}")
        bootstrap_file = tokens_file.with_name(BOOTSTRAP_FILE)
        bootstrap_file.write_text(bootstrap, encoding="utf-8")

        # up serves TLS only with --tls, with its own CA; BW_TLS_* are for running the
        # services yourself (python -m services.api).
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in FAUST_ENV and not k.startswith("BW_TLS_")
        }
        tls = ensure_local_tls(data_dir) if args.tls else None
        if tls is not None:
            env.update({"BW_TLS_CERT_FILE": str(tls.cert), "BW_TLS_KEY_FILE": str(tls.key)})
        env.update(
            {
                "BW_KAFKA_BOOTSTRAP": bootstrap,
                "BW_TOPIC_PREFIX": settings.topic_prefix,
                "BW_SECTIONS_FILE": str(settings.sections_file),
                "BW_RULES_FILE": str(settings.rules_file),
                "BW_LOG_LEVEL": settings.log_level,
                "BW_TOKENS_FILE": str(tokens_file),
                "BW_AUTH_ENABLED": "false" if args.insecure_no_auth else "true",
                "BW_FIELD_PARTITIONS": str(settings.field_partitions),
                # Resolved once here, so Faust's changelogs match our topics.
                "BW_TOPIC_REPLICATION_FACTOR": str(replication.factor),
                "BW_TOPIC_MIN_INSYNC_REPLICAS": str(replication.min_insync),
                "PYTHONUNBUFFERED": "1",
            }
        )
        py = sys.executable
        services: list[Child] = []
        # Workers join one consumer group (the app id); each has its own web port
        # (the aggregator port and the ones after it) and data directory.
        for i in range(counts["workers"]):
            one = counts["workers"] == 1
            services.append(
                sup.start(
                    Child(
                        "aggregator" if one else f"aggregator-{i + 1}",
                        [py, "-m", "services.aggregator"],
                        {
                            **env,
                            "BW_WEB_PORT": str(ports["aggregator"] + i),
                            "BW_DATA_DIR": str(
                                data_dir / ("aggregator" if one else f"aggregator-{i + 1}")
                            ),
                        },
                        logs / ("aggregator.log" if one else f"aggregator-{i + 1}.log"),
                        f"http://127.0.0.1:{ports['aggregator'] + i}/readyz",
                    )
                )
            )
        scheme = "https" if tls is not None else "http"
        replicas: dict[str, list[tuple[str, int]]] = {}
        for name in ("ingest", "api"):
            n = counts[name]
            for i in range(n):
                child_env = {**env, "BW_HOST": "127.0.0.1", "BW_PORT": str(ports[name])}
                own = ports[name]
                if n > 1:
                    # One port per service (SO_REUSEPORT), and one of each process's
                    # own for its /readyz and /metrics.
                    own = free_port()
                    child_env.update({"BW_REUSE_PORT": "true", "BW_REPLICA_PORT": str(own)})
                    replicas.setdefault(name, []).append((f"{name}-{i + 1}", own))
                services.append(
                    sup.start(
                        Child(
                            name if n == 1 else f"{name}-{i + 1}",
                            # Reads BW_HOST, BW_PORT and BW_TLS_* (services/common/serve.py).
                            [py, "-m", f"services.{name}"],
                            child_env,
                            logs / (f"{name}.log" if n == 1 else f"{name}-{i + 1}.log"),
                            f"{scheme}://127.0.0.1:{own}/readyz",
                            ready_cafile=tls.ca if tls is not None else None,
                        )
                    )
                )
        sup.wait_ready(services, settings.ready_timeout, lambda: stopping)
        ingest_url = f"{scheme}://127.0.0.1:{ports['ingest']}"
        api_url = f"{scheme}://127.0.0.1:{ports['api']}"
        if args.demo:
            # --api-url: on kept data, each section is backfilled only after its last event.
            demo_argv = [
                py,
                "-m",
                "services.demo",
                "--ingest-url",
                ingest_url,
                "--api-url",
                api_url,
            ]
            if args.seed is not None:
                demo_argv += ["--seed", str(args.seed)]
            if token:
                demo_argv += ["--token", token]
            if tls is not None:
                demo_argv += ["--cacert", str(tls.ca)]
            sup.start(Child("demo", demo_argv, env, logs / "demo.log"))
        _status(
            bootstrap,
            external,
            ingest_url,
            api_url,
            ports,
            token,
            data_dir,
            args.demo,
            time.monotonic() - t0,
            [(c.name, c.pid) for c in sup.children],
            _broker_pids(broker),
            tls.ca if tls is not None else None,
            kafka_note=_kafka_note(broker, replication),
            topics_note=_topics_note(replication),
            replicas={
                name: [(n, f"{scheme}://127.0.0.1:{p}") for n, p in r]
                for name, r in replicas.items()
            },
            workers=counts["workers"],
        )
        while not stopping:
            sup.check()
            time.sleep(0.2)
        _print("borderwatch: stopping…")
        return 0
    except ChildFailed as exc:
        _print(f"borderwatch: {exc.child.name} {exc.detail}")
        _print("borderwatch: stopping the rest")
        return 1
    except KeyboardInterrupt:
        _print("borderwatch: interrupted, stopping…")
        return 130
    finally:
        t_stop = time.monotonic()
        (data_dir / BOOTSTRAP_FILE).unlink(missing_ok=True)
        sup.stop_all(timeout=8.0)
        if broker is not None:
            broker.stop(timeout=6.0)
        _print(f"borderwatch: stopped in {time.monotonic() - t_stop:.1f}s")


def _broker_pids(broker: object) -> list[int]:
    from services.runtime.broker import EmbeddedCluster, EmbeddedKafka

    if isinstance(broker, EmbeddedCluster):
        return [n.pid for n in broker.nodes if n.pid is not None]
    if isinstance(broker, EmbeddedKafka) and broker.pid is not None:
        return [broker.pid]
    return []


def _kafka_note(broker: object, replication: object) -> str:
    from services.common.kafka import Replication
    from services.runtime.broker import EmbeddedCluster

    assert isinstance(replication, Replication)
    if isinstance(broker, EmbeddedCluster):
        return f" (embedded, KRaft, {broker.size} nodes)"
    return " (external)" if broker is None else " (embedded, KRaft)"


def _topics_note(replication: object) -> str:
    from services.common.kafka import Replication

    assert isinstance(replication, Replication)
    n = replication.brokers
    return (
        f"replication {replication.factor}, min.insync.replicas {replication.min_insync} "
        f"({n} broker{'s' if n != 1 else ''})"
    )


def _status(
    bootstrap: str,
    external: bool,
    ingest_url: str,
    api_url: str,
    ports: dict[str, int],
    token: str | None,
    data_dir: Path,
    demo: bool,
    took: float,
    pids: list[tuple[str, int | None]],
    broker_pids: list[int],
    ca: Path | None = None,
    *,
    kafka_note: str = "",
    topics_note: str = "",
    replicas: dict[str, list[tuple[str, str]]] | None = None,
    workers: int = 1,
) -> None:
    line = "─" * 68
    auth = (
        f"Authorization: Bearer {token}"
        if token
        else "OFF (--insecure-no-auth): anyone on this host can post and read"
    )
    # The token rides in the fragment: the browser never sends it to the server (no
    # access log, no Referer), and the page moves it into sessionStorage and out of
    # the address bar, so one click opens a working dashboard.
    dashboard = f"{api_url}/#token={token}" if token else f"{api_url}/"
    rows = [
        line,
        f" borderwatch is up ({took:.1f}s){'  —  demo data flowing' if demo else ''}",
        line,
        f" Dashboard      {dashboard}",
        f" API            {api_url}/api/v1/sections   (docs: {api_url}/docs)",
        f" Live feed      {api_url.replace('http', 'ws', 1)}/ws/feed",
        f" Ingest         POST {ingest_url}/v1/field-events",
        f" Metrics        {api_url}/metrics  {ingest_url}/metrics  http://127.0.0.1:{ports['aggregator']}/metrics",
        *(
            [
                f" Workers        {workers} aggregator workers in one group; /metrics on ports "
                f"{ports['aggregator']}-{ports['aggregator'] + workers - 1}"
            ]
            if workers > 1
            else []
        ),
        *(
            f" {name.capitalize():<14} {len(rs)} processes share port {ports[name]}; each alone: "
            + "  ".join(f"{n} {u}" for n, u in rs)
            for name, rs in (replicas or {}).items()
        ),
        f" Kafka          {bootstrap}{kafka_note or (' (external)' if external else ' (embedded, KRaft)')}",
        *([f" Topics         {topics_note}"] if topics_note else []),
        f" Token          {auth}",
        *(
            [
                f" TLS            https/wss only; local CA {ca}",
                f"                curl --cacert {ca} …",
            ]
            if ca
            else []
        ),
        f" Data and logs  {data_dir}",
        f" Processes      {', '.join(f'{n}={p}' for n, p in pids)}"
        + (f", kafka={','.join(str(p) for p in broker_pids)}" if broker_pids else ""),
        f" Stop           Ctrl-C (or SIGTERM to pid {os.getpid()})",
        line,
    ]
    if not token:
        rows.insert(1, " !!! AUTHENTICATION IS DISABLED (--insecure-no-auth) — demo use only !!!")
    _print("\n".join(rows))


def cmd_broker(args: argparse.Namespace) -> int:
    from services.runtime.broker import EmbeddedKafka, install

    if args.action == "install":
        libs = install(quiet=False)
        _print(f"Kafka jars ready in {libs}")
        return 0
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir() / "kafka"
    broker = EmbeddedKafka(data_dir, port=args.port)
    broker.start()
    broker.wait_ready()
    _print(f"Kafka listening on {broker.bootstrap}; Ctrl-C stops it")
    try:
        assert broker.process is not None
        broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from services.common.kafka import ensure_topics, replication_for, wait_for_broker

    settings = load_settings(UpSettings)
    asyncio.run(wait_for_broker(settings, timeout=60))
    replication = asyncio.run(replication_for(settings))
    created = asyncio.run(ensure_topics(settings, settings.field_partitions))
    _print(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")
    _print(
        f"replication factor {replication.factor}, min.insync.replicas "
        f"{replication.min_insync} ({replication.brokers} broker"
        f"{'s' if replication.brokers != 1 else ''}; BW_TOPIC_REPLICATION_FACTOR, "
        "BW_TOPIC_MIN_INSYNC_REPLICAS)"
    )
    return 0


def _tokens_path(args: argparse.Namespace) -> Path:
    return (
        Path(args.tokens_file)
        if args.tokens_file
        else Path(os.environ.get("BW_TOKENS_FILE", default_data_dir() / "tokens.json"))
    )


def _known_countries() -> list[str]:
    """The countries of the section catalogue (BW_SECTIONS_FILE or the default one)."""
    from services.common.catalogue import Catalogue

    return Catalogue.load(load_settings(CommonSettings).sections_file).countries()


def cmd_token(args: argparse.Namespace) -> int:
    from services.common.auth import (
        check_countries,
        create_token,
        list_tokens,
        parse_expiry,
        revoke_token,
        rotate_token,
    )

    path = _tokens_path(args)
    expires = parse_expiry(args.expires) if getattr(args, "expires", None) else None
    if args.action == "create":
        if not args.scopes:
            raise ConfigError("token create: --scopes is required (e.g. --scopes read,ack)")
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        countries = None
        if args.countries is not None:
            countries = check_countries(args.countries.split(","), _known_countries(), scopes)
        token = create_token(path, scopes, args.label, expires, countries)
        _audit(
            path,
            "token.create",
            token.split("_")[1],
            {
                "label": args.label,
                "scopes": ",".join(sorted(scopes)),
                "expires_at": expires.isoformat() if expires else None,
                "countries": ",".join(countries) if countries else None,
            },
        )
        _print(token)
        until = f", expires {expires.isoformat()}" if expires else ""
        if countries:
            until += f", only {','.join(countries)}"
        print(
            f"(stored its hash in {path}{until}; the token itself is shown only now)",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        side = os.environ.get("BW_TOKENS_LAST_USED_FILE")
        rows = list_tokens(path, Path(side) if side else None)
        if args.json:
            import json

            _print(json.dumps(rows, indent=2))
            return 0
        head = ("ID", "LABEL", "SCOPES", "COUNTRIES", "STATUS", "CREATED", "EXPIRES", "LAST USED")
        table = [head] + [
            (
                r["id"],
                r["label"] or "-",
                ",".join(r["scopes"]),
                ",".join(r["countries"]) or "all",
                r["status"],
                _short(r["created_at"]),
                _short(r["expires_at"]),
                _short(r["last_used_at"]),
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            _print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return 0
    if not args.id:
        raise ConfigError(f"token {args.action}: give the token id (see `borderwatch token list`)")
    if args.action == "revoke":
        entry = revoke_token(path, args.id)
        _audit(path, "token.revoke", entry["id"], {"label": entry.get("label") or ""})
        _print(
            f"revoked {entry['id']} ({entry.get('label') or 'no label'}) at {entry['revoked_at']}"
        )
        print("(every ingest and API process refuses it within a few seconds)", file=sys.stderr)
        return 0
    token, entry = rotate_token(path, args.id, expires)
    _audit(
        path,
        "token.rotate",
        entry["id"],
        {"label": entry.get("label") or "", "expires_at": entry.get("expires_at")},
    )
    _print(token)
    print(
        f"(rotated {entry['id']}: the old secret is refused within a few seconds; "
        "the new token is shown only now)",
        file=sys.stderr,
    )
    return 0


BOOTSTRAP_FILE = "kafka-bootstrap"  # beside the tokens file while `borderwatch up` runs


def _audit_settings(tokens_file: Path) -> CommonSettings | None:
    """Where the token command sends its audit record: BW_KAFKA_BOOTSTRAP, or the
    cluster of the `borderwatch up` that uses this tokens file."""
    if "BW_KAFKA_BOOTSTRAP" in os.environ:
        return load_settings(CommonSettings)
    running = tokens_file.with_name(BOOTSTRAP_FILE)
    if running.exists():
        return load_settings(
            CommonSettings, kafka_bootstrap=running.read_text(encoding="utf-8").strip()
        )
    return None


def _audit(
    tokens_file: Path, action: str, token_id: str, detail: dict[str, str | int | bool | None]
) -> None:
    from schemas.models import AuditAction
    from services.common.audit import cli_actor, new_record, outbox_path, publish_now

    record = new_record(AuditAction(action), "cli", cli_actor(), target=token_id, detail=detail)
    problem = publish_now(_audit_settings(tokens_file), tokens_file, [record])
    if problem:
        print(
            f"borderwatch: audit record kept in {outbox_path(tokens_file)}: {problem}; "
            "the next token command or `borderwatch up` that reaches Kafka sends it",
            file=sys.stderr,
        )


def _short(iso: str | None) -> str:
    return iso[:19].replace("T", " ") + "Z" if iso else "-"


def cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.export import export, stale

    if args.check:
        bad = stale()
        if bad:
            _print(f"stale schema files: {', '.join(bad)}; run `borderwatch schemas export`")
            return 1
        _print("schema files match the models")
        return 0
    for path in export():
        _print(f"wrote {path}")
    return 0


def cmd_grafana(args: argparse.Namespace) -> int:
    try:
        from services.grafana.dashboards import DASHBOARD_DIR, export, stale
    except ImportError as exc:  # the generator is a dev tool: grafana-foundation-sdk
        _print(f"{exc}; install the dev extra: pip install -e '.[dev]'")
        return 2
    if args.check:
        bad = stale()
        if bad:
            _print(
                f"stale dashboards in {DASHBOARD_DIR}: {', '.join(bad)}; run `borderwatch grafana export`"
            )
            return 1
        _print("dashboard files match the generator")
        return 0
    for path in export():
        _print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="borderwatch", description="borderwatch: live border picture"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start broker, aggregator, ingest and API")
    up.add_argument(
        "--demo",
        action="store_true",
        help="also post realistic demo events: 7 days of history first, then live",
    )
    up.add_argument(
        "--seed", type=int, help="with --demo: the same seed gives the same demo events"
    )
    up.add_argument("--data-dir", help="where broker data, tokens and logs live (BW_DATA_DIR)")
    up.add_argument(
        "--kafka-port",
        type=int,
        default=0,
        help="default: BW_KAFKA_PORT, else the last run's if free, else a free one",
    )
    up.add_argument("--api-port", type=int, help="API and dashboard (default: BW_API_PORT or 8080)")
    up.add_argument("--ingest-port", type=int, help="ingest (default: BW_INGEST_PORT or 8081)")
    up.add_argument(
        "--aggregator-port",
        type=int,
        help="aggregator /metrics and /readyz (default: BW_AGGREGATOR_PORT or 6066)",
    )
    up.add_argument(
        "--brokers",
        type=int,
        help="embedded Kafka nodes; 3: a replicated KRaft cluster, topics with 3 copies "
        "and min.insync.replicas 2 (default: BW_BROKERS or 1)",
    )
    up.add_argument(
        "--workers", type=int, help="aggregator worker processes (default: BW_WORKERS or 1)"
    )
    up.add_argument(
        "--ingest",
        type=int,
        help="ingest processes sharing the ingest port (default: BW_INGEST_PROCESSES or 1)",
    )
    up.add_argument(
        "--api",
        type=int,
        help="API processes sharing the API port, each with its own view "
        "(default: BW_API_PROCESSES or 1)",
    )
    up.add_argument(
        "--tls",
        action="store_true",
        help="serve https/wss with a local CA and certificate made in the data dir",
    )
    up.add_argument(
        "--insecure-no-auth", action="store_true", help="disable authentication (demos only!)"
    )
    up.set_defaults(func=cmd_up)

    broker = sub.add_parser("broker", help="the embedded Kafka broker")
    broker.add_argument("action", choices=["install", "start"])
    broker.add_argument("--data-dir")
    broker.add_argument("--port", type=int, default=0)
    broker.set_defaults(func=cmd_broker)

    topics = sub.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=cmd_topics)

    token = sub.add_parser("token", help="API tokens: create, list, revoke, rotate")
    token.add_argument("action", choices=["create", "list", "revoke", "rotate"])
    token.add_argument("id", nargs="?", help="token id (revoke, rotate)")
    token.add_argument(
        "--scopes", help="create: comma separated: ingest:field,ingest:report,read,ack,admin"
    )
    token.add_argument("--label", default="", help="create: who or what the token is for")
    token.add_argument(
        "--countries",
        help="create: comma separated country codes (e.g. LV): the token sees and posts "
        "only these countries' sections, alerts, reports and assessments (default: all)",
    )
    token.add_argument(
        "--expires",
        help="create, rotate: a duration (90m, 12h, 30d, 2w) or an RFC 3339 date/date-time",
    )
    token.add_argument("--json", action="store_true", help="list: as JSON")
    token.add_argument(
        "--tokens-file", help="default: BW_TOKENS_FILE or the data dir's tokens.json"
    )
    token.set_defaults(func=cmd_token)

    schemas = sub.add_parser("schemas", help="JSON Schema files of the contract")
    schemas.add_argument("action", choices=["export"])
    schemas.add_argument("--check", action="store_true")
    schemas.set_defaults(func=cmd_schemas)

    grafana = sub.add_parser("grafana", help="Grafana dashboards (deploy/grafana/dashboards)")
    grafana.add_argument("action", choices=["export"])
    grafana.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    grafana.set_defaults(func=cmd_grafana)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ConfigError, BorderwatchError) as exc:
        print(f"borderwatch: {exc}", file=sys.stderr)
        code = 2
    raise SystemExit(code)
