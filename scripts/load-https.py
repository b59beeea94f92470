#!/usr/bin/env python3
"""A bounded load test of the platform over HTTPS, as its users load it at once.

`tlaunch up` (HTTPS with its platform CA, simulated hypervisor) with N monitored VMs, then for
DURATION seconds, concurrently:
  - attesters: POST /v1/vms/{vm}/attest — each makes the VM's agent attest over HTTPS pinned to
    the platform CA (nonce, quote of its vTPM, event log, verification, token);
  - readers:   GET /v1/vms, /v1/alerts, /v1/vms/{vm}/overview, the dashboard's fleet page;
  - churn:     create a VM (deploy + first boot + attestation) and delete it, in a loop.
Every request must succeed (2xx/3xx); the platform's RSS is sampled every second and must stay
flat (last quarter's median within 20 % + 16 MiB of the second quarter's).

Usage: scripts/load-https.py --bin .build/release [--vms 20] [--duration 60] [--attesters 4]
       [--readers 4]   (scripts/load-https.sh builds release and runs it)
Prints one JSON object with the figures; exits 1 on any error or growing memory.
"""
import argparse, json, os, shutil, socket, ssl, statistics, subprocess, tempfile, threading, time
import urllib.request, urllib.error

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".build/release")
ap.add_argument("--vms", type=int, default=20)
ap.add_argument("--duration", type=int, default=60)
ap.add_argument("--attesters", type=int, default=4)
ap.add_argument("--readers", type=int, default=4)
args = ap.parse_args()

TLAUNCH = os.path.abspath(os.path.join(args.bin, "tlaunch"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


data = tempfile.mkdtemp(prefix="tl-load-")
port = free_port()
base = f"https://127.0.0.1:{port}"
log = open(os.path.join(data, "..", os.path.basename(data) + ".log"), "w")
platform = subprocess.Popen([TLAUNCH, "up", "--data", data, "--listen", f"127.0.0.1:{port}", "--no-sample-fleet",
                             "--hypervisor", "simulated", "--log-level", "error"], stdout=log, stderr=log)
ctx = None
token = None


def request(method, path, body=None, timeout=300):
    data_ = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data_, method=method)
    r.add_header("Authorization", f"Bearer {token}")
    if data_ is not None:
        r.add_header("Content-Type", "application/json")
    t = time.monotonic()
    try:
        with urllib.request.urlopen(r, context=ctx, timeout=timeout) as resp:
            resp.read()
            return resp.status, time.monotonic() - t
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - t


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


failures = []
latencies = {"attest": [], "read": [], "create": [], "delete": []}
lock = threading.Lock()
try:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(data, "tls", "ca.pem")) and os.path.exists(os.path.join(data, "server.url")):
            try:
                ctx = ssl.create_default_context(cafile=os.path.join(data, "tls", "ca.pem"))
                with urllib.request.urlopen(base + "/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
        time.sleep(0.2)
    else:
        raise SystemExit("the platform did not become ready")
    token = open(os.path.join(data, "admin.token")).read().strip()
    vms = [f"load-{i:03d}" for i in range(args.vms)]
    for vm in vms:
        s, _ = request("POST", "/v1/vms", {"name": vm, "integrityMonitoring": True})
        if s != 201:
            raise SystemExit(f"deploying {vm}: HTTP {s}")

    stop = time.monotonic() + args.duration

    def record(kind, status, seconds, what):
        with lock:
            latencies[kind].append(seconds)
            if not (200 <= status < 400):
                failures.append(f"{what}: HTTP {status}")

    def attester(n):
        i = n
        while time.monotonic() < stop:
            vm = vms[i % len(vms)]
            s, t = request("POST", f"/v1/vms/{vm}/attest")
            record("attest", s, t, f"attest {vm}")
            i += args.attesters

    def reader(n):
        paths = ["/v1/vms", "/v1/alerts", f"/v1/vms/{vms[n % len(vms)]}/overview", "/"]
        i = 0
        while time.monotonic() < stop:
            p = paths[i % len(paths)]
            s, t = request("GET", p)
            record("read", s, t, f"GET {p}")
            i += 1

    def churn():
        i = 0
        while time.monotonic() < stop:
            name = f"churn-{i:04d}"
            s, t = request("POST", "/v1/vms", {"name": name, "integrityMonitoring": True})
            record("create", s, t, f"create {name}")
            s, t = request("DELETE", f"/v1/vms/{name}")
            record("delete", s, t, f"delete {name}")
            i += 1

    samples = []

    def sampler():
        while time.monotonic() < stop:
            samples.append(rss_kib(platform.pid))
            time.sleep(1)

    threads = [threading.Thread(target=attester, args=(n,)) for n in range(args.attesters)]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(args.readers)]
    threads += [threading.Thread(target=churn), threading.Thread(target=sampler)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    def pct(xs, q):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1) if xs else None

    quarter = max(1, len(samples) // 4)
    second, last = samples[quarter:2 * quarter], samples[-quarter:]
    flat = not second or statistics.median(last) <= statistics.median(second) * 1.2 + 16 * 1024
    out = {
        "seconds": round(elapsed, 1), "vms": args.vms, "attesters": args.attesters, "readers": args.readers,
        "requests": sum(len(v) for v in latencies.values()), "errors": len(failures), "first_errors": failures[:5],
        "attestations_per_s": round(len(latencies["attest"]) / elapsed, 1),
        "reads_per_s": round(len(latencies["read"]) / elapsed, 1),
        "vms_created_and_deleted": len(latencies["delete"]),
        "attest_ms_p50": pct(latencies["attest"], 0.5), "attest_ms_p99": pct(latencies["attest"], 0.99),
        "read_ms_p50": pct(latencies["read"], 0.5), "read_ms_p99": pct(latencies["read"], 0.99),
        "create_ms_p50": pct(latencies["create"], 0.5),
        "rss_mib_start": round(samples[0] / 1024, 1) if samples else None,
        "rss_mib_q2_median": round(statistics.median(second) / 1024, 1) if second else None,
        "rss_mib_last_median": round(statistics.median(last) / 1024, 1) if last else None,
        "rss_mib_max": round(max(samples) / 1024, 1) if samples else None,
        "memory_flat": flat,
    }
    print(json.dumps(out, indent=1))
    ok = not failures and flat
finally:
    platform.terminate()
    try:
        platform.wait(timeout=60)
    except subprocess.TimeoutExpired:
        platform.kill()
    shutil.rmtree(data, ignore_errors=True)
raise SystemExit(0 if ok else 1)
