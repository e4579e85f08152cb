"""The game benchmark (issue 4), one command: seed PostgreSQL, serve with gunicorn, drive load, check.

    .venv/bin/python bench/bench_game.py                      # 50k players, 100k photos, 1M votes
    .venv/bin/python bench/bench_game.py --quick              # 5k / 10k / 100k, for a smoke run
    .venv/bin/python bench/bench_game.py --reuse              # keep the seeded database
    .venv/bin/python bench/bench_game.py --seed-only          # seed, then stop (the load runs later with --reuse)

Steps: (re)create the database `appareal_bench` (PostgreSQL at 127.0.0.1:5432, user postgres),
migrate, seed with COPY (bench/bench_game_seed.py), start gunicorn against it and Redis (db 3),
then from a second process (bench/bench_game_load.py, asyncio, loopback only):
votes at 16 and 64 concurrent clients (bounded by count and time), GET /api/photos/next/ and
GET /api/leaderboard/; stop gunicorn; check votes stored == votes acknowledged; run
`recompute_consensus --check` and `rebuild_ledger --dry-run --check`. Prints every figure and the
machine; the results go into docs/benchmarks.md by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from machine import cpu_model  # bench/machine.py (scripts run from bench/)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"



def say(text: str) -> None:
    print(text, flush=True)


def run(cmd: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    say("$ " + " ".join(shlex.quote(c) for c in cmd))
    return subprocess.run(cmd, env=env, cwd=REPO, check=True, text=True, **kwargs)


def count_votes(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT COUNT(*) FROM labeling_vote").fetchone()[0]


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    """utime + stime of these processes (Linux /proc), in seconds; vanished processes count 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def backends_started_since(db_url: str, db: str, since: float) -> tuple[int, int]:
    """(backends of the app now, how many of them connected after `since`): persistent connections
    (DB_CONN_MAX_AGE) show as 0 new backends per phase."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE backend_start > to_timestamp(%s)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (since, db)).fetchone()
    return row[0], row[1]


def backend_pids(db_url: str, db: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (db,))]


def wait_ready(port: int, token: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/leaderboard/", headers={"Authorization": f"Token {token}"}, timeout=5)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("gunicorn did not come up")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="appareal_bench")
    parser.add_argument("--players", type=int, default=50_000)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="10x smaller database")
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4,
                        help="gunicorn threads per worker (gthread, keep-alive, when > 1; 1 = sync workers)")
    parser.add_argument("--worker-tmp-dir", default=None,
                        help="gunicorn's --worker-tmp-dir (its per-request heartbeat file), e.g. /dev/shm")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-db", type=int, default=3, help="Redis database number of the served app (flushed)")
    parser.add_argument("--vote-count", type=int, default=25_000, help="votes per concurrency level (upper bound)")
    parser.add_argument("--read-count", type=int, default=12_000, help="requests per read benchmark (upper bound)")
    parser.add_argument("--duration", type=float, default=45.0, help="seconds per phase (upper bound)")
    parser.add_argument("--concurrency", default="16,64", help="closed-loop vote phases (saturation)")
    parser.add_argument("--rated", default="16@500,64@500",
                        help="open-loop vote phases, CLIENTS@VOTES_PER_S (latency at a sustained rate); '' for none")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw", help="load client (bench_game_load.py)")
    parser.add_argument("--only", default="", help="comma-separated phases to run: vote, next, leaderboard (default all)")
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--seed", type=int, default=None,
                        help="base of the load clients' random sequences (default: from the clock, so a rerun on the "
                             "same database does not replay (player, photo) pairs already voted)")
    parser.add_argument("--active-players", type=int, default=0,
                        help="draw the votes from this many players (a seeded sample of those with tokens, the same "
                             "for the whole run: players who keep playing) instead of round-robin over all of them")
    parser.add_argument("--seed-only", action="store_true", help="(re)create and seed the database, then stop (no lock needed)")
    parser.add_argument("--fit", action="store_true",
                        help="run the rater fit (manage.py fit_raters) before the load, also on a reused database "
                             "(a freshly seeded one is always fitted: the next-photo read needs the fitted columns)")
    args = parser.parse_args(argv)
    if args.quick:
        args.players, args.photos, args.votes = args.players // 10, args.photos // 10, args.votes // 10

    db_url = f"{PG}/{args.db}"
    seed_base = args.seed if args.seed is not None else int(time.time()) % 1_000_000 * 100
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{args.redis_db}",
        "DJANGO_SETTINGS_MODULE": "appareal_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DB_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "ERROR",
    }
    env.pop("CELERY_BROKER_URL", None)
    say(f"machine: {os.cpu_count()} cores ({cpu_model()}), load average {os.getloadavg()[0]:.1f} at start; "
        f"Python {platform.python_version()}; load seeds from {seed_base}")
    t_total = time.perf_counter()

    seeded = False
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.db,)).fetchone()
        if exists and args.reuse:
            seeded = True
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{args.db}"')
    if not seeded:
        t0 = time.perf_counter()
        run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env)
        run([PY, "bench/bench_game_seed.py", "--players", str(args.players), "--photos", str(args.photos), "--votes", str(args.votes)], env)
        say(f"seeded {args.players} players, {args.photos} photos, {args.votes} votes in {time.perf_counter() - t0:.0f} s")
    else:
        run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env)  # the code's schema and SQL functions
        # This box's PostgreSQL runs with autovacuum off: the dead rows of earlier runs (every vote
        # updates its photo, two totals and two levels) would slow each run down more than the one
        # before. Vacuumed first, a reused database starts as one kept by autovacuum would.
        t0 = time.perf_counter()
        with psycopg.connect(db_url, autocommit=True) as conn:
            autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
            for table in ("labeling_photo", "labeling_vote", "leaderboard_pointsaward", "leaderboard_playertotal",
                          "leaderboard_playerweektotal", "leaderboard_pointslevel", "leaderboard_weekpointslevel",
                          "labeling_playerprofile"):
                conn.execute(f"VACUUM ANALYZE {table}")
        say(f"autovacuum {autovacuum}; VACUUM ANALYZE of the game's tables: {time.perf_counter() - t0:.0f} s")
    if not seeded or args.fit:
        # The rater fit writes what the next-photo read serves (levels, budgets, retirement); its time
        # on this database is the EM job's at this size.
        t0 = time.perf_counter()
        load_before = os.getloadavg()[0]
        fit = run([PY, "manage.py", "fit_raters"], env, capture_output=True).stdout.strip().splitlines()[-1]
        say(f"{fit} (wall {time.perf_counter() - t0:.1f} s, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})")
    if args.seed_only:
        return

    with psycopg.connect(db_url) as conn:
        players = [r[0] for r in conn.execute("SELECT user_id FROM authtoken_token ORDER BY user_id")]
        if args.active_players:
            players = sorted(random.Random(seed_base).sample(players, min(args.active_players, len(players))))
        photos = [list(r) for r in conn.execute("SELECT id, owner_id FROM labeling_photo WHERE status = 'active'")]
        sizes = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                 for t in ("auth_user", "labeling_photo", "labeling_vote", "leaderboard_pointsaward")}
    say(f"database: {sizes}; votes from {len(players)} players" + (" (--active-players)" if args.active_players else ""))
    plan = Path(tempfile.mkdtemp(prefix="bench-game-")) / "plan.json"
    plan.write_text(json.dumps({"players": players, "photos": photos}))
    subprocess.run(["redis-cli", "-n", str(args.redis_db), "FLUSHDB"], check=False, capture_output=True)

    gunicorn = [str(Path(PY).parent / "gunicorn"), "appareal_site.wsgi:application", "--bind", f"127.0.0.1:{args.port}",
                "--workers", str(args.workers), "--backlog", "2048", "--log-level", "warning"]
    if args.threads > 1:
        gunicorn += ["--worker-class", "gthread", "--threads", str(args.threads)]
    if args.worker_tmp_dir:
        gunicorn += ["--worker-tmp-dir", args.worker_tmp_dir]
    say("$ " + " ".join(gunicorn))
    server = subprocess.Popen(gunicorn, env=env, cwd=REPO, start_new_session=True)
    results = []
    try:
        from bench_game_load import token_for

        wait_ready(args.port, token_for(players[0]))

        phase = 0

        def load(mode: str, concurrency: int, count: int, rate: float | None = None) -> dict:
            nonlocal phase
            phase += 1  # a fresh random sequence per phase: no replay of earlier (player, photo) pairs
            cmd = [PY, "bench/bench_game_load.py", "--seed", str(seed_base + phase), "--base-url", f"http://127.0.0.1:{args.port}",
                   "--mode", mode,
                   "--concurrency", str(concurrency), "--count", str(count), "--duration", str(args.duration), "--plan", str(plan),
                   "--client", args.client] + (["--rate", str(rate)] if rate else [])
            # CPU spent by the server side (gunicorn workers + their PostgreSQL backends) per request:
            # on a shared machine, throughput depends on what the neighbours run; this does not.
            app_pids, db_pids = group_pids(server.pid), backend_pids(db_url, args.db)
            app_before, db_before = cpu_seconds(app_pids), cpu_seconds(db_pids)
            load_before, started = os.getloadavg()[0], time.time()
            out = run(cmd, env, capture_output=True).stdout
            app_pids = set(app_pids) | set(group_pids(server.pid))
            db_pids = set(db_pids) | set(backend_pids(db_url, args.db))
            result = json.loads(out.strip().splitlines()[-1])
            app_cpu, db_cpu = cpu_seconds(app_pids) - app_before, cpu_seconds(db_pids) - db_before
            cpu = app_cpu + db_cpu
            requests = max(1, result["requests"])
            result["server_cpu_ms_per_request"] = round(1000 * cpu / requests, 2)
            result["app_cpu_ms_per_request"] = round(1000 * app_cpu / requests, 2)
            result["db_cpu_ms_per_request"] = round(1000 * db_cpu / requests, 2)
            result["server_cpu_share"] = round(cpu / max(1e-9, result["seconds"]), 2)
            result["load_average"] = round((load_before + os.getloadavg()[0]) / 2, 1)
            result["backends"], result["new_backends"] = backends_started_since(db_url, args.db, started)
            say(json.dumps(result))
            return result

        only = set(filter(None, args.only.split(","))) or {"vote", "next", "leaderboard"}
        load("leaderboard", 4, 200)  # warm-up: imports, connections, caches
        vote_phases = [(int(c), None) for c in args.concurrency.split(",") if c]
        vote_phases += [(int(c), float(r)) for c, r in (p.split("@") for p in args.rated.split(",") if p)]
        for concurrency, rate in vote_phases if "vote" in only else []:
            before = count_votes(db_url)
            result = load("vote", concurrency, args.vote_count, rate)
            stored = count_votes(db_url) - before
            result["stored"] = stored
            say(f"votes at {concurrency} clients" + (f", offered {rate:g}/s" if rate else "")
                + f": acknowledged {result['acknowledged']}, stored {stored}: "
                + ("OK" if stored == result["acknowledged"] else "MISMATCH"))
            results.append(result)
        # Reads: one client alone (the latency of a request) and 16 at once (with queueing).
        for concurrency in (1, 16):
            for mode in ("next", "leaderboard"):
                if mode in only:
                    results.append(load(mode, concurrency, args.read_count // (4 if concurrency == 1 else 1)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    checks = {}
    if not args.skip_checks:
        for name, cmd in (("recompute_consensus", ["recompute_consensus", "--check"]),
                          ("rebuild_ledger", ["rebuild_ledger", "--dry-run", "--check"])):
            t0 = time.perf_counter()
            proc = subprocess.run([PY, "manage.py", *cmd], env=env, cwd=REPO, text=True, capture_output=True)
            last = (proc.stdout.strip().splitlines() or [proc.stderr.strip()])[-1]
            checks[name] = f"{last} (exit {proc.returncode}, {time.perf_counter() - t0:.0f} s)"
            say(f"{name}: {checks[name]}")

    say("\nsummary")
    say(f"machine: {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}; gunicorn {args.workers} workers"
        + (f" x {args.threads} threads" if args.threads > 1 else " (sync)") + f"; load client {args.client}; database {sizes}")
    for r in results:
        offered = f" (open loop, offered {r['offered_rate']:g}/s)" if r.get("offered_rate") else ""
        line = (f"- {r['mode']} @ {r['concurrency']}{offered}: {r['requests']} requests in {r['seconds']} s = {r['per_second']}/s, "
                f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, statuses {r['statuses']}; "
                f"server CPU {r['server_cpu_ms_per_request']} ms/request (gunicorn {r['app_cpu_ms_per_request']} "
                f"+ PostgreSQL {r['db_cpu_ms_per_request']}), load client ({r['client']}) {r['client_cpu_ms_per_request']} ms/request, "
                f"{r['server_cpu_share']} cores used, load average {r['load_average']}; "
                f"{r['backends']} PostgreSQL connections, {r['new_backends']} opened during the phase")
        if "stored" in r:
            line += f", acknowledged {r['acknowledged']} / stored {r['stored']}"
        say(line)
        for kind, k in r.get("by_kind", {}).items():
            say(f"    {kind}: p50 {k['p50_ms']} ms, p99 {k['p99_ms']} ms (n={k['n']})")
    for name, text in checks.items():
        say(f"- {name}: {text}")
    say(f"total {time.perf_counter() - t_total:.0f} s")


if __name__ == "__main__":
    main()
