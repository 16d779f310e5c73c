#!/usr/bin/env python3
"""The measuring half of scripts/bench.sh, which builds the binaries, starts
the server and runs this with the paths and DSNs in the environment:

  SERA_BIN    the sera binary to measure (the default build)
  SMALL_BIN   the small build, for its size and footprint (optional)
  STAMP_BIN   examples/bench_stamp.rs, built: the command sera runs in the
              contention, scale and footprint runs
  WORK        a directory for configs, logs and stamp files
  DSN_TCP     the server over TCP; DSN_UNIX, DSN_TLS (with TLS_CA) optional

and the SERA_BENCH_* knobs that scripts/bench.sh documents. It prints the
markdown tables on stdout and exits 1 if a budget or a correctness check
fails.
"""
import os, random, sys, time, json, signal, threading, subprocess, datetime, platform, bisect

SERA = os.environ["SERA_BIN"]
STAMP = os.environ["STAMP_BIN"]
WORK = os.environ["WORK"]
DSN_TCP = os.environ["DSN_TCP"]
DSN_UNIX = os.environ.get("DSN_UNIX") or ""
DSN_TLS = os.environ.get("DSN_TLS") or ""
SMALL = os.environ.get("SMALL_BIN") or ""
ROUNDS = int(os.environ.get("SERA_BENCH_ROUNDS", "200"))
RACERS = int(os.environ.get("SERA_BENCH_RACERS", "6"))
RACE_RUNS = int(os.environ.get("SERA_BENCH_RACE_RUNS", "120"))
WAITERS = int(os.environ.get("SERA_BENCH_WAITERS", "200"))
IDLE = float(os.environ.get("SERA_BENCH_IDLE_SECONDS", "3"))
FLEET = os.environ.get("SERA_BENCH_FLEET", "1") != "0"
FLEET_SIZES = [int(n) for n in os.environ.get("SERA_BENCH_FLEET_SIZES", "300,1000").split(",") if n.strip()]
FLEET_WORK_MS = os.environ.get("SERA_BENCH_FLEET_WORK_MS", "20")  # how long each command holds the lock

TRUE = "/usr/bin/true" if os.path.exists("/usr/bin/true") else "/bin/true"
TICK = os.sysconf("SC_CLK_TCK")

BUDGET_SIZE_KIB = 680  # as scripts/build-static.sh
BUDGET_TLS_SIZE_KIB = 2048
BUDGET_HWM_KIB = 768  # issue 24: peak RSS of the small build while the command runs
BUDGET_RATIO = 2.6  # issue 6, both transports
GOAL_RATIO = 2.2  # issue 24: the full build over TCP
GOAL_HANDOFF_MS = 0.65  # issue 24: contended hand-off p50
GOAL_VS_GO = 2.5  # issue 24: contended throughput over the Go sera's
GOAL_LOGINS_PER_RUN = 2  # issue 24: a herd of 300 on 20 ms jobs, the room on
GOAL_HERD = 300

failures = []  # correctness problems (not budgets)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_dsn(dsn):
    """user, password, ('tcp', host, port) or ('unix', path) from a go-sql-driver DSN."""
    head = dsn[: dsn.rfind("/")]
    at = head.rfind("@")
    cred, addr = (head[:at], head[at + 1 :]) if at >= 0 else ("", head)
    user, _, password = cred.partition(":")
    proto, _, rest = addr.partition("(")
    address = rest[:-1] if rest.endswith(")") else rest
    if proto == "unix":
        return user, password, ("unix", address)
    host, port = "127.0.0.1", 3306
    if address:
        if address.startswith("["):
            host, _, p = address[1:].partition("]")
            port = int(p[1:]) if p.startswith(":") else 3306
        elif ":" in address:
            host, p = address.rsplit(":", 1)
            port = int(p)
        else:
            host = address
    return user, password, ("tcp", host, port)


def client_argv(dsn):
    user, password, addr = parse_dsn(dsn)
    argv = ["mariadb", "--no-defaults", f"-u{user}"]
    if password:
        argv.append(f"-p{password}")
    if addr[0] == "unix":
        argv += ["--protocol=socket", f"--socket={addr[1]}"]
    else:
        argv += ["--protocol=tcp", f"-h{addr[1]}", f"-P{addr[2]}"]
    return argv


