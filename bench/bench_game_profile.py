"""Profile the game's hot requests in-process against the seeded benchmark database.

    .venv/bin/python bench/bench_game_profile.py --mode vote --n 300            # CPU per request
    .venv/bin/python bench/bench_game_profile.py --mode next --queries           # SQL of one request
    .venv/bin/python bench/bench_game_profile.py --mode leaderboard --profile 30  # top 30 of cProfile

Runs the requests through Django's full handler stack (django.test.Client: middleware, DRF,
token auth) with the settings the benchmark gives gunicorn (DEBUG off, PostgreSQL
`appareal_bench`, Redis db 3), one process, no network. Prints the CPU time per request of this
process and of its PostgreSQL backend (from /proc), the statuses, and optionally the SQL
statements of one request and a cProfile table. A development tool: its figures are not recorded
(the load benchmark, bench_game.py, is).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.update(
    {
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appareal_bench"),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"),
        "DJANGO_SETTINGS_MODULE": "appareal_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DB_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "ERROR",
    }
)
os.environ.pop("CELERY_BROKER_URL", None)

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["vote", "next", "leaderboard", "detail"], default="vote")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--queries", action="store_true", help="print the SQL of one request")
    parser.add_argument("--profile", type=int, default=0, help="print this many cProfile rows (tottime)")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--players", type=int, default=0,
                        help="use only this many players (each votes again: tokens seen before; mind the rate limit)")
    parser.add_argument(
        "--wsgi", action="store_true",
        help="votes through appareal_site.wsgi.application (the lean vote route in front of Django), as gunicorn calls it",
    )
    args = parser.parse_args(argv)

    import django

    django.setup()
    from bench_game_load import token_for
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id FROM authtoken_token ORDER BY user_id")
        players = [r[0] for r in cursor.fetchall()]
        cursor.execute("SELECT id, owner_id FROM labeling_photo WHERE status = 'active'")
        photos = cursor.fetchall()
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    rng = random.Random(args.seed or time.time_ns())
    rng.shuffle(players)
    if args.players:
        players = players[: args.players]
    boards = [("global", "all"), ("global", "week"), ("friends", "all"), ("friends", "week")]
    client = Client()
    if args.wsgi:
        import io
        import json

        from appareal_site.wsgi import application

        def wsgi_post(path, body: bytes, token: str):
            environ = {
                "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1",
                "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
                "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
                "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Token {token}",
            }
            answer = {}
            chunks = application(environ, lambda status, headers: answer.update(status=status))
            b"".join(chunks)
            getattr(chunks, "close", lambda: None)()
            answer["status_code"] = int(answer["status"].split()[0])
            return type("Answer", (), answer)

    def request(i: int):
        player = players[i % len(players)]
        headers = {"HTTP_AUTHORIZATION": f"Token {token_for(player)}"}
        if args.mode == "vote":
            photo_id, owner = rng.choice(photos)
            while owner == player:
                photo_id, owner = rng.choice(photos)
            if args.wsgi:
                return wsgi_post(f"/api/photos/{photo_id}/votes/", json.dumps({"age": rng.randint(5, 80)}).encode(), token_for(player))
            return client.post(f"/api/photos/{photo_id}/votes/", {"age": rng.randint(5, 80)}, content_type="application/json", **headers)
        if args.mode == "next":
            return client.get("/api/photos/next/", **headers)
        if args.mode == "detail":
            return client.get(f"/api/photos/{rng.choice(photos)[0]}/", **headers)
        scope, period = boards[i % len(boards)]
        return client.get("/api/leaderboard/", {"scope": scope, "period": period}, **headers)

    for i in range(20):  # warm-up: imports, URL resolver, connection
        request(i)
    if args.queries:
        with CaptureQueriesContext(connection) as captured:
            response = request(20)
        print(f"status {response.status_code}: {len(captured.captured_queries)} statements")
        for q in captured.captured_queries:
            print(f"  [{q['time']} s] {q['sql'][:600]}")
    statuses: Counter = Counter()
    # CPU time, not wall time: waiting for PostgreSQL (and its commit fsync) is not our CPU.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    app0, db0, wall0 = time.process_time(), proc_cpu(backend), time.perf_counter()
    if profiler:
        profiler.enable()
    for i in range(args.n):
        statuses[request(100 + i).status_code] += 1
    if profiler:
        profiler.disable()
    app, db, wall = time.process_time() - app0, proc_cpu(backend) - db0, time.perf_counter() - wall0
    print(
        f"{args.mode}: {args.n} requests, statuses {dict(statuses)}; per request: wall {1000 * wall / args.n:.2f} ms, "
        f"CPU this process {1000 * app / args.n:.2f} ms + PostgreSQL backend {1000 * db / args.n:.2f} ms"
        + (" (under cProfile)" if profiler else "")
    )
    if profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)


if __name__ == "__main__":
    main()
