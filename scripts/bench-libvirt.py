#!/usr/bin/env python3
"""Real VMs as libvirt domains against the platform's own QEMU children, same run: one Trusted
Launch VM from debian-12 on each (`--hypervisor libvirt`, external vTPM backend, and `--hypervisor
qemu`), deployed with a predicted baseline, then started again in turns (one guest at a time); each figure is the CLI's wall
time until the guest's own agent attested (the CLI returns when the platform saw that).

    python3 scripts/bench-libvirt.py --bin .build/release [--runs 3]

Needs root, libvirtd running (scripts/libvirt.sh), QEMU, OVMF and the guest kit.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--bin", default=".build/release")
args = ap.parse_args()
TLAUNCH = os.path.abspath(os.path.join(args.bin, "tlaunch"))

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
data = tempfile.mkdtemp(prefix="tl-bench-libvirt-")
env = dict(os.environ, TLAUNCH_DATA=data, TLAUNCH_SERVER=f"https://127.0.0.1:{port}")
platform = subprocess.Popen([TLAUNCH, "up", "--data", data, "--listen", f"127.0.0.1:{port}", "--no-sample-fleet",
                             "--hypervisor", "libvirt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def cli(*a):
    t = time.monotonic()
    r = subprocess.run([TLAUNCH, *a], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench-libvirt: tlaunch {' '.join(a)} failed: {r.stdout}{r.stderr}")
    return time.monotonic() - t, r.stdout


try:
    for _ in range(600):
        if subprocess.run(["curl", "-sf", "--cacert", f"{data}/tls/ca.pem", f"https://127.0.0.1:{port}/readyz"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    figures = {}
    for hv in ("libvirt", "qemu"):
        took, _ = cli("vm", "create", f"b-{hv}", "--image", "debian-12", "--hypervisor", hv, "--integrity-monitoring", "true",
                      "--baseline", "predicted")
        view = json.loads(cli("vm", "show", f"b-{hv}", "--json")[1])
        vm = view.get("vm", view)
        assert vm["integrityMonitoring"]["bootIntegrity"] == "Healthy", vm
        figures[hv] = {"deploy": took, "start": []}
        cli("vm", "stop", f"b-{hv}")
    for _ in range(args.runs):
        for hv in ("libvirt", "qemu"):
            took, _ = cli("vm", "start", f"b-{hv}")
            figures[hv]["start"].append(took)
            cli("vm", "stop", f"b-{hv}")
    print(f"{'':10} {'deploy → attested':>18} {'start → attested (median, min–max)':>38}")
    for hv, f in figures.items():
        r = f["start"]
        print(f"{hv:10} {f['deploy']:17.1f}s {statistics.median(r):20.1f} s ({min(r):.1f}–{max(r):.1f}, n={len(r)})")
finally:
    for hv in ("libvirt", "qemu"):
        subprocess.run([TLAUNCH, "vm", "delete", f"b-{hv}"], env=env, capture_output=True)
    platform.send_signal(2)
    try:
        platform.wait(timeout=60)
    except subprocess.TimeoutExpired:
        platform.kill()
    shutil.rmtree(data, ignore_errors=True)
