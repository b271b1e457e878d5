"""A burst of concurrent requests against a running Mammo Portal, as an outside probe sends.

Signs in once as a reader, then sends ``--requests`` GETs at once (worklist page, case
pages, the worklist API) from ``--requests`` threads, while sampling how many connections
the server holds in PostgreSQL. Prints the answers by status, latency and the largest
connection count: a server that survives has no 5xx and a bounded connection count.

    scripts/run &   # with DATABASE_URL=postgres://... set
    .venv/bin/python benchmarks/web_load.py --url http://127.0.0.1:8000 \\
        --username radiologist --password PASSWORD \\
        --database-url postgres://postgres@127.0.0.1:5432/mammo_portal
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
from collections import Counter
from urllib.parse import urlparse

import psycopg
import requests


def sign_in(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if token is None:
        raise SystemExit("The login page has no CSRF token: is this Mammo Portal?")
    answer = session.post(
        f"{url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token[1]},
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=30,
    )
    if "/worklist/" not in answer.url:
        raise SystemExit(f"Sign-in failed (ended at {urlparse(answer.url).path}).")
    return session


def case_paths(session: requests.Session, url: str) -> list[str]:
    cases = session.get(f"{url}/api/cases/", timeout=30).json()["results"]
    return [f"/cases/{case['id']}/" for case in cases[:10]] or ["/worklist/"]


class ConnectionSampler(threading.Thread):
    """Counts the server's connections to its database every 20 ms, keeping the largest."""

    def __init__(self, database_url: str):
        super().__init__(daemon=True)
        self.database_url = database_url
        self.name_of_db = urlparse(database_url).path.lstrip("/")
        self.largest = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stopped.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    [self.name_of_db],
                ).fetchone()
                assert row is not None  # count(*) gives one row
                (count,) = row
                self.largest = max(self.largest, count)
                time.sleep(0.02)


def burst(url: str, session: requests.Session, paths: list[str], n: int) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(n)
    cookies = session.cookies.get_dict()

    def one(i: int) -> None:
        path = paths[i % len(paths)]
        start.wait()
        began = time.perf_counter()
        try:
            code = requests.get(f"{url}{path}", cookies=cookies, timeout=120).status_code
        except requests.RequestException:
            code = 0  # refused or reset: the server did not answer
        with lock:
            results.append((code, time.perf_counter() - began))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--database-url", help="the server's PostgreSQL, to count connections")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    session = sign_in(args.url, args.username, args.password)
    paths = ["/worklist/", "/api/cases/", *case_paths(session, args.url)]
    sampler = ConnectionSampler(args.database_url) if args.database_url else None
    if sampler:
        sampler.start()
    began = time.perf_counter()
    results = burst(args.url, session, paths, args.requests)
    seconds = time.perf_counter() - began
    if sampler:
        sampler.stopped.set()
        sampler.join()
    codes = Counter(code for code, _ in results)
    latencies = sorted(latency for _, latency in results)
    print(f"{len(results)} concurrent requests to {args.url} in {seconds:.1f} s\n")
    print("| status | requests |\n|---:|---:|")
    for code, count in sorted(codes.items()):
        print(f"| {code or 'no answer'} | {count} |")
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"\nlatency p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s")
    if sampler:
        print(f"largest number of server connections to PostgreSQL: {sampler.largest}")
    failed = sum(count for code, count in codes.items() if code == 0 or code >= 500)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
