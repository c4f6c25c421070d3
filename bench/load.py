"""The load generator, a process of its own: opens the sessions, then sends newCall webhooks open-loop at
fixed rates. Every request is scheduled in advance and its latency counted from its scheduled time, so a
server that falls behind cannot hide it in a queue. Prints one JSON object with the figures.

    python -m bench.load CONFIG.json
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def postgres_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Load:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.arrivals: dict[str, float] = {}
        self.readers: list[asyncio.Task[None]] = []

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"call.ringing"' in msg.data:
                now = loop.time()
                self.arrivals.setdefault(json.loads(msg.data)["call_id"], now)

    async def connect(self, http: aiohttp.ClientSession, users: list[str]) -> list[aiohttp.ClientWebSocketResponse]:
        tokens = self.cfg["tokens"]
        sockets: list[aiohttp.ClientWebSocketResponse] = []

        async def one(user: str) -> None:
            ws = await http.ws_connect(self.cfg["base"] + "/ws", compress=0, autoping=True, heartbeat=None)
            await ws.send_json({"type": "auth", "token": tokens[user]})
            first = await ws.receive_json(timeout=30)
            assert first["type"] == "auth_ok", first
            sockets.append(ws)
            self.readers.append(asyncio.create_task(self._reader(ws)))

        for i in range(0, len(users), 200):
            await asyncio.gather(*(one(u) for u in users[i:i + 200]))
        return sockets

    async def rate(self, http: aiohttp.ClientSession, users: list[str], rate: float, duration: float,
                   run: str) -> dict[str, Any]:
        # the load generator's own collector must not pause it mid-run (a full pass took 40-90 ms, counted as
        # the server's latency): it collects before and after each rate instead
        gc.collect()
        gc.disable()
        try:
            return await self._rate(http, users, rate, duration, run)
        finally:
            gc.enable()
            gc.collect()

    async def _rate(self, http: aiohttp.ClientSession, users: list[str], rate: float, duration: float,
                    run: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        n = max(1, int(rate * duration))
        url = self.cfg["base"] + self.cfg["webhook_path"]
        caller = self.cfg["caller"]
        webhook_lat: list[float] = []
        statuses: dict[int | str, int] = {}
        scheduled: dict[str, float] = {}
        tasks: list[asyncio.Task[None]] = []
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}

        async def post(call_id: str, user: str, at: float) -> None:
            body = (f"event=newCall&direction=in&from={caller}&to=492111234567&callId={call_id}"
                    f"&origCallId={call_id}&user%5B%5D=Bench&userId%5B%5D={user}&xcid=x").encode()
            try:
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status: int | str = r.status
            except (aiohttp.ClientError, TimeoutError) as e:
                status = type(e).__name__
            webhook_lat.append(loop.time() - at)
            statuses[status] = statuses.get(status, 0) + 1

        pids = [self.cfg["server_pid"]]
        pg0 = {pid: cpu_seconds([pid]) for pid in postgres_pids()}
        cpu0, wall0 = cpu_seconds(pids), time.monotonic()
        own0 = time.process_time()  # the load generator itself: it shares the cores with what it measures
        t0 = loop.time() + 0.2
        for i in range(n):
            call_id = f"{run}-{int(rate)}-{i}"
            at = t0 + i / rate
            scheduled[call_id] = at
            user = users[i % len(users)]
            loop.call_at(at, lambda c=call_id, u=user, a=at: tasks.append(asyncio.ensure_future(post(c, u, a))))
        await asyncio.sleep(t0 + duration - loop.time())
        while len(tasks) < n:
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        end = loop.time() + self.cfg.get("grace", 3.0)
        while loop.time() < end and not all(c in self.arrivals for c in scheduled):
            await asyncio.sleep(0.02)
        wall = time.monotonic() - wall0
        cpu = cpu_seconds(pids) - cpu0
        # a backend that started during the run (the ingest's second connection, on demand) counts in full
        pgcpu = sum(cpu_seconds([pid]) - pg0.get(pid, 0.0) for pid in postgres_pids())
        own = time.process_time() - own0
        accepted = n if set(statuses) == {200} else statuses.get(200, 0)
        pops = [self.arrivals[c] - at for c, at in scheduled.items() if c in self.arrivals]
        return {
            "rate": rate, "sent": n, "statuses": {str(k): v for k, v in statuses.items()}, "accepted": accepted,
            "webhook_p50_ms": _ms(pct(webhook_lat, 0.5)), "webhook_p99_ms": _ms(pct(webhook_lat, 0.99)),
            "pop_p50_ms": _ms(pct(pops, 0.5)), "pop_p99_ms": _ms(pct(pops, 0.99)),
            "missing": n - len(pops), "server_cpu_pct": round(100 * cpu / wall, 1),
            "postgres_cpu_pct": round(100 * pgcpu / wall, 1), "load_cpu_pct": round(100 * own / wall, 1),
        }

    async def main(self) -> dict[str, Any]:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        cfg = self.cfg
        users = cfg["users"][: cfg["sessions"]]
        out: dict[str, Any] = {"sessions": len(users), "rates": []}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as wsh, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), timeout=timeout) as http:
            rss0 = rss_kib(cfg["server_pid"])
            t = time.monotonic()
            sockets = await self.connect(wsh, users)
            out["connect_s"] = round(time.monotonic() - t, 1)
            gc.collect()
            await asyncio.sleep(2.0)
            rss1 = rss_kib(cfg["server_pid"])
            out["rss_before_kib"], out["rss_after_kib"] = rss0, rss1
            out["kib_per_session"] = round((rss1 - rss0) / max(1, len(users)), 2)
            # warm-up: the first call of the number fills the lookup cache
            await self.rate(http, users, 20, 0.5, cfg["run"] + "w")
            for rate in sweep_rates(cfg["rates"], cfg.get("search"), out["rates"]):
                result = await self.rate(http, users, rate, cfg["duration"], cfg["run"])
                if not clean(result) and cfg.get("retry_failed", True):
                    # one blip (a checkpoint, the other core busy) should not end a sweep: a rate counts as
                    # not held only when it fails twice in a row
                    print(json.dumps(result), file=sys.stderr, flush=True)
                    again = await self.rate(http, users, rate, cfg["duration"], cfg["run"] + "r")
                    result = {**(again if clean(again) else result), "retried": True,
                              "first_pop_p99_ms": result["pop_p99_ms"]}
                out["rates"].append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
            for ws in sockets:
                await ws.close()
            for r in self.readers:
                r.cancel()
        return out


def clean(r: dict[str, Any]) -> bool:
    """A rate is held when every webhook got a 200, every pop arrived and pop p99 stayed within 100 ms."""
    return (r["missing"] == 0 and r["pop_p99_ms"] is not None and r["pop_p99_ms"] <= 100
            and r["statuses"] == {"200": r["sent"]})


def sweep_rates(fixed: list[float], search: dict[str, float] | None, done: list[dict[str, Any]]):
    """The fixed rates, then (with ``search``) this side's own limit: rates grow by ``factor`` until one is not
    held or ``max`` is reached, then ``refine`` bisections between the last held and the first failed rate.
    ``done`` is the list of results so far, read after each yield."""
    yield from fixed
    if not search:
        return
    ok = [r["rate"] for r in done if clean(r)]
    bad = [r["rate"] for r in done if not clean(r)]
    rate = max(fixed)
    while not bad and rate < search["max"]:
        rate = min(search["max"], round(rate * search["factor"], -1))
        yield rate
        (ok if clean(done[-1]) else bad).append(rate)
    for _ in range(int(search.get("refine", 0))):
        lo = max([r for r in ok if not bad or r < min(bad)], default=0.0)
        hi = min(bad, default=None)
        if hi is None or hi - lo <= 50:
            return
        rate = round((lo + hi) / 2, -1)
        yield rate
        (ok if clean(done[-1]) else bad).append(rate)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(Load(config).main())))
