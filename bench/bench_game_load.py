"""Load client for the game benchmark: asyncio against a running server (loopback only).

    .venv/bin/python bench/bench_game_load.py --base-url http://127.0.0.1:8765 --mode vote \
        --concurrency 16 --count 10000 --duration 60 --plan plan.json

Modes: vote (POST /api/photos/{id}/votes/ with random valid photos), next (GET /api/photos/next/),
leaderboard (GET /api/leaderboard/ cycling global/friends x all/week). `plan.json` holds the player
ids that have tokens and the photos with their owners (written by bench_game.py). Prints one JSON
object: requests, status counts, acknowledged votes (201), throughput, latency percentiles in ms,
and the CPU this client used per request.

Closed loop by default: every client sends its next request as soon as the previous one is
answered, so the server is saturated and latency includes the queue that saturation builds (with
C clients, mean latency = C / throughput). `--rate R` makes it open loop: requests are scheduled
at R per second in total, spread over the clients, and latency counts from the scheduled time (a
request that could not leave on time because its client was still waiting is late by that much),
which answers "does the server sustain R requests/s within a latency bound?".

`--client raw` (default) speaks HTTP/1.1 itself over asyncio streams, one connection per
concurrent client, kept alive when the server allows it: about ten times less CPU per request than
httpx, which matters when the client shares the server's two cores. `--client httpx` is the
earlier client.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import statistics
import sys
import time
from collections import Counter
from urllib.parse import urlparse

import httpx


def token_for(user_id: int) -> str:
    return hashlib.sha1(f"bench-token-{user_id}".encode()).hexdigest()


class RawConnection:
    """One HTTP/1.1 connection: a request at a time, reconnecting when the server closes."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = None, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is not None:
            await self.reader.readexactly(length)
        elif close:
            await self.reader.read()
        if close:
            self.close()
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


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

    parsed = urlparse(args.base_url)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)

    async def drive(send):
        nonlocal issued
        began = time.perf_counter()

        async def worker():
            nonlocal issued
            connection = RawConnection(parsed.hostname, parsed.port or 80) if args.client == "raw" else None
            while issued < args.count and time.perf_counter() < deadline:
                slot = issued
                issued += 1
                scheduled = None
                if args.rate:
                    scheduled = began + slot / args.rate
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                player = take_player()
                headers = {"Authorization": f"Token {token_for(player)}"}
                kind = args.mode
                body = None
                if args.mode == "vote":
                    photo_id, owner = rng.choice(photos)
                    while owner == player:
                        photo_id, owner = rng.choice(photos)
                    method, path = "POST", f"/api/photos/{photo_id}/votes/"
                    body = json.dumps({"age": rng.randint(5, 80)}).encode()
                    headers["Content-Type"] = "application/json"
                elif args.mode == "next":
                    method, path = "GET", "/api/photos/next/"
                else:
                    scope, period = boards[issued % len(boards)]
                    kind = f"{scope}/{period}"
                    method, path = "GET", f"/api/leaderboard/?scope={scope}&period={period}"
                started = scheduled if scheduled is not None else time.perf_counter()
                try:
                    status = await send(connection, method, path, headers, body or b"")
                except (OSError, ConnectionError, asyncio.IncompleteReadError, httpx.HTTPError) as exc:
                    status = type(exc).__name__
                    if connection is not None:
                        connection.close()
                elapsed = (time.perf_counter() - started) * 1000
                statuses[status] += 1
                latencies.append(elapsed)
                per_kind.setdefault(kind, []).append(elapsed)
            if connection is not None:
                connection.close()

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return time.perf_counter() - began

    if args.client == "raw":

        async def send_raw(connection, method, path, headers, body):
            return await connection.request(method, path, headers, body)

        wall = await drive(send_raw)
    else:
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(base_url=args.base_url, limits=limits, timeout=30.0) as client:

            async def send_httpx(_connection, method, path, headers, body):
                return (await client.request(method, path, headers=headers, content=body or None)).status_code

            wall = await drive(send_httpx)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)

    latencies.sort()
    result = {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "offered_rate": args.rate,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "per_second": round(len(latencies) / wall, 1) if wall else 0,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "acknowledged": statuses.get(201, 0),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "client": args.client,
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, len(latencies)), 2),
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
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: requests per second in total (default: closed loop, as fast as answered)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
