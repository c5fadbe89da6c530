"""Eventsum's benchmark: the production server under wrk, one table of figures.

Run through `bench/run` (which prepares .venv and wrk). Scenarios, each with 16 connections:
  1. single events, a realistic mix (~1,000 bases, Zipf popularity, fresh addresses and messages)
  2. a storm: one identical event from every client (the hot-row case), counts checked afterwards
  3. arrays of 100 events
  1-3 again on a server started with EVENTSUM_DB_ASYNC_COMMIT=true (commits don't wait for the disk)
  4. /search and /detail on a database seeded in bulk with 10,000 bases, 100,000 instances and
     1,000,000 buckets (spread over the last 7 days; searches use a 24-hour window)
  5. the reference: /health
Then, one request at a time in-process, the pages that grow with a row's history: the admin's lists and a
base page with 2,000 instances, and /detail of an instance with 90 days of counted one-minute buckets.
"""

import argparse
import itertools
import json
import logging
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from importlib import import_module
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

CONNECTIONS = 16
PORT = 8089


def log(message: str) -> None:
    print(message, flush=True)


def database_environment() -> dict:
    """The benchmark's own database: DATABASE_URL when given, else an embedded one under bench/out."""
    env = {**os.environ, "EVENTSUM_LOG_LEVEL": "INFO", "EVENTSUM_DATA_DIR": str(OUT / "data")}
    return env


def django_setup(env: dict) -> None:
    os.environ.update({key: value for key, value in env.items() if key.startswith(("EVENTSUM_", "DATABASE_URL"))})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventsum_project.settings")
    import django

    django.setup()


def reset_database(env: dict) -> None:
    from django.db import connection

    log("resetting the benchmark database")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE events_occurrencebucket, events_eventinstance, events_eventbasesearch, events_eventbase, "
            "events_service, events_environment, django_admin_log RESTART IDENTITY CASCADE"
        )
        cursor.execute("DELETE FROM events_eventgroup WHERE id <> 0")
        # No ANALYZE: TRUNCATE leaves the tables as a new installation's are, with no statistics. Analyzed
        # empty, the planner takes them for empty until autovacuum analyzes them again (up to a minute
        # into a scenario), and the capture statement's lookups of stored rows become sequential scans.


def write_corpus(bases: int) -> dict[str, Path]:
    from events.demo import make_base_templates, make_event, zipf_weights

    rng = random.Random(3)
    templates = make_base_templates(bases, seed=21)
    weights = zipf_weights(bases)
    files = {}

    def events(count):
        return [make_event(t, rng) for t in rng.choices(templates, weights=weights, k=count)]

    files["single"] = OUT / "single.txt"
    files["single"].write_text("\n".join(json.dumps(e) for e in events(5000)))
    files["storm"] = OUT / "storm.txt"
    storm = make_event(templates[0], rng)
    storm["event_name"] = "StormError"
    files["storm"].write_text(json.dumps(storm))
    files["arrays"] = OUT / "arrays.txt"
    files["arrays"].write_text("\n".join(json.dumps(events(100)) for _ in range(200)))
    files["health"] = OUT / "health.txt"
    files["health"].write_text("/health")
    return files


