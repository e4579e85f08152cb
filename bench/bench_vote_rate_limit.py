"""CPU per call of the vote rate limit's Redis bucket (the client side of one vote).

    REDIS_URL=redis://127.0.0.1:6379/1 .venv/bin/python bench/bench_vote_rate_limit.py [--calls 20000]

Times `labeling.services.vote_rate_limit.take_vote_token` (redis-py running the Lua bucket by
EVALSHA) and, for scale, a bare `redis.Redis.evalsha` of the same script. Prints CPU and wall
microseconds per call of this process (Redis's own CPU is not counted), and the machine.
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appareal_site.settings")


def timed(name: str, calls: int, fn) -> None:
    for i in range(500):  # warm up: connections, script loaded
        fn(i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{name}: {1e6 * cpu / calls:.1f} us CPU/call, {1e6 * wall / calls:.1f} us wall/call", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        print("set REDIS_URL (e.g. redis://127.0.0.1:6379/1): the bucket runs in Redis only then")
        return 2
    import django

    django.setup()
    import redis
    from django.conf import settings

    from bench.machine import cpu_model
    from labeling.services import vote_rate_limit

    print(f"== machine: {cpu_model()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"python {platform.python_version()}; redis-py {redis.__version__}")
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 1000.0, "VOTE_RATE_BURST": 10.0}
    timed("take_vote_token (redis-py, the app's path)", args.calls, lambda i: vote_rate_limit.take_vote_token(i % 1000))
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    sha = client.script_load(vote_rate_limit.REDIS_BUCKET_SCRIPT)
    timed("bare redis.Redis.evalsha", args.calls, lambda i: client.evalsha(sha, 1, f"bench:{i % 1000}", 1000.0, 10.0, time.time()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
