"""Facts about this machine and about running processes, read from /proc (Linux only, no psutil)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_facts(data_dir: Path) -> dict[str, object]:
    """What a reader needs to compare two runs: CPUs, memory, kernel, Python, the data filesystem."""
    model = "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = 0
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    disk = os.statvfs(data_dir)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mib": round(mem_total / 2**20),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "data_dir_free_gib": round(disk.f_bavail * disk.f_frsize / 2**30, 1),
    }


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive right now."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 when it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads), 0 when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of /proc/<pid>/stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _stat_jiffies() -> list[int]:
    """The machine's line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal, ..."""
    return [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine; time stolen by the hypervisor counts as busy."""
    values = _stat_jiffies()
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def steal_times() -> tuple[int, int]:
    """(stolen, total) jiffies of the whole machine: time a virtual CPU wanted to run while the
    hypervisor ran something else (the host writing back this guest's disk writes, other guests)."""
    values = _stat_jiffies()
    return (values[7] if len(values) > 7 else 0), sum(values[:8])


def steal_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    return 100.0 * (after[0] - before[0]) / max(1, after[1] - before[1])


def machine_busy_percent(seconds: float) -> float:
    """Share of all CPUs busy over the next ``seconds`` seconds."""
    busy0, total0 = cpu_times()
    time.sleep(seconds)
    busy1, total1 = cpu_times()
    return 100.0 * (busy1 - busy0) / max(1, total1 - total0)


def host_steal_percent(seconds: float) -> float:
    """Share of the CPUs the hypervisor takes away while every CPU here wants to run: one busy-looping
    process per CPU for ``seconds``. An idle guest shows no steal whatever the host does, so this
    probe is the only way to see, before a measurement, that the host is still busy (for instance
    writing back gigabytes this guest wrote and fsynced a moment ago)."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    before = steal_times()
    probes = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(len(os.sched_getaffinity(0)))]
    for probe in probes:
        probe.wait()
    return steal_percent(before, steal_times())


def wait_until_quiet(
    max_wait: float, threshold: float = 10.0, window: float = 1.0, steal_threshold: float = 2.0
) -> float:
    """Wait (at most ``max_wait`` s) until the machine is idle and the host gives it all its CPU
    time; return the busy % last seen.

    Other work on a small machine skews every figure, so each measurement starts on an idle machine
    when it can, and reports how busy the machine was just before it started. On a virtual machine
    the host keeps working for seconds after large writes (the guest's fsync returned, the host's
    cache did not) and takes up to a third of the CPU time meanwhile, in bursts a few seconds apart:
    a latency measured then shows the host, not the server (a plain ``dd`` of 4 GiB shows the same
    tail). So the host counts as quiet after two probes in a row under ``steal_threshold``.
    """
    deadline = time.monotonic() + max_wait
    calm_probes = 0
    while True:
        busy = machine_busy_percent(window)
        if time.monotonic() >= deadline:
            return busy
        if busy > threshold:
            calm_probes = 0
            continue
        calm_probes = calm_probes + 1 if host_steal_percent(2 * window) <= steal_threshold else 0
        if calm_probes >= 2:
            return busy


@dataclass
class RssSample:
    elapsed: float
    progress: int
    total_rss: int
    largest_rss: int


@dataclass
class RssSampler:
    """Samples the summed VmRSS of a process tree in a thread, together with a progress counter.

    ``progress`` is set by the code doing the work (bytes sent so far), so each sample says how far
    the work had got when the memory was measured.
    """

    pid: int
    interval: float = 0.1
    progress: int = 0
    samples: list[RssSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self, started: float) -> RssSample:
        sizes = [rss_bytes(pid) for pid in process_tree(self.pid)]
        return RssSample(
            elapsed=time.monotonic() - started,
            progress=self.progress,
            total_rss=sum(sizes),
            largest_rss=max(sizes, default=0),
        )

    def start(self) -> None:
        started = time.monotonic()

        def run() -> None:
            while not self._stop.is_set():
                self.samples.append(self.sample(started))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