class Server:
    def __init__(self, env: dict, workers: int | None, threads: int | None):
        metrics = OUT / "metrics"
        subprocess.run(["rm", "-rf", str(metrics)], check=True)
        metrics.mkdir(parents=True)
        server_env = {**env, "EVENTSUM_BIND": f"127.0.0.1:{PORT}", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        if workers:
            server_env["EVENTSUM_WORKERS"] = str(workers)
        if threads:
            server_env["EVENTSUM_THREADS"] = str(threads)
        self.log_file = open(OUT / "server.log", "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "eventsum_project.serve"],
            cwd=ROOT,
            env=server_env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        # Each worker listens on a socket of its own (SO_REUSEPORT) once it has loaded the application,
        # and the kernel gives new connections only to the sockets already listening: a scenario started
        # when the first worker answers put all 16 connections on it (/health at 1,310/s instead of
        # ~2,800). So wait for every worker.
        expected = workers or int(server_env.get("EVENTSUM_WORKERS") or os.cpu_count())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            if sum(map(bool, self.worker_connections(psutil.CONN_LISTEN))) >= expected and self.healthy():
                return
            time.sleep(0.3)
        raise RuntimeError(f"the server did not start {expected} healthy workers; see bench/out/server.log")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as response:
                return response.status == 200
        except OSError:  # refused, or an HTTP error such as 503 (the database does not answer)
            return False

    def acknowledged_events(self, timeout: float = 30) -> int:
        """Events the server has stored and answered 200 for, by its own metrics (all workers), once the
        requests wrk abandoned in flight at its end are answered too: wrk misses those answers, the server
        does not. Read until two readings half a second apart agree."""
        counter = "eventsum_captured_events_total{"
        last, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=10) as response:
                lines = response.read().decode().splitlines()
            stored = [line for line in lines if line.startswith(counter) and 'outcome="stored"' in line]
            total = round(sum(float(line.rsplit(" ", 1)[1]) for line in stored))
            if total == last:
                return total
            last = total
            time.sleep(0.5)
        raise RuntimeError("the server kept storing events after wrk had stopped")

    def _each_worker(self, read, *, with_main: bool = False) -> dict[int, object]:
        """{pid: read(process)} for the server's workers (and its main process), skipping any that ended."""
        try:
            main = psutil.Process(self.process.pid)
            processes = [main, *main.children()] if with_main else main.children()
        except psutil.NoSuchProcess:
            return {}
        values = {}
        for process in processes:
            try:
                values[process.pid] = read(process)
            except psutil.NoSuchProcess:
                pass
        return values

    def worker_rss_mb(self) -> list[float]:
        return list(self._each_worker(lambda process: process.memory_info().rss / 2**20).values())

    def worker_connections(self, status: str = psutil.CONN_ESTABLISHED) -> list[int]:
        """How many connections in `status` each worker holds, most first. Each worker listens on its
        own socket and the kernel spreads new connections over them by a hash, so wrk's 16 keep-alive
        connections can land 8/8 or 12/4; the workers share the cores alike, so the clients of the
        busier one wait longer (RESULTS.md: the split moves the p99)."""

        def count(process) -> int:
            return sum(c.status == status and c.laddr.port == PORT for c in process.net_connections(kind="tcp"))

        return sorted(self._each_worker(count).values(), reverse=True)

    def worker_cpu_seconds(self) -> dict[int, float]:
        """CPU time used so far by each of the server's processes."""
        return self._each_worker(lambda process: sum(process.cpu_times()[:2]), with_main=True)

    def settle(self, timeout: float = 15) -> None:
        """Wait for the requests wrk abandoned at its end: the server still answers them, and the next
        scenario would otherwise queue behind them (seen as a p99 of 200-300 ms for /detail after /search)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=timeout) as response:
                response.read()
            if time.monotonic() - started < 0.02:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log_file.close()


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()  # not idle, iowait, steal (another machine's) nor guest (inside user)
    return times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)


def run_wrk(url: str, corpus: Path, method: str, duration: int, server: Server, header: str | None = None) -> dict:
    peak = {"rss": 0.0}
    splits = Counter()  # connections per worker, sampled every 5 s (each sample costs ~8 ms of CPU)
    stop = threading.Event()

    def sample():
        for tick in itertools.count():
            if stop.is_set():
                break
            peak["rss"] = max([peak["rss"], *server.worker_rss_mb()])
            split = server.worker_connections() if tick % 10 == 2 else []
            if sum(split):
                splits["/".join(map(str, split))] += 1
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    command = [
        "wrk",
        "-t2",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(ROOT / "bench" / "load.lua"),
        url,
        "--",
        str(corpus),
        method,
    ]
    if header:
        command.append(header)
    # CPU per request varies much less than throughput on a shared machine. The workers' share is read
    # per process; PostgreSQL's is what the whole machine used minus the workers and wrk (its backends come
    # and go as connections are renewed, so counting them one by one would lose the ones that ended).
    workers_before, machine_before = server.worker_cpu_seconds(), machine_busy_seconds()
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_after, machine_after = server.worker_cpu_seconds(), machine_busy_seconds()
    stop.set()
    sampler.join()
    line = next(line for line in output.splitlines() if line.startswith("WRK_RESULT "))
    result = json.loads(line.removeprefix("WRK_RESULT "))
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds
    result["rss_mb"] = peak["rss"]
    result["connections"] = splits.most_common(1)[0][0] if splits else ""
    workers = sum(used - workers_before.get(pid, 0.0) for pid, used in workers_after.items())
    wrk = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    requests = max(result["requests"], 1)
    result["app_cpu_ms"] = 1000 * workers / requests
    result["pg_cpu_ms"] = 1000 * max(machine_after - machine_before - workers - wrk, 0.0) / requests
    return result


def seed_search_data(bases: int = 10_000, instances_per_base: int = 10, buckets_per_instance: int = 10) -> None:
    """Bulk SQL: 10 services of 1,000 bases, 10 instances each, 10 one-minute buckets each, over 7 days."""
    from django.db import DatabaseError, connection
    from psycopg2.extras import execute_values

    from events.demo import make_base_templates
    from grouping.search_text import static_search_text, trigrams_of

    log("seeding 10,000 bases, 100,000 instances, 1,000,000 buckets")
    started = time.monotonic()
    templates = make_base_templates(50, seed=5)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_service (name, normalized_name, created_at) "
            "SELECT 'seed-' || s, 'seed_' || s, now() FROM generate_series(0, 9) s ON CONFLICT DO NOTHING"
        )
        cursor.execute(
            "INSERT INTO events_environment (name, normalized_name, created_at) VALUES ('prod', 'prod', now()) "
            "ON CONFLICT DO NOTHING"
        )
        cursor.execute("SELECT id FROM events_service WHERE normalized_name LIKE 'seed_%' ORDER BY normalized_name")
        service_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT id FROM events_environment WHERE normalized_name = 'prod'")
        environment_id = cursor.fetchone()[0]
        rows, searches = [], []
        for index in range(bases):
            template = templates[index % len(templates)]
            data = {
                "raw_data": {
                    "frames": [{k: v for k, v in f.items() if k not in ("lineno", "vars")} for f in template["frames"]],
                    "variant": index,
                }
            }
            name = f"{template['event_name']}{index}"
            rows.append(
                (
                    service_ids[index % 10],
                    environment_id,
                    "python",
                    name,
                    f"{index:064x}",
                    json.dumps(data),
                    template["message"].format(word="order", n=index),
                )
            )
            text = static_search_text("python", name, data)
            searches.append((text, "", sorted(trigrams_of(text))))
        ids = execute_values(
            cursor,
            "INSERT INTO events_eventbase (service_id, environment_id, event_type, event_name, processed_data_hash, "
            "processed_data, normalization_version, event_group_id, latest_message, first_seen, last_seen) VALUES %s "
            "RETURNING id",
            rows,
            template="(%s, %s, %s, %s, %s, %s::jsonb, 1, 0, %s, now() - interval '7 days', now())",
            page_size=1000,
            fetch=True,
        )
        execute_values(
            cursor,
            "INSERT INTO events_eventbasesearch (event_base_id, static_text, messages_text, trigrams) VALUES %s",
            [(base_id, *search) for (base_id,), search in zip(ids, searches, strict=True)],
            page_size=1000,
        )
        raw = json.dumps({"message": "seeded", "raw_data": {"frames": templates[0]["frames"]}})
        cursor.execute(
            """
            INSERT INTO events_eventinstance (event_base_id, generic_data_hash, generic_data, filters, raw_data,
                raw_details, processed_details, latest_message, first_seen, last_seen)
            SELECT b.id, md5(b.id::text || '-' || k) || md5(k::text), %s::jsonb - 'message', '{}', %s::jsonb,
                   '{}', '{}', b.latest_message, b.first_seen, b.last_seen
            FROM events_eventbase b, generate_series(1, %s) k
            WHERE b.service_id = ANY(%s)
            """,
            [raw, raw, instances_per_base, service_ids],
        )
        cursor.execute(
            """
            INSERT INTO events_occurrencebucket (event_instance_id, event_base_id, service_id, bucket_start, count,
                last_seen, counters)
            SELECT i.id, i.event_base_id, b.service_id, t.start, 1 + (i.id + k) %% 7, t.start, '{}'
            FROM events_eventinstance i JOIN events_eventbase b ON b.id = i.event_base_id,
                 generate_series(0, %s - 1) k,
                 LATERAL (SELECT date_trunc('minute', now())
                                 - make_interval(mins => ((i.id * 7 + k * 1009) %% 10080)::int) AS start) t
            WHERE b.service_id = ANY(%s)
            ORDER BY t.start  -- as a live table is laid out: buckets arrive as time passes
            """,
            [buckets_per_instance, service_ids],
        )
        # The instances' and bases' running totals, as captures would have kept them: the migration's backfill.
        cursor.execute(import_module("events.migrations.0013_running_totals").BACKFILL)
        # As in a database that has been running a while: statistics, hint bits and the visibility map set,
        # so autovacuum doesn't take the seeded million rows on during the measurement.
        cursor.execute("VACUUM ANALYZE")
        # And with the seeding's ~1 GB of WAL and pages on disk, so that writing them back does not happen
        # during the /search scenario (the machine's busy time is what it counts).
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError as error:  # DATABASE_URL's role may not be allowed to
            log(f"no CHECKPOINT after seeding: {error}".strip())
    os.sync()
    log(f"seeded in {time.monotonic() - started:.0f}s")


def search_paths(token: str) -> tuple[Path, Path]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM events_service WHERE normalized_name LIKE 'seed_%' ORDER BY id")
        services = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT id FROM events_eventinstance ORDER BY random() LIMIT 2000")
        instances = [row[0] for row in cursor.fetchall()]
    window = "start_time=" + urllib.parse.quote(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 86400)))
    searches = []
    for service in services:
        base = f"/search?service_id={service}&{window}"
        searches += [
            base,
            base + "&sort=recent",
            base + "&sort=increased",
            base + "&limit=20",
            base + "&keywords=error",
            base + "&keywords=checkout+order",
            base + "&keywords=KeyError1",
        ]
    search_file, detail_file = OUT / "search.txt", OUT / "detail.txt"
    search_file.write_text("\n".join(searches))
    detail_file.write_text("\n".join(f"/detail?event_id={i}" for i in instances))
    return search_file, detail_file


def seed_long_histories() -> dict:
    """Rows with long histories, in a service of their own (after the HTTP scenarios, so they don't change
    them): an instance with a bucket every minute for 90 days, each with count_by_message counters over 20
    messages, and a base with 2,000 instances."""
    from django.db import connection, transaction

    log("seeding an instance with 90 days of buckets and a base with 2,000 instances")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_service (name, normalized_name, created_at) VALUES ('seed-hot', 'seed_hot', now()) "
            "RETURNING id"
        )
        service = cursor.fetchone()[0]
        ids = {}
        for name, copies in (("hot", 1), ("many", 2000)):
            # Copies of a seeded base and its first instance, under new identities.
            cursor.execute(
                """
                INSERT INTO events_eventbase (service_id, environment_id, event_type, event_name, processed_data_hash,
                    processed_data, normalization_version, event_group_id, latest_message, first_seen, last_seen)
                SELECT %s, environment_id, event_type, %s, md5(%s) || md5(%s), processed_data, 1, 0, latest_message,
                       now() - interval '90 days', now()
                FROM events_eventbase ORDER BY id LIMIT 1 RETURNING id
                """,
                [service, f"Long{name.title()}Error", name, name],
            )
            base = ids[name] = cursor.fetchone()[0]
            cursor.execute(
                """
                INSERT INTO events_eventinstance (event_base_id, generic_data_hash, generic_data, filters, raw_data,
                    raw_details, processed_details, latest_message, first_seen, last_seen)
                SELECT %s, md5(%s || k) || md5(k::text), generic_data, filters, raw_data, raw_details,
                       processed_details, latest_message, now() - interval '90 days', now()
                FROM (SELECT * FROM events_eventinstance ORDER BY id LIMIT 1) i, generate_series(1, %s) k
                RETURNING id
                """,
                [base, name, copies],
            )
            ids[f"{name}_instance"] = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO events_occurrencebucket (event_instance_id, event_base_id, service_id, bucket_start, count,
                last_seen, counters)
            SELECT %s, %s, %s, t, n, t + interval '30 seconds',
                   jsonb_build_object('count_by_message', jsonb_build_object('order ' || k %% 20 || ' failed', n))
            FROM generate_series(1, 129600) k,
                 LATERAL (SELECT date_trunc('minute', now()) - make_interval(mins => k) AS t, 1 + k %% 97 AS n) m
            ORDER BY t
            """,
            [ids["hot_instance"], ids["hot"], service],
        )
        cursor.execute(
            "INSERT INTO events_occurrencebucket (event_instance_id, event_base_id, service_id, bucket_start, count, "
            "last_seen, counters) SELECT id, event_base_id, %s, date_trunc('minute', now()), 1, now(), '{}' "
            "FROM events_eventinstance WHERE event_base_id = %s",
            [service, ids["many"]],
        )
        cursor.execute(import_module("events.migrations.0013_running_totals").BACKFILL)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE events_occurrencebucket")
    return ids


