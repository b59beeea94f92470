#!/usr/bin/env python3
"""What libvirt pays per VM start with each swtpm: swtpm_setup (first start only), then swtpm
socket until its control socket accepts, and the idle process's memory — swtpm 0.7.1 and
TrustedLaunch's drop-ins side by side, same machine, same run.

    python3 scripts/bench-dropin.py --bin .build/release [--runs 10]

Run as root (swtpm_setup's local CA under /var/lib/swtpm-localca). Prints medians.
"""
import argparse, os, shutil, socket, statistics, subprocess, tempfile, time


def wait_connectable(path, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.001)
        finally:
            s.close()
    raise RuntimeError("never listened")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(kind, tlaunch, data, runs):
    setup, start, rss = [], [], []
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        try:
            state = os.path.join(d, "tpm2")
            os.makedirs(state)
            if kind == "swtpm":
                setup_cmd = ["swtpm_setup", "--tpm2", "--tpm-state", state, "--createek", "--create-ek-cert",
                             "--create-platform-cert", "--lock-nvram", "--not-overwrite"]
                sock_cmd = ["swtpm", "socket"]
            else:
                setup_cmd = [tlaunch, "vtpm", "setup", "--data", data, "--tpm2", "--tpm-state", state, "--createek",
                             "--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--not-overwrite"]
                sock_cmd = [tlaunch, "vtpm", "socket", "--data", data]
            t = time.monotonic()
            subprocess.run(setup_cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            setup.append((time.monotonic() - t) * 1000)
            ctrl = os.path.join(d, "ctrl.sock")
            t = time.monotonic()
            p = subprocess.Popen(sock_cmd + ["--ctrl", f"type=unixio,path={ctrl},mode=0600", "--tpmstate", f"dir={state},mode=0600",
                                             "--terminate", "--tpm2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_connectable(ctrl, p)
            start.append((time.monotonic() - t) * 1000)
            time.sleep(0.3)
            rss.append(rss_kib(p.pid))
            p.kill()
            p.wait()
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return statistics.median(setup), statistics.median(start), statistics.median(rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release")
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    tlaunch = os.path.abspath(os.path.join(a.bin, "tlaunch"))
    data = tempfile.mkdtemp(prefix="bench-dropin-data-")
    try:
        print(f"{'':24} {'setup (ms)':>11} {'socket up (ms)':>15} {'idle RSS (KiB)':>15}")
        for kind in ("swtpm", "tlaunch"):
            s, u, r = run(kind, tlaunch, data, a.runs)
            print(f"{kind:24} {s:11.1f} {u:15.1f} {r:15.0f}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