def which(name):
    for d in os.environ.get("PATH", "").split(":"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


CLIENT = which("mariadb") or which("mysql")
# The Go sera, for the rows issue 24 compares with it. It reads only
# /etc/sera.json, so it is run only against SERA_BENCH_DSN, the server that
# file must name.
GO_SERA = os.environ.get("SERA_BENCH_GO_BIN") or ""
if not GO_SERA:
    GO_SERA_NOTE = "not measured: no Go sera binary (SERA_BENCH_GO_BIN)"
    if not which("go"):
        GO_SERA_NOTE += "; no Go toolchain here, and the Go sera's last source is not reachable to build one"
elif not os.environ.get("SERA_BENCH_DSN"):
    GO_SERA_NOTE = ("not measured: SERA_BENCH_GO_BIN needs SERA_BENCH_DSN (the Go sera reads only "
                    "/etc/sera.json, which must name the bench's server)")
    GO_SERA = ""
else:
    GO_SERA_NOTE = ""


def sql(query):
    argv = client_argv(DSN_TCP)
    argv[0] = CLIENT
    out = subprocess.run(argv + ["-N", "-B", "-e", query], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"mariadb client: {out.stderr.strip()}")
    return out.stdout.strip()


def write_config(name, dsn, **keys):
    path = os.path.join(WORK, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dict({"server": dsn}, **keys), f)
    return path


CFG_TCP = write_config("sera-tcp.json", DSN_TCP)
CFG_UNIX = write_config("sera-unix.json", DSN_UNIX) if DSN_UNIX else None
CFG_TLS = write_config("sera-tls.json", DSN_TLS, tls_ca=os.environ["TLS_CA"]) if DSN_TLS else None
# Every waiter connected, blocked in GET_LOCK: as before the waiting room of
# issue 15, and as the Go sera waits.
CFG_NO_ROOM = write_config("sera-tcp-no-room.json", DSN_TCP, waiting_room=0)

DEVNULL_OUT = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
ERRLOG = os.path.join(WORK, "stderr.log")
QUIET = DEVNULL_OUT + [(os.POSIX_SPAWN_OPEN, 2, ERRLOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)]


def spawn(argv, env=None, actions=QUIET, group=None):
    """Start argv; with group (0 for a new one), in that process group."""
    # Python ignores SIGPIPE, and an ignored signal survives exec: undo that.
    extra = {} if group is None else {"setpgroup": group}
    return os.posix_spawn(argv[0], argv, env if env is not None else os.environ, file_actions=actions,
                          setsigdef=(signal.SIGPIPE,), **extra)


def run(argv, env=None):
    """Wall ms, CPU ms (user+sys of the process and the children it reaped), status."""
    t0 = time.perf_counter_ns()
    pid = spawn(argv, env)
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    return (t1 - t0) / 1e6, (ru.ru_utime + ru.ru_stime) * 1e3, os.waitstatus_to_exitcode(status)


PR_SET_CHILD_SUBREAPER = 36


def subreaper(on):
    """While on, what a run leaves behind comes to this process: sera's
    keeper, which may still be exiting when sera has exited."""
    import ctypes
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def run_all(argv):
    """As run, with the CPU of what the run left behind (as subreaper) too:
    sera's front exits once its keeper says how the run ends, without
    reaping it, so the keeper's CPU is not in the front's rusage. Wall time
    ends with the front, as a caller sees it. Only for the interleaved runs,
    where nothing else of this process's runs meanwhile."""
    wall, cpu, code = run(argv)
    while True:
        try:
            _, _, ru = os.wait4(-1, 0)
        except ChildProcessError:
            return wall, cpu, code
        cpu += (ru.ru_utime + ru.ru_stime) * 1e3


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def kib(status, key):
    v = status.get(key, "0 kB").split()[0]
    return int(v)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def cpu_ns(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def switches(status):
    return int(status.get("voluntary_ctxt_switches", 0)) + int(status.get("nonvoluntary_ctxt_switches", 0))


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            return []
    except OSError:
        return []
    found = []  # kernels without CONFIG_PROC_CHILDREN
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def read_stamps(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    rows.append((parts[0], int(parts[1]), int(parts[2])))
    rows.sort(key=lambda r: r[1])
    return rows


def overlaps(rows):
    return sum(1 for a, b in zip(rows, rows[1:]) if b[1] < a[2])


# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


server_version = sql("SELECT VERSION()")
size_bytes = os.path.getsize(SERA)
small_bytes = os.path.getsize(SMALL) if SMALL else 0
print("## Machine\n")
print(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs (nproc {len(os.sched_getaffinity(0))})")
print(f"- kernel: {platform.system()} {platform.release()}")
print(f"- server: {server_version}, loopback")
print(f"- sera: {SERA} ({size_bytes} bytes)")
try:
    load = open("/proc/loadavg").read().split()[:3]
    print(f"- load average at start: {' '.join(load)}")
except OSError:
    pass
print()

# ---------------------------------------------------------------------------
# Interleaved runs
# ---------------------------------------------------------------------------
variants = [("bare `true`", [TRUE])]
variants.append(("`sera 5 true`, TCP", [SERA, "--config", CFG_TCP, "5", TRUE]))
if CFG_UNIX:
    variants.append(("`sera 5 true`, unix socket", [SERA, "--config", CFG_UNIX, "5", TRUE]))
if CFG_TLS:
    variants.append(("`sera 5 true`, TCP with TLS", [SERA, "--config", CFG_TLS, "5", TRUE]))
if GO_SERA:
    variants.append(("the Go sera: `sera 5 true`, TCP", [GO_SERA, "5", TRUE]))
if CLIENT:
    variants.append(("`mariadb -e \"SELECT GET_LOCK('x',5)\"`, TCP",
                     [CLIENT] + client_argv(DSN_TCP)[1:] + ["-N", "-B", "-e", "SELECT GET_LOCK('x',5)"]))

log(f"interleaved: {ROUNDS} rounds of {len(variants)} variants")
for name, argv in variants:  # warm up caches, and check each variant works
    for _ in range(5):
        _, _, code = run(argv)
    if code != 0:
        failures.append(f"{name} exits {code} (see {ERRLOG})")
walls = {name: [] for name, _ in variants}
cpus = {name: [] for name, _ in variants}
codes = {name: set() for name, _ in variants}
subreaper(True)
for r in range(ROUNDS):
    k = r % len(variants)
    for name, argv in variants[k:] + variants[:k]:
        w, c, code = run_all(argv)
        walls[name].append(w)
        cpus[name].append(c)
        codes[name].add(code)
subreaper(False)
for name in codes:
    if codes[name] != {0}:
        failures.append(f"{name}: exit codes {sorted(codes[name])}")

base_w = pct(walls[variants[0][0]], 50)
base_c = pct(cpus[variants[0][0]], 50)
print(f"## Interleaved runs ({ROUNDS} rounds, each runs every variant once, order rotated)\n")
print("| variant | wall p50 | wall p10–p90 | wall × true | CPU p50 | CPU p10–p90 | CPU × true |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, _ in variants:
    w, c = walls[name], cpus[name]
    print(f"| {name} | {pct(w, 50):.2f} ms | {pct(w, 10):.2f}–{pct(w, 90):.2f} ms | {pct(w, 50) / base_w:.2f} "
          f"| {pct(c, 50):.2f} ms | {pct(c, 10):.2f}–{pct(c, 90):.2f} ms | {pct(c, 50) / base_c:.2f} |")
print()
print("Wall: from posix_spawn to wait4 in the harness. CPU: user+sys from wait4's rusage "
      "(the process and the children it reaped, so sera's row includes `true`), plus what the run "
      "left for the harness to reap as subreaper (sera's keeper, which its front does not wait for).\n")

# ---------------------------------------------------------------------------
# Contention
# ---------------------------------------------------------------------------
def race(command, stamps):
    """RACERS threads run `command 30 <stamp>` in a loop until RACE_RUNS runs
    have started, all on one lock: runs per second and the hand-offs."""
    counter = {"started": 0}
    counter_lock = threading.Lock()
    codes = []

    def racer(i):
        env = dict(os.environ, STAMP_ID=f"r{i}")
        while True:
            with counter_lock:
                if counter["started"] >= RACE_RUNS:
                    return
                counter["started"] += 1
            _, _, code = run(command + ["30", STAMP, stamps], env)
            codes.append(code)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    t0 = time.time_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.time_ns()
    rows = read_stamps(stamps)
    span = (rows[-1][2] - rows[0][1]) / 1e9 if rows else float("nan")
    return {
        "rows": rows,
        "codes": codes,
        "handoffs": [(b[1] - a[2]) / 1e6 for a, b in zip(rows, rows[1:])],
        "overlaps": overlaps(rows),
        "per_s": len(rows) / span,
        "per_s_phase": len(rows) / ((t1 - t0) / 1e9),
    }


# ---------------------------------------------------------------------------
# Where a contended hand-off's time goes, from a capture of the server's port
# ---------------------------------------------------------------------------
COM_QUIT = b"\x01\x00\x00\x00\x01"  # a whole COM_QUIT packet


def start_capture(path):
    """tcpdump of the bench server's TCP port, or a reason why not."""
    addr = parse_dsn(DSN_TCP)[2]
    if addr[0] != "tcp":
        return None, "not measured: the bench's server is not over TCP"
    if not which("tcpdump") or os.geteuid() != 0:
        return None, "not measured: needs tcpdump and root (apt-get install tcpdump)"
    proc = subprocess.Popen(["tcpdump", "-i", "any" if addr[1] not in ("127.0.0.1", "localhost") else "lo",
                             "-U", "--immediate-mode", "-B", "16384", "-w", path, f"tcp port {addr[2]}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # tcpdump says "listening on" once it captures.
    line = proc.stderr.readline().decode(errors="replace")
    if "listening" not in line:
        proc.kill()
        return None, f"not measured: tcpdump: {line.strip()}"
    return proc, ""


def stop_capture(proc, path):
    """Stop tcpdump once its file has stopped growing: what it has not
    written yet when it is stopped is lost."""
    size, deadline = -1, time.time() + 10
    while time.time() < deadline:
        time.sleep(0.3)
        now = os.path.getsize(path) if os.path.exists(path) else 0
        if now == size:
            break
        size = now
    proc.terminate()
    proc.wait()


def read_capture(path):
    """Per client port, the (ns, 'c' or 's', payload) of every segment with
    data. Linux cooked (113, 276) or Ethernet (1) framing, IPv4 or IPv6."""
    data = open(path, "rb").read()
    linktype = int.from_bytes(data[20:24], "little")
    skip = {1: 14, 113: 16, 276: 20}.get(linktype, 14)
    port = parse_dsn(DSN_TCP)[2][2]
    streams, off = {}, 24
    while off + 16 <= len(data):
        sec, usec, incl = (int.from_bytes(data[off + k:off + k + 4], "little") for k in (0, 4, 8))
        pkt, off = data[off + 16:off + 16 + incl], off + 16 + incl
        ip = pkt[skip:]
        if not ip:
            continue
        iphl = (ip[0] & 15) * 4 if ip[0] >> 4 == 4 else 40
        tcp = ip[iphl:]
        if len(tcp) < 20:
            continue
        sport, dport = int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload:
            client, who = (sport, "c") if dport == port else (dport, "s")
            streams.setdefault(client, []).append((sec * 10**9 + usec * 1000, who, payload))
    return streams


def handoff_parts(rows, streams):
    """Split each hand-off (one command's end to the next one's start, from
    the stamps) at two moments on the wire: the holder's COM_QUIT, and the
    server's last reply before the next holder's COM_QUIT (its grant). ms."""
    quits, grants = [], []
    for segments in streams.values():
        for k, (t, who, payload) in enumerate(segments):
            if who == "c" and payload.endswith(COM_QUIT):
                quits.append(t)
                replies = [s for s in segments[:k] if s[1] == "s"]
                if replies:
                    grants.append(replies[-1][0])
    quits.sort()
    grants.sort()
    parts = {"holder": [], "server": [], "waiter": []}
    for a, b in zip(rows, rows[1:]):
        end, start = a[2], b[1]
        q = bisect.bisect_left(quits, end)
        if q == len(quits) or quits[q] > start:
            continue
        g = bisect.bisect_left(grants, quits[q])
        if g == len(grants) or grants[g] > start:
            continue
        parts["holder"].append((quits[q] - end) / 1e6)
        parts["server"].append((grants[g] - quits[q]) / 1e6)
        parts["waiter"].append((start - grants[g]) / 1e6)
    return parts


log(f"contention: {RACERS} racers, {RACE_RUNS} runs")
contenders = [("sera", [SERA, "--config", CFG_TCP])] + ([("Go sera", [GO_SERA])] if GO_SERA else [])
races = {}
for who, command in contenders:
    races[who] = race(command, os.path.join(WORK, f"race-{who.replace(' ', '-')}.stamps"))
    r = races[who]
    if len(r["rows"]) != RACE_RUNS or any(c != 0 for c in r["codes"]):
        failures.append(f"contention ({who}): {len(r['rows'])} of {RACE_RUNS} runs recorded, "
                        f"exit codes {sorted(set(r['codes']))}")
    if r["overlaps"]:
        failures.append(f"contention ({who}): {r['overlaps']} runs overlapped the previous one (two holders at once!)")
# The split comes from a race of its own: tcpdump takes CPU from the racers,
# so the figures above are measured without it.
capture_path = os.path.join(WORK, "race.pcap")
capture, capture_note = start_capture(capture_path)
parts = None
if capture:
    captured = race(contenders[0][1], os.path.join(WORK, "race-captured.stamps"))
    stop_capture(capture, capture_path)
    if captured["overlaps"]:
        failures.append(f"contention (captured): {captured['overlaps']} runs overlapped the previous one")
    parts = handoff_parts(captured["rows"], read_capture(capture_path))
handoffs = races["sera"]["handoffs"]
race_overlaps = races["sera"]["overlaps"]
race_vs_go = races["sera"]["per_s"] / races["Go sera"]["per_s"] if "Go sera" in races else None
print(f"## Contention ({RACERS} racers, {RACE_RUNS} serialized runs of `sera 30 <stamp>` over TCP)\n")
print("| measure | " + " | ".join(races) + " |")
print("| --- | " + " | ".join("---:" for _ in races) + " |")
for name, fmt in [
    ("contended throughput: runs per second (first start to last end)", lambda r: f"{r['per_s']:.0f}"),
    ("runs per second (whole phase, incl. spawn of the first)", lambda r: f"{r['per_s_phase']:.0f}"),
    ("hand-off, holder's exit → next command's start, p50", lambda r: f"{pct(r['handoffs'], 50):.2f} ms"),
    ("hand-off p10–p90", lambda r: f"{pct(r['handoffs'], 10):.2f}–{pct(r['handoffs'], 90):.2f} ms"),
    ("hand-off max", lambda r: f"{max(r['handoffs'], default=float('nan')):.2f} ms"),
    ("overlapping runs (must be 0)", lambda r: f"{r['overlaps']}"),
]:
    print(f"| {name} | " + " | ".join(fmt(r) for r in races.values()) + " |")
print(f"| contended throughput × the Go sera's | "
      + (f"{race_vs_go:.2f} ×" if race_vs_go else GO_SERA_NOTE) + " |" + " |" * (len(races) - 1))
print()

print("Where a hand-off's time goes (sera), in a second race of as many runs, captured: each "
      "hand-off split where the capture of the server's port sees the holder's `COM_QUIT` and the "
      "server's grant to the next holder (tcpdump's own CPU makes this race slower than the one above):\n")
if parts and parts["holder"]:
    print("| part of the hand-off | p10 | p50 | p90 |")
    print("| --- | ---: | ---: | ---: |")
    for key, name in [("holder", "the holder's command ends → its `COM_QUIT` on the wire (reap, release)"),
                      ("server", "`COM_QUIT` → the grant on the wire (the server)"),
                      ("waiter", "the grant → the next command's start (read, spawn, `execve`, the command's own start)")]:
        v = parts[key]
        print(f"| {name} | {pct(v, 10):.3f} ms | {pct(v, 50):.3f} ms | {pct(v, 90):.3f} ms |")
    unsplit = len(captured["rows"]) - 1 - len(parts["holder"])
    print(f"\n{len(parts['holder'])} hand-offs split"
          + (f"; for {unsplit} more the capture shows no `COM_QUIT` and grant between the two commands"
             if unsplit else "") + ".\n")
else:
    print((capture_note or "not measured: the capture had no hand-off") + "\n")

# ---------------------------------------------------------------------------
# A semaphore's idle slots
# ---------------------------------------------------------------------------
def slot_gaps(slots, runs, stamps):
    """One sera holds a slot of `sera --slots N 30 <stamp>` for 2 s; then
    `runs` more start at once on 20 ms jobs, the waiting room off (no retry
    from outside takes a freed slot). The first in line waits on one slot,
    often the long-held one, and must notice the others as they free: its
    beat is what leaves them idle. The k-th end lets the (k+N)-th start in:
    the gaps between them, in ms, with the most running at once."""
    argv = [SERA, "--config", CFG_NO_ROOM, "--slots", str(slots), "30", STAMP, stamps]
    long = spawn(argv, dict(os.environ, STAMP_ID="long", STAMP_SLEEP_MS="2000"))
    deadline = time.time() + 10
    while not children(long) and time.time() < deadline:
        time.sleep(0.005)
    pids = [long] + [spawn(argv, dict(os.environ, STAMP_ID=f"s{i}", STAMP_SLEEP_MS="20"))
                     for i in range(runs)]
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    rows = read_stamps(stamps)
    starts = sorted(r[1] for r in rows)
    ends = sorted(r[2] for r in rows)
    events = sorted([(e, -1) for e in ends] + [(b, 1) for b in starts])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    gaps = [(starts[k + slots] - ends[k]) / 1e6 for k in range(len(ends) - slots)]
    # Slot time left idle while seras still waited (up to the last start),
    # per freed slot: a slot idle for a whole beat shows here, where the
    # gaps above only see the slot that keeps turning over.
    idle = 0
    now, last = 0, None
    for t, step in events:
        if last is not None and t <= starts[-1]:
            idle += (slots - now) * (t - last)
        now += step
        last = t
    freed = max(len(rows) - slots, 1)
    return {"gaps": gaps, "idle_ms": idle / 1e6 / freed, "most": most, "runs": len(rows), "codes": codes}


SLOT_SLOTS, SLOT_RUNS = 2, 20
log(f"slots: {SLOT_RUNS} seras at once on {SLOT_SLOTS} slots, one held long")
sg = slot_gaps(SLOT_SLOTS, SLOT_RUNS, os.path.join(WORK, "slots.stamps"))
if sg["runs"] != SLOT_RUNS + 1 or any(c != 0 for c in sg["codes"]) or sg["most"] > SLOT_SLOTS:
    failures.append(f"slots: {sg['runs']} of {SLOT_RUNS} runs recorded, at most {sg['most']} at once, "
                    f"exit codes {sorted(set(sg['codes']))}")
print(f"## A semaphore's idle slots (`--slots {SLOT_SLOTS}`, one held 2 s, then {SLOT_RUNS} seras at once "
      "on 20 ms jobs, the waiting room off)\n")
print("| measure | sera |")
print("| --- | ---: |")
print(f"| a freed slot idle while others wait (end → next start), p50 | {pct(sg['gaps'], 50):.1f} ms |")
print(f"| the same, p90 / max | {pct(sg['gaps'], 90):.1f} / {max(sg['gaps'], default=float('nan')):.1f} ms |")
print(f"| slot time idle while others wait, per freed slot (mean) | {sg['idle_ms']:.1f} ms |")
print(f"| most running at once (must be ≤ {SLOT_SLOTS}) | {sg['most']} |")
print()

# ---------------------------------------------------------------------------
# Scale: many waiters on one lock
# ---------------------------------------------------------------------------
log(f"scale: {WAITERS} waiters")
scale_file = os.path.join(WORK, "scale.stamps")
go_file = os.path.join(WORK, "scale.go")
# Waiters blocked in GET_LOCK, all connected: what each costs while it waits.
# With the waiting room (issue 15) all but 16 would wait outside and wake now
# and then to retry, by design; the fleet section below measures that.
holder = spawn([SERA, "--config", CFG_NO_ROOM, "120", STAMP, scale_file],
               dict(os.environ, STAMP_ID="holder", STAMP_WAIT_FILE=go_file))
deadline = time.time() + 10
while not children(holder) and time.time() < deadline:
    time.sleep(0.01)
if not children(holder):
    failures.append("scale: the holder never started its command")
waiters = []
for i in range(WAITERS):
    waiters.append(spawn([SERA, "--config", CFG_NO_ROOM, "120", STAMP, scale_file],
                         dict(os.environ, STAMP_ID=f"w{i}")))
waiting = 0
deadline = time.time() + 30
while time.time() < deadline:
    waiting = int(sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT GET_LOCK(%'"))
    if waiting >= WAITERS:
        break
    time.sleep(0.1)
if waiting < WAITERS:
    failures.append(f"scale: only {waiting} of {WAITERS} waiters reached GET_LOCK")
time.sleep(0.2)
before = {p: (cpu_ticks(p), cpu_ns(p), switches(proc_status(p))) for p in waiters}
time.sleep(IDLE)
statuses = {p: proc_status(p) for p in waiters}
after = {p: (cpu_ticks(p), cpu_ns(p), switches(statuses[p])) for p in waiters}
idle_ticks = sum(after[p][0] - before[p][0] for p in waiters)
idle_ns = sum(after[p][1] - before[p][1] for p in waiters)
idle_switches = sum(after[p][2] - before[p][2] for p in waiters)
rss_total = sum(kib(statuses[p], "VmRSS") for p in waiters)
pss_total = sum(pss_kib(p) for p in waiters)
open(go_file, "w").close()
t_release = time.time_ns()
scale_codes = []
for p in [holder] + waiters:
    _, status = os.waitpid(p, 0)
    scale_codes.append(os.waitstatus_to_exitcode(status))
t_drained = time.time_ns()
rows = read_stamps(scale_file)
ids = [r[0] for r in rows if r[0] != "holder"]
scale_overlaps = overlaps(rows)
once = len(ids) == WAITERS and len(set(ids)) == WAITERS and set(ids) == {f"w{i}" for i in range(WAITERS)}
if not once or any(c != 0 for c in scale_codes):
    failures.append(f"scale: {len(ids)} runs, {len(set(ids))} distinct, exit codes {sorted(set(scale_codes))}")
if scale_overlaps:
    failures.append(f"scale: {scale_overlaps} runs overlapped (two holders at once!)")
print(f"## Scale ({WAITERS} seras waiting connected on one lock, the waiting room off, held by another sera)\n")
print("| measure | value |")
print("| --- | ---: |")
print(f"| resident memory per waiter (VmRSS sum / {WAITERS}) | {rss_total / WAITERS:.0f} KiB |")
print(f"| proportional memory per waiter (Pss sum / {WAITERS}) | {pss_total / WAITERS:.0f} KiB |")
print(f"| CPU of all waiters over {IDLE:g} s idle (utime+stime) | {idle_ticks} ticks |")
print(f"| CPU of all waiters over {IDLE:g} s idle (schedstat) | {idle_ns / 1e3:.0f} µs |")
print(f"| context switches of all waiters over {IDLE:g} s idle | {idle_switches} |")
print(f"| each ran exactly once | {'yes' if once else 'NO'} ({len(set(ids))} distinct of {len(ids)} runs) |")
print(f"| overlapping runs (must be 0) | {scale_overlaps} |")
print(f"| drain: release to last waiter done | {(t_drained - t_release) / 1e6:.0f} ms "
      f"({WAITERS / ((t_drained - t_release) / 1e9):.0f} runs/s) |")
print()

# ---------------------------------------------------------------------------
# Footprint: size, and the memory of sera while its command runs
# ---------------------------------------------------------------------------
log("footprint")


def smaps_rollup(pid):
    """The kB figures of /proc/<pid>/smaps_rollup (Rss, Pss, Private_Dirty, Anonymous...)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def exe(pid):
    try:
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return ""


def tree(pid):
    """pid and all its descendants, parents first."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(children(p))
    return found


def sera_processes(pid, binary):
    """The processes of the tree under pid that run the sera binary (the one
    sera, or sera and a keeper it forked), and whether the command is running."""
    real, stamp = os.path.realpath(binary), os.path.realpath(STAMP)
    procs = tree(pid)
    return [p for p in procs if exe(p) == real], any(exe(p) == stamp for p in procs)


# What a run costs in memory, per sera process, read while the command runs:
# the peak (VmHWM: the most resident at any moment since the process
# started, so the connect and the lock are in it), and what is resident now,
# split into the pages of the mapped binary (file-backed: clean, shared with
# every other sera on the host and with the page cache, dropped first under
# pressure) and the process's own memory (anonymous: heap, stack, the
# binary's written data; dirty, in RAM or swap until sera exits).
footprint = {}
running_cpu = {}
builds = [("default build", SERA)] + ([("small build", SMALL)] if SMALL else [])
for (build, binary), (via, cfg) in [(b, c) for b in builds for c in [("TCP", CFG_TCP), ("unix socket", CFG_UNIX)]]:
    if not cfg:
        continue
    label = f"{build}, {via}"
    pid = spawn([binary, "--config", cfg, "5", STAMP, os.path.join(WORK, "rss.stamps")],
                dict(os.environ, STAMP_ID="rss", STAMP_SLEEP_MS="2600"))
    deadline = time.time() + 10
    seras, running = sera_processes(pid, binary)
    while not running and time.time() < deadline:
        time.sleep(0.005)
        seras, running = sera_processes(pid, binary)
    if not running:
        failures.append(f"footprint run over {label}: the command never started")
    time.sleep(0.2)
    c0 = {p: (cpu_ns(p), switches(proc_status(p))) for p in seras}
    time.sleep(2.0)
    rows = []
    for p in seras:
        s, r = proc_status(p), smaps_rollup(p)
        rows.append({
            "hwm": kib(s, "VmHWM"), "rss": kib(s, "VmRSS"), "file": kib(s, "RssFile"),
            "anon": kib(s, "RssAnon"), "pss": r.get("Pss", 0), "private_dirty": r.get("Private_Dirty", 0),
            "private_clean": r.get("Private_Clean", 0), "shared_clean": r.get("Shared_Clean", 0),
            "anonymous": r.get("Anonymous", 0),
        })
    footprint[label] = rows
    running_cpu[label] = (sum(cpu_ns(p) - c0[p][0] for p in seras),
                          sum(switches(proc_status(p)) - c0[p][1] for p in seras))
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        failures.append(f"footprint run over {label} exited {os.waitstatus_to_exitcode(status)}")
print("## Footprint\n")
print("| measure | value |")
print("| --- | ---: |")
print(f"| static binary size, default build (TLS, ed25519) | {size_bytes} bytes ({size_bytes / 1024:.1f} KiB) |")
if SMALL:
    print(f"| static binary size, small build (--no-default-features) | {small_bytes} bytes "
          f"({small_bytes / 1024:.1f} KiB) |")
for label, (ns, sw) in running_cpu.items():
    print(f"| sera's CPU over 2 s while its command runs, {label} | {ns / 1e3:.0f} µs, {sw} context switches |")
print()
print("Memory of each sera process while its command runs (KiB; one row per process: "
      "sera, and its keeper where there is one):\n")
print("| build | process | peak RSS (VmHWM) | RSS now | of which the mapped binary (file) | of which private "
      "(anonymous) | Pss | Private_Dirty | Private_Clean | Shared_Clean |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, rows in footprint.items():
    for i, r in enumerate(rows):
        who = "sera" if i == 0 else f"fork {i} (keeper)"
        print(f"| {label} | {who} | {r['hwm']} | {r['rss']} | {r['file']} | {r['anon']} | {r['pss']} "
              f"| {r['private_dirty']} | {r['private_clean']} | {r['shared_clean']} |")
print()
print("From `/proc/<pid>/status` (VmHWM, VmRSS, RssFile, RssAnon) and `smaps_rollup`, read 2.2 s "
      "into the command's run. The peak is the most resident at any moment since the process started "
      "(connect and lock included). File pages are the mapped binary: clean, shared with every other "
      "sera and the page cache, and the first to go under memory pressure; the private (anonymous) "
      "pages are what each run really adds to the host.\n")

# ---------------------------------------------------------------------------
# Fleet (issue 15): N seras started at once on one lock, as cron starts them
# on N hosts at :00, with the waiting room (the default) and without it
# ---------------------------------------------------------------------------
FLEET_WAIT = "600"  # long enough that nobody gives up: every sera must run
FLEET_TIMEOUT = 300  # a herd still running after this is killed, and fails
# Sera's own connections, not the monitor's: the bench user is sera's user.
COUNT_SERAS = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
               "WHERE USER = SUBSTRING_INDEX(USER(), '@', 1) AND ID <> CONNECTION_ID()")


def open_monitor():
    """One client session, kept open for the whole fleet run: sampling
    through sql() would log in 50 times a second and count itself."""
    argv = client_argv(DSN_TCP)
    argv[0] = CLIENT
    # --unbuffered: the client flushes each answer, so it can be read at once.
    return subprocess.Popen(argv + ["-N", "-B", "--unbuffered"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=open(ERRLOG, "a"), text=True, bufsize=1)


def ask(monitor, query):
    """The first line of the answer to one query on the monitor session."""
    monitor.stdin.write(query + ";\n")
    monitor.stdin.flush()
    line = monitor.stdout.readline()
    if not line:
        raise RuntimeError(f"the monitoring client went away (see {ERRLOG})")
    return line.strip()


def logins(monitor):
    # `Connections` counts every attempt to connect, refused ones included.
    return int(ask(monitor, "SHOW GLOBAL STATUS LIKE 'Connections'").split()[-1])


def sample_peak(monitor, stop, peak):
    """Until stop is set, count sera's connections every 20 ms; keep the most."""
    while not stop.is_set():
        peak[0] = max(peak[0], int(ask(monitor, COUNT_SERAS)))
        stop.wait(0.02)


def run_herd(n, cfg, label, monitor):
    """Start n seras at once on one lock, reap them all; the row's figures."""
    stamps = os.path.join(WORK, f"fleet-{n}-{label}.stamps")
    argv = [SERA, "--config", cfg, FLEET_WAIT, STAMP, stamps]
    env = dict(os.environ, STAMP_SLEEP_MS=FLEET_WORK_MS)
    before = logins(monitor)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=sample_peak, args=(monitor, stop, peak))
    sampler.start()
    # The herd gets a process group of its own, so that a stuck herd, or an
    # interrupted bench, can be killed in one call without a pid reused by
    # someone else ever being hit.
    spawned, pids, group, codes = {}, [], 0, []
    try:
        for i in range(n):
            env["STAMP_ID"] = str(i)
            spawned[str(i)] = time.time_ns()  # CLOCK_REALTIME, as the stamps
            pids.append(spawn(argv, env, group=group))
            group = group or pids[0]
        t_spawned = time.time_ns()
        watchdog = threading.Timer(FLEET_TIMEOUT, os.killpg, (group, signal.SIGKILL))
        watchdog.daemon = True  # an interrupted bench must not wait for it
        watchdog.start()
        t_last = 0
        for pid in pids:  # in spawn order; the last reap is the last exit
            _, status = os.waitpid(pid, 0)
            t_last = time.time_ns()
            codes.append(os.waitstatus_to_exitcode(status))
        watchdog.cancel()
    except BaseException:
        # Interrupted: leave no sera behind, and no zombie.
        if group:
            os.killpg(group, signal.SIGKILL)
            for pid in pids[len(codes):]:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:  # reaped just before the interruption
                    pass
        raise
    finally:
        stop.set()
        sampler.join()
    after = logins(monitor)
    rows = read_stamps(stamps)
    t_first = spawned["0"]
    total = (t_last - t_first) / 1e9
    waits = [(start - spawned[i]) / 1e9 for i, start, _ in rows if i in spawned]
    handoffs = [(b[1] - a[2]) / 1e6 for a, b in zip(rows, rows[1:])]
    # The herd's length: how long the herd needs if the lock never idles,
    # passing from one run to the next at this row's typical hand-off, once
    # the last sera has been spawned. A run that waited longer than that
    # waited on an idle lock (outside, backing off) after everyone else was done.
    holds = sum(end - start for _, start, end in rows) / 1e9
    length = (t_spawned - t_first) / 1e9 + holds + max(len(rows) - 1, 0) * pct(handoffs, 50) / 1e3
    return {
        "length": length,
        "spawn": (t_spawned - t_first) / 1e9,
        "peak": peak[0],
        "logins": after - before,
        "total": total,
        "longest": max(waits, default=float("nan")),
        "handoff50": pct(handoffs, 50),
        "handoff90": pct(handoffs, 90),
        "overlaps": overlaps(rows),
        "ran": len({r[0] for r in rows}),
        "runs": len(rows),
        "bad_exits": sum(1 for c in codes if c != 0),
    }


if FLEET:
    # SIGTERM, as SIGINT already does, unwinds through run_herd, which kills
    # and reaps the herd on the way out: its own process group does not get
    # the terminal's signals.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fleet_t0 = time.time()
    monitor = open_monitor()
    max_connections = int(ask(monitor, "SELECT @@max_connections"))
    fleet_rows = []
    for n in FLEET_SIZES:
        # Without the room, every sera of the herd may be connected at once.
        if n + 10 > max_connections:
            log(f"fleet: skipping {n} seras: max_connections is {max_connections}, "
                f"and the herd without the room needs {n + 10}")
            fleet_rows.append((n, None, None))
            continue
        for label, cfg in [("on", CFG_TCP), ("off", CFG_NO_ROOM)]:
            log(f"fleet: {n} seras, waiting room {label}")
            r = run_herd(n, cfg, f"room-{label}", monitor)
            fleet_rows.append((n, label, r))
            if r["overlaps"]:
                failures.append(f"fleet {n}, room {label}: {r['overlaps']} runs overlapped (two holders at once!)")
            if r["bad_exits"] or r["runs"] != n or r["ran"] != n:
                failures.append(f"fleet {n}, room {label}: {r['runs']} runs of {r['ran']} distinct seras "
                                f"for {n}, {r['bad_exits']} exits other than 0 (see {ERRLOG})")
            # Let the server close the herd's sessions before the next one.
            deadline = time.time() + 10
            while int(ask(monitor, COUNT_SERAS)) > 0 and time.time() < deadline:
                time.sleep(0.05)
    monitor.stdin.close()
    monitor.wait()
    fleet_seconds = time.time() - fleet_t0
    print(f"## Fleet (N seras started at once on one lock, each `sera {FLEET_WAIT} <stamp>` "
          f"holding it {FLEET_WORK_MS} ms; the waiting room on (16 seats, the default) and off)\n")
    print("| seras | room | peak sera connections | logins | logins per run | logins/s | total time "
          "| herd's length | longest wait | hand-off p50 | hand-off p90 | overlaps | exits ≠ 0 |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, label, r in fleet_rows:
        if r is None:
            print(f"| {n} | skipped: max_connections {max_connections} < {n + 10} | | | | | | | | | | | |")
            continue
        over = " (longer than the herd)" if r["longest"] > r["length"] else ""
        print(f"| {n} | {label} | {r['peak']} | {r['logins']} | {r['logins'] / n:.2f} "
              f"| {r['logins'] / r['total']:.0f} | {r['total']:.2f} s | {r['length']:.2f} s "
              f"| {r['longest']:.2f} s{over} | {r['handoff50']:.2f} ms | {r['handoff90']:.2f} ms "
              f"| {r['overlaps']} | {r['bad_exits']} |")
    print()
    spreads = ", ".join(f"{n} in {r['spawn']:.2f} s" for n, label, r in fleet_rows if r and label == "on")
    print(f"Peak: the most sera sessions in `information_schema.PROCESSLIST`, sampled every 20 ms on one "
          f"session kept open. Logins: the server's `Connections` status (every attempt, refused ones "
          f"too) before and after the herd; per run: over the herd's N runs; per second: over its total time, "
          f"first spawn to last exit. Herd's length: what the herd needs if the lock never idles: "
          f"the spawn spread, plus every run's hold, plus a hand-off p50 between runs. Longest wait: "
          f"a sera's spawn to its command's start. Hand-off: a command's start minus the previous one's end. "
          f"The harness spawned {spreads}. The fleet section took {fleet_seconds:.0f} s.\n")

# ---------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------
ratio_tcp = pct(walls[variants[1][0]], 50) / base_w
# Issue 6 set the memory budget for the build without TLS (issue 24: the
# small build); the default build's memory is printed above for what it is.
budget_build = "small build" if SMALL else "default build"
budget_rows = [(label, r) for label, rows in footprint.items() if label.startswith(budget_build) for r in rows]
worst = max(budget_rows, key=lambda lr: lr[1]["hwm"], default=None)
if worst:
    label, r = worst
    hwm_value = (f"{r['hwm']} KiB ({label}; resident while it runs: {r['rss']} KiB, of which "
                 f"{r['file']} KiB the mapped binary and {r['anon']} KiB private)")
else:
    hwm_value = "not measured"
idle_ok = idle_ticks == 0 and idle_switches == 0 and all(sw == 0 for _, sw in running_cpu.values())
# A verdict of None: not measured here (said in the value), not a failure.
budgets = [
    (f"static binary with TLS ≤ {BUDGET_TLS_SIZE_KIB} KiB", f"{size_bytes / 1024:.1f} KiB",
     size_bytes <= BUDGET_TLS_SIZE_KIB * 1024),
    (f"peak RSS (VmHWM) of the {budget_build} while the command runs ≤ {BUDGET_HWM_KIB} KiB", hwm_value,
     bool(worst) and worst[1]["hwm"] <= BUDGET_HWM_KIB),
    (f"median wall of `sera 5 true` (TCP) ≤ {BUDGET_RATIO} × bare true", f"{ratio_tcp:.2f} ×", ratio_tcp <= BUDGET_RATIO),
    (f"median wall of `sera 5 true` (TCP, {os.path.basename(SERA)}) ≤ {GOAL_RATIO} × bare true (issue 24)",
     f"{ratio_tcp:.2f} ×", ratio_tcp <= GOAL_RATIO),
    (f"contended hand-off p50 ≤ {GOAL_HANDOFF_MS} ms (issue 24)", f"{pct(handoffs, 50):.2f} ms",
     pct(handoffs, 50) <= GOAL_HANDOFF_MS),
    (f"contended throughput ≥ {GOAL_VS_GO} × the Go sera's (issue 24)",
     f"{race_vs_go:.2f} ×" if race_vs_go else f"{races['sera']['per_s']:.0f} runs/s; the Go sera's {GO_SERA_NOTE}",
     race_vs_go >= GOAL_VS_GO if race_vs_go else None),
]
if SMALL:
    budgets.insert(0, (f"static binary without TLS ≤ {BUDGET_SIZE_KIB} KiB", f"{small_bytes / 1024:.1f} KiB",
                       small_bytes <= BUDGET_SIZE_KIB * 1024))
if CFG_UNIX:
    ratio_unix = pct(walls[variants[2][0]], 50) / base_w
    budgets.append((f"median wall of `sera 5 true` (unix) ≤ {BUDGET_RATIO} × bare true", f"{ratio_unix:.2f} ×",
                    ratio_unix <= BUDGET_RATIO))
budgets.append(("no CPU and no wake-ups while waiting for the lock or while the command runs",
                f"{idle_ticks} ticks, {idle_switches} switches waiting; "
                + ", ".join(f"{sw} switches running ({label})" for label, (_, sw) in running_cpu.items()),
                idle_ok))
herd = [r for n, label, r in (fleet_rows if FLEET else []) if n == GOAL_HERD and label == "on" and r]
herd_name = f"a herd of {GOAL_HERD} seras on {FLEET_WORK_MS} ms jobs, the room on"
if herd:
    r = herd[0]
    budgets.append((f"logins per run, {herd_name} ≤ {GOAL_LOGINS_PER_RUN} (issue 24)",
                    f"{r['logins'] / GOAL_HERD:.2f} ({r['logins']} logins)",
                    r["logins"] / GOAL_HERD <= GOAL_LOGINS_PER_RUN))
    budgets.append((f"longest wait ≤ the herd's length, {herd_name} (issue 24)",
                    f"{r['longest']:.2f} s of {r['length']:.2f} s", r["longest"] <= r["length"]))
else:
    budgets.append((f"logins per run and longest wait, {herd_name} (issue 24)",
                    f"not measured: no such herd in the fleet (SERA_BENCH_FLEET, SERA_BENCH_FLEET_SIZES, "
                    f"or max_connections)", None))
print("## Budgets\n")
print("| budget | measured | verdict |")
print("| --- | ---: | :---: |")
for name, value, ok in budgets:
    print(f"| {name} | {value} | {'not measured' if ok is None else 'PASS' if ok else 'FAIL'} |")
print()
if failures:
    print("## Correctness problems\n")
    for f in failures:
        print(f"- {f}")
    print()
sys.stdout.flush()
sys.exit(0 if not failures and all(ok is not False for _, _, ok in budgets) else 1)