def probe_long_histories(ids: dict) -> list[tuple[str, float, str]]:
    """Median wall time of five requests, one at a time, through Django's test client (no HTTP server)."""
    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    # The probe's own request lines would land between the progress lines and the table.
    logging.getLogger("eventsum.request").setLevel(logging.WARNING)
    day_ago = urllib.parse.quote(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 86400)))
    hot_instance = ids["hot_instance"]
    pages = [
        ("admin: base list, first page", "/admin/events/eventbase/", ""),
        ("admin: base list, last page", "/admin/events/eventbase/?p=200", "10,000 bases, 50 a page"),
        ("admin: base page, 2,000 instances", f"/admin/events/eventbase/{ids['many']}/change/", ""),
        ("admin: base page, 90 days of buckets", f"/admin/events/eventbase/{ids['hot']}/change/", "129,600 buckets"),
        ("admin: instance page, 90 days of buckets", f"/admin/events/eventinstance/{hot_instance}/change/", ""),
        ("/detail, 90 days of counted buckets", f"/detail?event_id={hot_instance}", "counters summed from 129,600"),
        ("/search, that service, 24 hours", f"/search?service=seed-hot&start_time={day_ago}", ""),
    ]
    figures = []
    for name, path, note in pages:
        timings = []
        for attempt in range(6):
            started = time.perf_counter()
            response = client.get(path)
            if attempt:  # the first warms caches and prepares statements
                timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code}")
        figures.append((name, sorted(timings)[len(timings) // 2], note))
    return figures


# Issue 6's targets: (scenario name's start, what is measured, the check), each row judged on its own figures.
TARGETS = (
    (
        "capture: single events",
        "≥ 1,500 events/s, p99 < 50 ms, no errors",
        lambda row, rate: rate >= 1500 and row["p99_us"] < 50_000 and not row["status_errors"] + row["socket_errors"],
    ),
    ("capture: storm", "≥ 1,500 events/s, counts exact", lambda row, rate: rate >= 1500 and row.get("exact")),
    ("capture: arrays of 100", "≥ 10,000 events/s", lambda row, rate: rate >= 10_000),
    ("search", "p95 < 100 ms", lambda row, rate: row["p95_us"] < 100_000),
    ("detail", "p95 < 20 ms", lambda row, rate: row["p95_us"] < 20_000),
)


def target_lines(rows: list[dict]) -> list[str]:
    """One line per measured row that has a target, and the workers' memory over the whole run."""
    lines = []
    for row in rows:
        for start, target, met in TARGETS:
            if row["name"].startswith(start):
                verdict = "met" if met(row, row["rps"] * row["per_request"]) else "NOT met"
                lines.append(f"- {row['name']}: {target}: {verdict}")
    rss = max(row["rss_mb"] for row in rows)
    lines.append(f"- every worker < 150 MB RSS: {'met' if rss < 150 else 'NOT met'} ({rss:.0f} MB at most)")
    return lines


def storm_counts() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(sum(o.count), 0) FROM events_occurrencebucket o "
            "JOIN events_eventbase b ON b.id = o.event_base_id WHERE b.event_name = 'StormError'"
        )
        return int(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario (15 to 30)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the server's own)")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker (default: the server's own)")
    parser.add_argument("--skip-search", action="store_true", help="skip seeding and the /search and /detail runs")
    options = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    env = database_environment()
    django_setup(env)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # as scripts/run does for the server
    reset_database(env)
    files = write_corpus(1000)
    url = f"http://127.0.0.1:{PORT}"

    rows, long_histories = [], []
    (OUT / "server.log").unlink(missing_ok=True)
    server = Server(env, options.workers, options.threads)
    try:

        def scenario(name, path, corpus, method="post", per_request=1, header=None):
            log(f"running: {name}")
            server.settle()
            result = run_wrk(url + path, corpus, method, options.duration, server, header)
            result.update(name=name, per_request=per_request)
            rows.append(result)
            return result

        def captures(label=""):
            scenario(f"capture: single events{label}", "/capture", files["single"])
            before, stored_before = server.acknowledged_events(), storm_counts()
            storm = scenario(f"capture: storm (one event){label}", "/capture", files["storm"])
            acknowledged = server.acknowledged_events() - before
            stored = storm_counts() - stored_before
            storm["exact"] = stored == acknowledged
            storm["note"] = (
                f"stored {stored} {'=' if stored == acknowledged else '≠'} acknowledged {acknowledged} "
                f"({storm['requests'] - storm['status_errors']} answers reached wrk)"
            )
            scenario(f"capture: arrays of 100{label}", "/capture", files["arrays"], per_request=100)

        scenario("health (reference)", "/health", files["health"], "get")
        captures()
        # The same captures, from the same empty tables, with PostgreSQL's asynchronous commit
        # (docs/operations.md); then the default again for the reads.
        server.stop()
        reset_database(env)
        server = Server({**env, "EVENTSUM_DB_ASYNC_COMMIT": "true"}, options.workers, options.threads)
        captures(", async commit")
        if not options.skip_search:
            server.stop()
            server = Server(env, options.workers, options.threads)
            seed_search_data()
            from io import StringIO

            from django.core.management import call_command as command

            out = StringIO()
            command("eventsum_token", "bench-reader", stdout=out)
            token = out.getvalue().strip()
            search_file, detail_file = search_paths(token)
            header = f"Authorization: Token {token}"
            scenario("search (24h window)", "", search_file, "get", header=header)
            scenario("detail", "", detail_file, "get", header=header)
            long_histories = probe_long_histories(seed_long_histories())
    finally:
        server.stop()
        if not env.get("DATABASE_URL"):  # its own embedded PostgreSQL, which nothing else uses
            from django.db import connection

            from eventsum_project.embedded_postgres import stop_embedded

            connection.close()
            stop_embedded(Path(env["EVENTSUM_DATA_DIR"]))

    reference = rows[0]["rps"]
    machine = f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    lines = [
        f"Eventsum benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine}, "
        f"{CONNECTIONS} connections, {options.duration}s per scenario, wrk on the same machine",
        "",
        "| scenario | events or requests/s | p50 ms | p95 ms | p99 ms | errors | max worker RSS MB | vs /health "
        "| CPU ms per request: workers / PostgreSQL and the rest | connections per worker | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        throughput = row["rps"] * row["per_request"]
        ratio = f"{row['rps'] / reference:.2f}" if row["name"].startswith("capture") else ""
        lines.append(
            f"| {row['name']} | {throughput:,.0f} | {row['p50_us'] / 1000:.1f} | {row['p95_us'] / 1000:.1f} | "
            f"{row['p99_us'] / 1000:.1f} | {row['status_errors'] + row['socket_errors']} | {row['rss_mb']:.0f} | "
            f"{ratio} | {row['app_cpu_ms']:.2f} / {row['pg_cpu_ms']:.2f} | {row['connections']} | "
            f"{row.get('note', '')} |"
        )
    if long_histories:
        lines += [
            "",
            "Rows with long histories, one request at a time, in-process (median of five):",
            "",
            "| page | ms | note |",
            "| --- | ---: | --- |",
        ]
        lines += [f"| {name} | {ms:.1f} | {note} |" for name, ms, note in long_histories]
    lines += ["", "Against issue 6's targets (the durable rows are the targets; async commit is opt-in):", ""]
    lines += target_lines(rows)
    table = "\n".join(lines)
    (OUT / "results.md").write_text(table + "\n")
    (OUT / "results.json").write_text(json.dumps(rows, indent=2))
    print()
    print(table)


if __name__ == "__main__":
    main()
