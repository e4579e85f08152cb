"""Load client for the game benchmark: asyncio + httpx against a running server (loopback only).

    .venv/bin/python bench/bench_game_load.py --base-url http://127.0.0.1:8765 --mode vote \
        --concurrency 16 --count 10000 --duration 60 --plan plan.json

Modes: vote (POST /api/photos/{id}/votes/ with random valid photos), next (GET /api/photos/next/),
leaderboard (GET /api/leaderboard/ cycling global/friends x all/week). `plan.json` holds the player
ids that have tokens and the photos with their owners (written by bench_game.py). Prints one JSON
object: requests, status counts, acknowledged votes (201), throughput, latency percentiles in ms.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import sys
import time
from collections import Counter
from urllib.parse import urlparse

import httpx


def token_for(user_id: int) -> str:
    return hashlib.sha1(f"bench-token-{user_id}".encode()).hexdigest()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(args) -> dict:
    host = urlparse(args.base_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the load client only targets loopback")
    plan = json.loads(open(args.plan).read())
    players: list[int] = plan["players"]
    photos: list[list[int]] = plan["photos"]  # [id, owner]
    rng = random.Random(args.seed)
    rng.shuffle(players)
    boards = [("global", "all"), ("global", "week"), ("friends", "all"), ("friends", "week")]
    latencies: list[float] = []
    per_kind: dict[str, list[float]] = {}
    statuses: Counter = Counter()
    issued = 0
    deadline = time.perf_counter() + args.duration
    next_player = 0

    def take_player() -> int:
        nonlocal next_player
        player = players[next_player % len(players)]
        next_player += 1
        return player

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.base_url, limits=limits, timeout=30.0) as client:

        async def worker():
            nonlocal issued
            while issued < args.count and time.perf_counter() < deadline:
                issued += 1
                player = take_player()
                headers = {"Authorization": f"Token {token_for(player)}"}
                kind = args.mode
                if args.mode == "vote":
                    photo_id, owner = rng.choice(photos)
                    while owner == player:
                        photo_id, owner = rng.choice(photos)
                    request = client.post(f"/api/photos/{photo_id}/votes/", json={"age": rng.randint(5, 80)}, headers=headers)
                elif args.mode == "next":
                    request = client.get("/api/photos/next/", headers=headers)
                else:
                    scope, period = boards[issued % len(boards)]
                    kind = f"{scope}/{period}"
                    request = client.get("/api/leaderboard/", params={"scope": scope, "period": period}, headers=headers)
                started = time.perf_counter()
                try:
                    response = await request
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = (time.perf_counter() - started) * 1000
                statuses[status] += 1
                latencies.append(elapsed)
                per_kind.setdefault(kind, []).append(elapsed)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - began

    latencies.sort()
    result = {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "per_second": round(len(latencies) / wall, 1) if wall else 0,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "acknowledged": statuses.get(201, 0),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }
    if len(per_kind) > 1:
        result["by_kind"] = {
            kind: {"n": len(v), "p50_ms": round(percentile(sorted(v), 50), 1), "p99_ms": round(percentile(sorted(v), 99), 1)}
            for kind, v in sorted(per_kind.items())
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8765")
    parser.add_argument("--mode", choices=["vote", "next", "leaderboard"], default="vote")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--count", type=int, default=10_000, help="stop after this many requests")
    parser.add_argument("--duration", type=float, default=60.0, help="or after this many seconds")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
