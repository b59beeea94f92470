#!/usr/bin/env python3
"""Real VMs, measured: one Trusted Launch VM from debian-12 on QEMU + OVMF (Secure Boot, SMM),
run by `tlaunch up` with our vTPM and relay, and the same VM (same QEMU command line, same GPT
disk, same variable store) with swtpm as its TPM instead, in the same run.

Figures:
  - deploy -> the guest's own agent enrolled and attested (tlaunch vm create, predicted baseline)
  - restart -> new measured boot attested (tlaunch vm restart)
  - power-on -> the guest's init is up ("TLAUNCH-GUEST: up" on the console), in the platform:
    firmware, shim, grub and kernel measuring into the TPM, and the initramfs read and hashed
  - the same boot with the TPM in a process of its own: swtpm against `tlaunch vtpm socket` (our
    engine as a swtpm drop-in), interleaved run by run: time to init and the TPM process's RSS
  - host memory: QEMU RSS; the platform process with the VM running and stopped

Usage: scripts/bench-realvm.sh [--runs N]   (builds release binaries first)
"""
import argparse, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--bin", default=".build/release")
args = ap.parse_args()

TLAUNCH = os.path.abspath(os.path.join(args.bin, "tlaunch"))
MARKER = b"TLAUNCH-GUEST: up"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait(what, probe, timeout=900, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = probe()
        if v:
            return v
        time.sleep(every)
    sys.exit(f"bench-realvm: gave up waiting for {what}")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def mib(kib):
    return f"{kib / 1024:.0f} MiB" if kib is not None else "?"


def stats(xs):
    return f"{statistics.median(xs):.1f} s (min {min(xs):.1f}, max {max(xs):.1f}, n={len(xs)})"


data = tempfile.mkdtemp(prefix="tl-bench-realvm-")
port = free_port()
env = dict(os.environ, TLAUNCH_DATA=data, TLAUNCH_SERVER=f"https://127.0.0.1:{port}")
platform = subprocess.Popen([TLAUNCH, "up", "--data", data, "--listen", f"127.0.0.1:{port}", "--no-sample-fleet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
swtpm = qemu = None
try:
    def ready():
        try:
            return subprocess.run(["curl", "-sf", "--cacert", f"{data}/tls/ca.pem", f"https://127.0.0.1:{port}/readyz"], capture_output=True).returncode == 0
        except OSError:
            return False
    wait("the platform", ready, timeout=120, every=0.2)

    def cli(*a):
        t = time.monotonic()
        r = subprocess.run([TLAUNCH, *a], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench-realvm: tlaunch {' '.join(a)} failed: {r.stdout}{r.stderr}")
        return time.monotonic() - t, r.stdout

    vm = "bench"
    folder = os.path.join(data, "vms", vm)
    deploy, out = cli("vm", "create", vm, "--image", "debian-12", "--hypervisor", "qemu", "--integrity-monitoring", "true",
                      "--baseline", "predicted")
    _, shown = cli("vm", "show", vm, "--json")
    view = json.loads(shown)
    vmjson = view.get("vm", view)
    assert vmjson["integrityMonitoring"]["bootIntegrity"] == "Healthy", vmjson
    print(f"deploy -> attested (Healthy, predicted baseline met): {deploy:.1f} s (first deploy: builds the guest kit and the GPT disk)")

    restarts, ours_up, ours_attested = [], [], []
    for i in range(args.runs):
        old = read(os.path.join(folder, "qemu.pid"))
        t0 = time.monotonic()
        proc = subprocess.Popen([TLAUNCH, "vm", "restart", vm], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("the new QEMU", lambda: (lambda p: p and p != old)(read(os.path.join(folder, "qemu.pid"))))
        launched = time.monotonic()
        wait("the guest's init", lambda: MARKER in read(os.path.join(folder, "console.log")))
        ours_up.append(time.monotonic() - launched)
        wait("the agent's verdict", lambda: b"Attestation PASSED" in read(os.path.join(folder, "console.log")))
        ours_attested.append(time.monotonic() - launched)
        if proc.wait() != 0:
            sys.exit("bench-realvm: tlaunch vm restart failed")
        restarts.append(time.monotonic() - t0)

    qpid = int(read(os.path.join(folder, "qemu.pid")).strip())
    qemu_rss_ours = rss_kib(qpid)
    platform_running = rss_kib(platform.pid)
    cmdline = [a.decode() for a in read(f"/proc/{qpid}/cmdline").split(b"\0") if a]
    cli("vm", "stop", vm)
    time.sleep(2)
    platform_stopped = rss_kib(platform.pid)

    # The same VM with swtpm: QEMU's command line as the platform ran it, with swtpm's control
    # socket, and its own copies of the files QEMU writes.
    work = tempfile.mkdtemp(prefix="tl-bench-swtpm-")
    shutil.copy(os.path.join(folder, "OVMF_VARS.fd"), os.path.join(work, "vars.fd"))
    ctrl = os.path.join(work, "swtpm.sock")
    console = os.path.join(work, "console.log")
    pidfile = os.path.join(work, "qemu.pid")
    rewritten = []
    for a in cmdline:
        a = re.sub(r"^file:.*console\.log$", f"file:{console}", a)
        a = re.sub(r"socket,id=chrtpm,path=.*$", f"socket,id=chrtpm,path={ctrl}", a)
        a = re.sub(r"^unix:.*qmp\.sock,", f"unix:{work}/qmp.sock,", a)
        a = re.sub(r"socket,id=agent,path=[^,]*,", f"socket,id=agent,path={work}/agent.sock,", a)
        a = re.sub(r"file=[^,]*OVMF_VARS\.fd$", f"file={work}/vars.fd", a)
        a = re.sub(r".*qemu\.pid$", pidfile, a)
        a = a.replace("tlaunch-bench", "swtpm-bench")
        rewritten.append(a)
    with open(os.path.join(work, "host.key"), "wb") as f:
        f.write(os.urandom(32))
    peers = {
        "swtpm": lambda state: ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl", f"type=unixio,path={ctrl}"],
        "tlaunch vtpm socket": lambda state: [TLAUNCH, "vtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl", f"type=unixio,path={ctrl}",
                                              "--server", f"type=unixio,path={work}/data.sock", "--key", f"file={work}/host.key",
                                              "--ca", f"dir={work}/ca", "--data", work],
    }
    up = {k: [] for k in peers}
    tpm_rss, qemu_rss = {}, {}
    for i in range(args.runs):
        for name, command in peers.items():   # interleaved: both see the same machine
            state = os.path.join(work, f"tpm-{i}-{name.split()[0]}")
            os.makedirs(state)
            swtpm = subprocess.Popen(command(state), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait(f"{name}'s socket", lambda: os.path.exists(ctrl) or swtpm.poll() is not None, timeout=60)
            if swtpm.poll() is not None:
                sys.exit(f"bench-realvm: {name} exited before listening")
            for f in (console, pidfile):
                if os.path.exists(f):
                    os.remove(f)
            qemu = subprocess.Popen(rewritten, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait(f"QEMU with {name}", lambda: os.path.exists(pidfile) or qemu.poll() is not None)
            launched = time.monotonic()
            wait(f"the guest's init ({name})", lambda: MARKER in read(console) or qemu.poll() is not None)
            if qemu.poll() is not None:
                sys.exit(f"bench-realvm: QEMU with {name} exited: {read(console)[-800:]}")
            up[name].append(time.monotonic() - launched)
            tpm_rss[name], qemu_rss[name] = rss_kib(swtpm.pid), rss_kib(qemu.pid)
            qemu.kill(); qemu.wait(); qemu = None
            swtpm.kill(); swtpm.wait(); swtpm = None
            if os.path.exists(ctrl):
                os.remove(ctrl)
    shutil.rmtree(work, ignore_errors=True)

    accel = "kvm" if "kvm" in cmdline else "tcg"
    print(f"accelerator: {accel}")
    print(f"restart -> new measured boot attested:        {stats(restarts)}")
    print(f"power-on -> guest init up, our vTPM:           {stats(ours_up)}")
    for name in peers:
        print(f"power-on -> guest init up, {name + ' process:':33s} {stats(up[name])}   (TPM process RSS {mib(tpm_rss[name])}, QEMU RSS {mib(qemu_rss[name])})")
    print(f"power-on -> the agent's attestation PASSED:    {stats(ours_attested)}")
    print(f"QEMU RSS (1 GiB guest) under the platform: {mib(qemu_rss_ours)}")
    print(f"platform process RSS with the VM running: {mib(platform_running)}; after stopping it: {mib(platform_stopped)}")
finally:
    for p in (qemu, swtpm):
        if p and p.poll() is None:
            p.kill()
    platform.send_signal(signal.SIGINT)
    try:
        platform.wait(timeout=60)
    except subprocess.TimeoutExpired:
        platform.kill()
    shutil.rmtree(data, ignore_errors=True)
