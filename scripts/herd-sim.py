#!/usr/bin/env python3
"""A model of a herd of seras outside a full waiting room (src/room.rs), to
try backoff schedules before building them:

    scripts/herd-sim.py            one table: room.rs's schedule, others, an oracle

N seras arrive spread over N ms (the bench's herds spawn about that fast)
and each tries once: the lock if it is free, else a seat of the room's S,
else it hangs up and comes back after its next pause, one login a try.
Seated waiters get the lock in turn (the server's queue is first come,
first served), each run holds it `run` and the next starts `handoff` later.
It prints logins per run and the longest wait over the herd's length (what
the herd needs if the lock never idles), as the bench's fleet table does;
with room.rs's schedule it gives what the bench measures (300 on 20 ms
jobs: 3.5 logins per run, the longest wait 1.4 x the herd's length). A run
takes about 20 s.
"""
import heapq
import random
import statistics


def herd(n, pause, seats=16, run=0.022, handoff=0.001, seed=1):
    """Logins per run, longest wait, herd's length (s). `pause(rnd, tries,
    waited, ahead)` is the pause after the `tries`-th try found the room
    full, `waited` s after the sera's first, with `ahead()` the number of
    seras in line before this one (which no sera can know: for the
    oracle)."""
    rnd = random.Random(seed)
    spread = n * 0.001
    events = [(rnd.random() * spread, "try", i) for i in range(n)]
    heapq.heapify(events)
    seated, holder = [], None
    logins, tries, arrived, started = 0, {}, {}, {}
    while events:
        t, what, i = heapq.heappop(events)
        if what == "done":
            holder = None
            if seated:
                holder = seated.pop(0)
                started[holder] = t + handoff
                heapq.heappush(events, (t + handoff + run, "done", holder))
            continue
        logins += 1
        arrived.setdefault(i, t)
        tries[i] = tries.get(i, 0) + 1
        if holder is None and not seated:
            holder, started[i] = i, t
            heapq.heappush(events, (t + run, "done", i))
        elif len(seated) < seats:
            seated.append(i)
        else:
            def ahead(i=i):
                return sum(1 for j in arrived if arrived[j] < arrived[i] and j not in started)
            heapq.heappush(events, (t + pause(rnd, tries[i], t - arrived[i], ahead), "try", i))
    longest = max(started[i] - arrived[i] for i in range(n))
    return logins / n, longest, spread + n * run + (n - 1) * handoff


def doubling(first, ceiling, longest=None, seats=16):
    """room.rs's Backoff: about `first`, doubling up to about `ceiling`,
    each pause between half and one and a half times its step; with
    `longest`, the ceiling grows by 1/128 of the time waited per seat (an
    eighth for 16), up to that."""
    def pause(rnd, tries, waited, ahead):
        top = ceiling if longest is None else min(max(ceiling, waited * seats / 128), longest)
        step = min(first * 2 ** min(tries - 1, 20), top)
        return step / 2 + rnd.random() * step
    return pause


def oracle(hold):
    """Back when half the room is still ahead: each sera's true place in
    line and the true hold per run, which GET_LOCK does not give."""
    def pause(rnd, tries, waited, ahead):
        return max(ahead() - 8, 8) * hold
    return pause


def median_of(n, pause, run, seeds=4):
    runs = [herd(n, pause, run=run, seed=s) for s in range(seeds)]
    logins = statistics.median(r[0] for r in runs)
    longest = statistics.median(r[1] / r[2] for r in runs)
    return logins, longest


if __name__ == "__main__":
    schedules = [
        ("0.5 s to 4 s", doubling(0.5, 4)),
        ("room.rs: the same, growing to 30 s", doubling(0.5, 4, 30)),
        ("1 s to 3 s", doubling(1, 3)),
        ("1 s to 2 s", doubling(1, 2)),
        ("2 s to 3 s", doubling(2, 3)),
        ("0.5 s to 2 s", doubling(0.5, 2)),
    ]
    print("logins per run, longest wait / herd's length; 16 seats\n")
    print("| seras | hold per run | " + " | ".join(name for name, _ in schedules) + " | oracle |")
    print("| ---: | ---: |" + " ---: |" * (len(schedules) + 1))
    for n in (30, 100, 300, 1000):
        for run in (0.005, 0.022, 0.1, 1.0, 10.0):
            if n * run > 3000:
                continue
            cells = [median_of(n, pause, run) for _, pause in schedules]
            cells.append(median_of(n, oracle(run + 0.001), run))
            print(f"| {n} | {run * 1000:.0f} ms | "
                  + " | ".join(f"{logins:.2f}, {longest:.2f}" for logins, longest in cells) + " |")
