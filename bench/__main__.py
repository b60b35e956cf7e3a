"""`python -m bench` (`make bench`): run every scenario on both brokers and write BENCHMARKS.md.

The default is the full run (under 10 minutes on 2 cores); `--quick` is a 1-2 minute smoke run. Exits non-zero
when a scenario fails or any message our relay accepted was lost.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.batch import run_batch
from bench.cluster import run_cluster
from bench.coldstart import run_coldstart
from bench.fanout import run_fanout
from bench.latency import run_inbound
from bench.procs import REPO, Broker, make_certificate, start_amqtt, start_mosquitto
from bench.report import SOAK_TITLE, Run, render, section, with_section
from bench.search import TITLE as SEARCH_TITLE
from bench.search import parse_args as search_args
from bench.search import render as render_search
from bench.search import run as run_search
from bench.tables import run_tables
from bench.throughput import ThroughputResult, run_throughput
from tests.support.rabbitmq import available as rabbitmq_available

QUICK = {
    "latency_messages": 600,
    "warmup": 20,
    "send_requests": 150,
    "wrk_seconds": 10,
    "fanout_clients": 1000,
    "profile_seconds": 5,
    "cold_runs": 3,
    "cluster_messages": 400,
    "cluster_desks": 200,
    "tables_messages": 20,
    "batch_reminders": 200,
}
STARTERS: dict[str, Callable[[Path, Path, Path, str], Broker]] = {"amqtt": start_amqtt, "mosquitto": start_mosquitto}
SCENARIOS = ("latency", "throughput", "fanout", "profile", "cold", "cluster", "tables", "batch", "search")
# --quick: search on a smaller desk
QUICK_SEARCH = [
    "--conversations",
    "1000",
    "--messages",
    "20000",
    "--table-conversations",
    "200",
    "--table-messages",
    "4000",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes for a 1-2 minute smoke run")
    p.add_argument("--brokers", default="amqtt,mosquitto", help="comma list of amqtt, mosquitto")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--latency-messages", type=int, default=5000, help="webhooks per relay in scenario 1")
    p.add_argument("--rate", type=float, default=100.0, help="scenario 1 slots per second")
    p.add_argument("--warmup", type=int, default=50, help="scenario 1 warm-up rounds")
    p.add_argument("--send-requests", type=int, default=1000, help="scenario 3 requests of each kind")
    p.add_argument("--wrk-seconds", type=int, default=60)
    p.add_argument("--wrk-connections", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--devhost-workers", type=int, default=3, help="devhost worker processes for scenario 2")
    p.add_argument("--sign-rate", type=int, default=2500, help="pre-signed webhooks per second of wrk run")
    p.add_argument("--fanout-clients", type=int, default=1000)
    p.add_argument("--fanout-workers", type=int, default=2)
    p.add_argument("--fanout-rate", type=float, default=1000.0, help="messages per second to the desks")
    p.add_argument("--profile-seconds", type=int, default=15)
    p.add_argument("--cold-runs", type=int, default=5)
    p.add_argument("--cluster-messages", type=int, default=2000, help="scenario 6 messages for cross-node latency")
    p.add_argument("--cluster-rate", type=float, default=200.0, help="scenario 6 latency messages per second")
    p.add_argument("--cluster-desks", type=int, default=500, help="scenario 6 WebSocket desks for memory")
    p.add_argument("--tables-messages", type=int, default=100, help="scenario 7 sends, replies and callbacks")
    p.add_argument("--batch-reminders", type=int, default=1000, help="scenario 8 rows in the morning's import")
    p.add_argument("--batch-rate", type=float, default=50.0, help="scenario 8 SEND_RATE_PER_SECOND")
    p.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs) for inspection")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if p.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    brokers = [b for b in args.brokers.split(",") if b]
    scenarios = set(args.scenarios.split(","))
    unknown = (set(brokers) - set(STARTERS)) | (scenarios - set(SCENARIOS))
    if unknown:
        print(f"bench: unknown broker or scenario: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    run = Run(argv)
    begin = time.monotonic()
    try:
        execute(run, args, workdir, brokers, scenarios)
    finally:
        run.seconds = time.monotonic() - begin
        old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        text = with_section(render(run, args), SOAK_TITLE, section(old, SOAK_TITLE))  # make soak's
        text = with_section(text, SEARCH_TITLE, run.search or section(old, SEARCH_TITLE))  # or this run's
        args.output.write_text(text, encoding="utf-8")
        print(f"bench: wrote {args.output} after {run.seconds:.0f} s", flush=True)
        if args.keep:
            print(f"bench: work directory kept at {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for failure in run.errors:
        print(f"bench: FAILED: {failure}", file=sys.stderr)
    return 1 if run.errors else 0


def execute(run: Run, args: argparse.Namespace, workdir: Path, brokers: list[str], scenarios: set[str]) -> None:
    cert, key = make_certificate(workdir)
    signing_key = "bench-" + "k" * 40
    for kind in brokers:
        broker = STARTERS[kind](workdir, cert, key, signing_key)
        try:
            if "latency" in scenarios:
                step(run, f"{kind} latency", _latency, run, args, workdir, broker, cert)
            if "throughput" in scenarios:
                step(run, f"{kind} throughput", _throughput, run, args, workdir, broker)
            if "fanout" in scenarios:
                step(run, f"{kind} fan-out", _fanout, run, args, broker)
            if kind == "mosquitto" and "profile" in scenarios:
                step(run, "profile", _profile, run, args, workdir, broker)
            if kind == "mosquitto" and "cold" in scenarios:
                step(run, "cold start", _cold, run, args, workdir, broker)
            if kind == "mosquitto" and "tables" in scenarios:
                step(run, "table storage", _tables, run, args, workdir, broker)
            if kind == "mosquitto" and "batch" in scenarios:
                step(run, "reminder batch", _batch, run, args, workdir, broker)
        finally:
            broker.stop()
    if "cluster" in scenarios:
        step(run, "rabbitmq cluster", _cluster, run, args, signing_key)
    if "search" in scenarios:
        step(run, "search", _search, run, args)


def step(run: Run, name: str, body: Callable[..., None], *params: object) -> None:
    """Run one scenario; a crash is recorded and the others still run."""
    print(f"bench: {name}…", flush=True)
    started = time.monotonic()
    try:
        body(*params)
    except Exception as exc:
        traceback.print_exc()
        run.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    print(f"bench: {name} took {time.monotonic() - started:.0f} s", flush=True)


def _latency(run: Run, args: argparse.Namespace, workdir: Path, broker: Broker, cert: Path) -> None:
    result = run_inbound(
        workdir,
        broker,
        cert,
        messages=args.latency_messages,
        rate=args.rate,
        warmup=args.warmup,
        sends=args.send_requests,
    )
    run.latency.append(result)
    for name in ("ours", "routed", "ours_tls"):
        summary = result.inbound.get(name)
        if summary and summary.lost:
            run.errors.append(f"{broker.kind} latency: {summary.lost} webhooks through {name} never arrived")


def _wrk_run(
    args: argparse.Namespace,
    workdir: Path,
    broker: Broker,
    seconds: int,
    profile_to: Path | None = None,
    *,
    bare: bool = False,
) -> ThroughputResult:
    return run_throughput(
        workdir,
        broker,
        seconds=seconds,
        connections=args.wrk_connections,
        threads=args.wrk_threads,
        sign_rate=args.sign_rate * (2 if bare else 1),  # the bare pipeline runs through them faster
        workers=args.devhost_workers,
        profile_to=profile_to,
        bare=bare,
    )


def _throughput(run: Run, args: argparse.Namespace, workdir: Path, broker: Broker) -> None:
    result = _wrk_run(args, workdir, broker, args.wrk_seconds)
    run.throughput.append(result)
    run.errors += [f"{broker.kind} throughput: {f}" for f in result.failures]
    bare = _wrk_run(args, workdir, broker, args.wrk_seconds, bare=True)  # right after, on the same broker
    run.bare.append(bare)
    run.errors += [f"{broker.kind} bare pipeline: {f}" for f in bare.failures]


def _fanout(run: Run, args: argparse.Namespace, broker: Broker) -> None:
    result = run_fanout(broker, clients=args.fanout_clients, workers=args.fanout_workers, rate=args.fanout_rate)
    run.fanout.append(result)
    if result.delivery and result.delivery.lost:
        run.errors.append(f"{broker.kind} fan-out: {result.delivery.lost} desks got nothing")


def _profile(run: Run, args: argparse.Namespace, workdir: Path, broker: Broker) -> None:
    run.profile = _wrk_run(args, workdir, broker, args.profile_seconds, workdir / "profile.txt")


def _cluster(run: Run, args: argparse.Namespace, signing_key: str) -> None:
    if not rabbitmq_available():
        run.errors.append("rabbitmq cluster: Debian's rabbitmq-server is not installed")
        return
    run.cluster = run_cluster(
        signing_key, messages=args.cluster_messages, rate=args.cluster_rate, desks=args.cluster_desks
    )
    lost = sum(f.lost for f in run.cluster.failovers if f.killed == "the desk's node")
    if lost:
        run.errors.append(f"rabbitmq cluster: {lost} acknowledged messages lost when the desk's node died")


def _tables(run: Run, args: argparse.Namespace, workdir: Path, broker: Broker) -> None:
    run.tables = run_tables(workdir, broker, messages=args.tables_messages)
    if run.tables.routed_arrival and run.tables.routed_arrival.lost:
        run.errors.append(f"table storage: {run.tables.routed_arrival.lost} routed replies never reached the desk")


def _batch(run: Run, args: argparse.Namespace, workdir: Path, broker: Broker) -> None:
    run.batch = run_batch(workdir, broker, reminders=args.batch_reminders, rate=args.batch_rate)
    if run.batch.wrong_states or run.batch.texts_sent != run.batch.reminders:
        run.errors.append(
            f"reminder batch: {run.batch.wrong_states} wrong states, {run.batch.texts_sent} texts for "
            f"{run.batch.reminders} reminders"
        )


def _search(run: Run, args: argparse.Namespace) -> None:
    """bench.search's desk of 10,000 conversations and 200,000 messages (fewer on Azurite), on both backends."""
    options = search_args(QUICK_SEARCH if args.quick else [])
    run.search = render_search(run_search(options), options.rounds)


def _cold(run: Run, args: argparse.Namespace, workdir: Path, broker: Broker) -> None:
    run.cold = run_coldstart(workdir, broker, args.cold_runs)


if __name__ == "__main__":
    raise SystemExit(main())
