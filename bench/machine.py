"""Machine load for every benchmark: how busy the shared CPUs are and how much of that is ours;
and the record of the machine and the code measured.

The benchmarks run on a few cores shared with other tenants, so a timing means something only
beside the CPU time other processes took meanwhile. One definition here (it was three, drifting):
``wait_quiet`` before a timed block, ``CpuMonitor`` around it, ``loadavg`` in the records.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


LSCPU = {
    "cores_per_socket": "Core(s) per socket",
    "threads_per_core": "Thread(s) per core",
    "hypervisor": "Hypervisor vendor",
    "sockets": "Socket(s)",
}


def cpu_info(*fields: str, isa: tuple[str, ...] = ()) -> dict:
    """The CPU model (lscpu's name where it runs), logical CPUs and Python version; plus the named
    ``LSCPU`` fields and, with ``isa``, which of those instruction set flags the CPU has."""
    info = {
        "cpu": platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    lscpu = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    info["cpu"] = lscpu.get("Model name", info["cpu"])
    info.update({name: lscpu.get(LSCPU[name]) for name in fields})
    if isa:
        flags = lscpu.get("Flags", "").split()
        info["isa"] = [f for f in isa if f in flags]
    return info


def git(*args: str, cwd: Path = REPO) -> str:
    """``git ARGS``'s output in the checkout ("" where git cannot run)."""
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False
        ).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return ""


def busy_jiffies() -> int:
    """Busy clock ticks of all CPUs since boot (everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def own_cpu() -> tuple[float, float]:
    """(this process, its reaped children) CPU seconds."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def status_bytes(field: str) -> int:
    """A size from /proc/self/status (``VmRSS``, ``VmHWM``, ...) in bytes; 0 where it is missing."""
    with open("/proc/self/status") as fh:
        return next((int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":")), 0)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages as /proc/loadavg writes them."""
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def loadavg_figures() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class CpuMonitor:
    """Wall time, our own CPU time and the CPU seconds OTHER processes took meanwhile (busy
    jiffies minus ours). ``children=True`` counts reaped child processes (subprocess runs,
    DataLoader workers) as ours; otherwise they count as other processes'. ``exclude_waits=False``
    keeps the time spent in ``wait_quiet`` inside the window (a whole run's record)."""

    # wall s, busy CPU-s and seconds spent in wait_quiet so far: a monitor open around a wait
    # subtracts them, since waiting for a quiet machine is not part of the measurement
    excluded = [0.0, 0.0, 0.0]

    def __init__(self, children: bool = False, exclude_waits: bool = True):
        self.hz, self.ncpu, self.children = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1, children
        self.exclude_waits = exclude_waits

    def own_cpu(self) -> tuple[float, float]:
        """(this process, counted children) CPU seconds; subclasses add what else is theirs."""
        mine, kids = own_cpu()
        return mine, kids if self.children else 0.0

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), busy_jiffies(), self.own_cpu()
        self.excluded0 = list(self.excluded)
        return self

    def __exit__(self, *exc):
        wall_x, busy_x, waited = (a - b for a, b in zip(self.excluded, self.excluded0))
        if not self.exclude_waits:
            wall_x = busy_x = 0.0
        self.waited = waited
        self.wall = time.perf_counter() - self.t0 - wall_x
        busy = (busy_jiffies() - self.busy0) / self.hz - busy_x
        own = self.own_cpu()
        self.self_cpu, self.children_cpu = own[0] - self.own0[0], own[1] - self.own0[1]
        self.own = self.self_cpu + self.children_cpu
        self.other = max(0.0, busy - self.own)
        self.other_pct = 100.0 * self.other / max(self.wall * self.ncpu, 1e-9)
        return False

    def summary(self) -> dict:
        return {
            "wall_s": round(self.wall, 2),
            "waited_for_quiet_s": round(self.waited, 1),
            "own_cpu_s": round(self.own, 2),
            "other_processes_cpu_s": round(self.other, 2),
            "other_load_pct": round(self.other_pct, 1),
        }


def wait_quiet(max_wait: float, threshold_pct: float = 10.0, window: float = 1.0) -> float:
    """Sleep until other processes use under ``threshold_pct`` of the machine for ``window`` seconds
    (at most ``max_wait`` seconds); returns the seconds waited. We are idle meanwhile, so every busy
    jiffy belongs to someone else."""
    if max_wait <= 0:
        return 0.0
    ncpu, hz, t0 = os.cpu_count() or 1, os.sysconf("SC_CLK_TCK"), time.perf_counter()
    start_busy = busy_jiffies()
    while True:
        busy0 = busy_jiffies()
        time.sleep(window)
        busy_pct = 100.0 * (busy_jiffies() - busy0) / hz / (window * ncpu)
        waited = time.perf_counter() - t0
        if busy_pct < threshold_pct or waited >= max_wait:
            CpuMonitor.excluded[0] += waited
            CpuMonitor.excluded[1] += (busy_jiffies() - start_busy) / hz
            CpuMonitor.excluded[2] += waited
            return waited


class Undisturbed:
    """Runs timed blocks on a shared machine: each after :func:`wait_quiet`, and again (up to
    ``attempts`` times) while other processes took more than ``max_other_pct`` of the CPUs
    meanwhile. Counts the re-runs and the disturbed blocks it had to keep, for the report."""

    def __init__(self, quiet: float, max_other_pct: float = 10.0, attempts: int = 3):
        self.quiet, self.max_other_pct, self.attempts = quiet, max_other_pct, attempts
        self.retried = self.kept_disturbed = 0

    def __call__(self, block):
        for attempt in range(self.attempts):
            wait_quiet(self.quiet)
            time.sleep(0.05)  # the previous system's worker threads stop spinning
            with CpuMonitor() as monitor:
                result = block()
            if self.quiet <= 0 or monitor.other_pct <= self.max_other_pct:
                return result
            if attempt + 1 < self.attempts:
                self.retried += 1
        self.kept_disturbed += 1
        return result


def timed(fn):
    """(seconds, result, CPU-s other processes took meanwhile)."""
    with CpuMonitor() as monitor:
        out = fn()
    return monitor.wall, out, monitor.other


def start_record() -> dict:
    """What a results file starts with: the machine, its load now, and the command that ran."""
    return {"machine": cpu_info(), "loadavg_start": loadavg(), "command": " ".join(sys.argv)}


def line_buffered_stdout() -> None:
    """Progress lines show as they are printed, also into a pipe."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


def write_results(path: Path, results: dict) -> None:
    """Every bench ends the same way: its JSON record on disk and where it went."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {path} ({results['elapsed_s']:.0f} s)")
