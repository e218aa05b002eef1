"""The Python peer: concurrent.futures.ProcessPoolExecutor with 2 workers.

Run by bench/run.ts as `python3 bench/python/ppe.py --config=<json>`; prints
each case's figures as a line `@@CASE <json>`, the same shape as bench/runner.ts.
"""
import collections
import concurrent.futures
import hashlib
import json
import os
import random
import sys
import time


def square(n):
    return n * n


def digest(rounds, seed):
    d = hashlib.sha256(f"seed:{seed}".encode()).digest()
    for _ in range(1, rounds):
        d = hashlib.sha256(d).digest()
    return d.hex()[:8]


def checksum(payload):
    doc, data = payload["doc"], payload["bytes"]
    s = len(data) + len(doc["items"]) * 7 + doc["id"]
    for b in data[::64]:
        s = (s * 31 + b) & 0xFFFFFFFF
    last = doc["items"][-1]["value"] if doc["items"] else 0
    return int(s + last) & 0xFFFFFFFF


def make_doc(doc_id):
    return {
        "id": doc_id,
        "items": [
            {
                "id": i,
                "name": f"item-{i:06d}-of-doc-{doc_id}",
                "value": i * 1.5 + doc_id,
                "tags": ["alpha", "beta", "even" if i % 2 == 0 else "odd"],
            }
            for i in range(1000)
        ],
    }


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root):
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split(" ")
        children[int(fields[1])].append(int(entry))
    out = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def within_budget(full, minimum, per_ms, budget_ms, step):
    if budget_ms <= 0 or full / per_ms <= budget_ms:
        return full
    return min(full, max(minimum, int(per_ms * budget_ms // step) * step))


def calibrate(task_ms):
    """SHA-256 rounds for about `task_ms` per task in this interpreter."""
    warm = time.perf_counter()
    while time.perf_counter() - warm < 0.2:
        digest(1000, 0)
    samples = []
    for _ in range(11):
        t = time.perf_counter()
        digest(4000, 0)
        samples.append((time.perf_counter() - t) * 1000)
    return max(100, round(4000 * task_ms / sorted(samples)[5]))


def percentile(values, p):
    s = sorted(values)
    rank = min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))
    return s[int(rank)]


def report(key, value):
    sys.stdout.write("@@CASE " + json.dumps({"key": key, "value": value}) + "\n")
    sys.stdout.flush()


def run_case(key, f):
    try:
        report(key, f())
    except Exception as error:  # noqa: BLE001
        report(key, {"error": f"{type(error).__name__}: {error}"})


def main():
    config = {}
    for a in sys.argv[1:]:
        if a.startswith("--config="):
            config = json.loads(a[len("--config="):])
    cases = set(config.get("cases", []))

    t0 = time.perf_counter()
    ex = concurrent.futures.ProcessPoolExecutor(max_workers=2)
    # Processes start on demand: make both run something.
    list(ex.map(time.sleep, [0.05, 0.05]))
    report("start", {"ms": (time.perf_counter() - t0) * 1000})

    [f.result() for f in [ex.submit(square, x) for x in range(4)]]
    if 6 in cases:
        def memory():
            time.sleep(1)
            pids = descendants(os.getpid())
            parent = rss_kb(os.getpid())
            kids = [rss_kb(p) for p in pids]
            return {
                "totalMB": (parent + sum(kids)) * 1024 / 1e6,
                "parentMB": parent * 1024 / 1e6,
                "childrenMB": [k * 1024 / 1e6 for k in kids],
                "childPids": pids,
                "reportedPids": list(ex._processes.keys()),
            }
        run_case("6", memory)

    def latency(n):
        out = []
        for i in range(n):
            t = time.perf_counter()
            r = ex.submit(square, i).result()
            out.append((time.perf_counter() - t) * 1000)
            assert r == i * i
        return out

    [f.result() for f in [ex.submit(square, x) for x in range(2000)]]
    t = time.perf_counter()
    [f.result() for f in [ex.submit(square, x) for x in range(2000)]]
    warm_ms = (time.perf_counter() - t) * 1000
    latency(config.get("latencyWarmup", 200) if 3 in cases else 200)

    if 3 in cases:
        def case3():
            s = latency(config["latencyCalls"])
            return {
                "calls": len(s),
                "p50Us": percentile(s, 50) * 1000,
                "p99Us": percentile(s, 99) * 1000,
                "meanUs": sum(s) / len(s) * 1000,
            }
        run_case("3", case3)

    if 1 in cases:
        def case1():
            n = within_budget(config["tiny"], config["tinyMin"], 2000 / warm_ms, config["budgetMs"], 5000)
            t = time.perf_counter()
            futures = [ex.submit(square, x) for x in range(n)]
            results = [f.result() for f in futures]
            ms = (time.perf_counter() - t) * 1000
            assert sum(results) == (n - 1) * n * (2 * n - 1) // 6
            return {"tasks": n, "ms": ms, "perSecond": n / ms * 1000, "note": "submit() per task"}
        run_case("1", case1)

    if 2 in cases:
        def case2():
            n = config["mapItems"]
            xs = list(range(n))
            t = time.perf_counter()
            results = list(ex.map(square, xs, chunksize=1000))
            ms = (time.perf_counter() - t) * 1000
            assert len(results) == n and results[-1] == (n - 1) ** 2
            return {"items": n, "ms": ms, "perSecond": n / ms * 1000, "note": "executor.map(chunksize=1000)"}
        run_case("2", case2)

    if 4 in cases:
        def case4():
            rounds, tasks = calibrate(config["cpuTaskMs"]), config["cpuTasks"]
            for i in range(5):
                digest(rounds, i)
            [f.result() for f in [ex.submit(digest, rounds, i) for i in range(4)]]
            half = tasks // 2
            # Serial: half just before and half just after the pool's run (the host's speed drifts).
            t = time.perf_counter()
            serial = [digest(rounds, i) for i in range(half)]
            before = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            futures = [ex.submit(digest, rounds, i) for i in range(tasks)]
            results = [f.result() for f in futures]
            ms = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            serial += [digest(rounds, i) for i in range(half, tasks)]
            after = (time.perf_counter() - t) * 1000
            assert results == serial
            serial_ms = before + after
            return {
                "tasks": tasks,
                "ms": ms,
                "serialMs": serial_ms,
                "perTaskMs": serial_ms / tasks,
                "speedup": serial_ms / ms,
                "rounds": rounds,
            }
        run_case("4", case4)

    if 7 in cases:
        def case7():
            docs = [make_doc(1), make_doc(2)]
            data = [random.Random(7).randbytes(1 << 20), random.Random(11).randbytes(1 << 20)]
            payloads = [
                {"doc": docs[0], "bytes": data[0]},
                {"doc": docs[1], "bytes": data[1]},
                {"doc": docs[0], "bytes": data[1]},
                {"doc": docs[1], "bytes": data[0]},
            ]
            expected = [checksum(p) for p in payloads]
            in_flight = config["payloadInFlight"]
            mb_each = (len(json.dumps(docs[0], separators=(",", ":"))) + len(data[0])) / 1e6

            def run(count):
                results = []
                pending = collections.deque()
                for i in range(count):
                    if len(pending) >= in_flight:
                        results.append(pending.popleft().result())
                    pending.append(ex.submit(checksum, payloads[i % len(payloads)]))
                while pending:
                    results.append(pending.popleft().result())
                return results

            t = time.perf_counter()
            run(in_flight * 2)
            warm = (time.perf_counter() - t) * 1000
            count = within_budget(config["payloadTasks"], config["payloadMin"], in_flight * 2 / warm, config["budgetMs"], 50)
            t = time.perf_counter()
            results = run(count)
            ms = (time.perf_counter() - t) * 1000
            assert all(r == expected[i % len(payloads)] for i, r in enumerate(results))
            return {
                "tasks": count,
                "ms": ms,
                "perSecond": count / ms * 1000,
                "mbPerSecond": count * mb_each / (ms / 1000),
                "mbEach": mb_each,
                "note": "bytes pickled (protocol 5) through the executor's pipe",
            }
        run_case("7", case7)

    ex.shutdown(wait=True)
    sys.stdout.write("@@DONE\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
