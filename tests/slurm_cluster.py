"""A real single-node SLURM cluster on this machine, for tests and CI.

Installs Debian's ``slurm-wlm`` and ``munge`` when they are missing, writes a ``slurm.conf``
with a ``cpu`` and a ``gpu`` partition on this host (the GPUs are GRES of type ``h200`` on fake
character devices, since the machine has none), starts munged (unless one already answers),
slurmctld and slurmd, and waits until ``sinfo`` reports the node idle. ``stop`` cancels the
cluster's jobs and stops exactly the daemons that ``start`` started, by their pid files.

The config goes to ``/etc/slurm/slurm.conf`` and ``gres.conf``, where every SLURM command
looks (the executor plugin's job step drops ``SLURM_CONF`` from the environment of its inner
``srun``, so a private path does not work); an existing ``slurm.conf`` that this script did not
write is never overwritten: ``start`` refuses instead. ``stop`` removes the two files again.
Everything else (spool, logs, pid files, fake devices) lives in one state directory (default
``/tmp/polyculture-slurm``, or ``$POLYCULTURE_SLURM_DIR``).

The node is declared like one H200 node (8 GPUs, 128 CPUs, 1 TiB memory) with
``SlurmdParameters=config_overrides``, so the production profile's requests fit unchanged on a
small machine; SLURM does not enforce them (no cgroups), it only schedules them.

Command line::

    python tests/slurm_cluster.py install   # apt-get install when missing, prints seconds
    python tests/slurm_cluster.py start     # prints the seconds it took
    python tests/slurm_cluster.py status
    python tests/slurm_cluster.py stop
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("POLYCULTURE_SLURM_DIR", "/tmp/polyculture-slurm"))
PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "munged", "munge")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
MUNGE_KEY = Path("/etc/munge/munge.key")
SLURM_ETC = Path("/etc/slurm")
#: First line of the config files this script writes; only such files are replaced or removed.
MARKER = "# Written by tests/slurm_cluster.py: a single-node test cluster."
#: Daemons that `start` may start, in start order; `stop` goes the other way.
DAEMONS = ("munged", "slurmctld", "slurmd")


#: Profile stacks the workflow runs through on this cluster: production, and production with the
#: small-jobs overlay. `profile_args` puts the test cluster's overlay after each.
PROFILE_STACKS = {
    "production": ("profiles/slurm",),
    "small": ("profiles/slurm", "profiles/slurm-small"),
}


def profile_args(stack: str) -> tuple[str, ...]:
    """Snakemake's arguments for a profile stack on this cluster: its profiles, then
    profiles/slurm-test (the workflow has no profiles/default that Snakemake would add)."""
    profiles = (*PROFILE_STACKS[stack], "profiles/slurm-test")
    return tuple(a for p in profiles for a in ("--profile", p))


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here (not root, no apt-get); the message says why."""


@dataclass(frozen=True)
class NodeSpec:
    """What the single node declares to SLURM (not what the machine has)."""

    cpus: int = 128
    mem_mb: int = 1024 * 1024
    gpus: int = 8
    gpu_type: str = "h200"
    cpu_partition: str = "cpu"
    gpu_partition: str = "gpu"


@dataclass
class Cluster:
    """A running cluster: its state directory and the environment its clients need."""

    state_dir: Path
    node: str
    spec: NodeSpec
    install_s: float = 0.0
    start_s: float = 0.0
    started: list[str] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return SLURM_ETC / "slurm.conf"

    @property
    def jobcomp_log(self) -> Path:
        """One line per finished job (jobcomp/filetxt): partition, TRES incl. gres/gpu."""
        return self.state_dir / "log" / "jobcomp.log"


def missing_binaries() -> list[str]:
    """SLURM/munge programs not found on PATH (sbin included)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def install(*, apt: bool = True) -> float:
    """Install slurm-wlm and munge with apt-get when a program is missing; return seconds spent.

    Raises SlurmUnavailable when something is missing and it cannot be installed here.
    """
    missing = missing_binaries()
    if not missing:
        return 0.0
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM programs missing ({', '.join(missing)}) and not root")
    if not apt or shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM programs missing ({', '.join(missing)}) and no apt-get")
    t0 = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
    still = missing_binaries()
    if still:
        raise RuntimeError(f"after apt-get install, still missing: {', '.join(still)}")
    return time.monotonic() - t0


def slurm_conf_text(state_dir: Path, node: str, spec: NodeSpec) -> str:
    """slurm.conf of a one-node cluster with a default `cpu` and a `gpu` partition."""
    s = state_dir
    return f"""\
{MARKER} Not for production.
ClusterName=polyculture-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={s}/spool/ctld
SlurmdSpoolDir={s}/spool/d
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={s}/log/jobcomp.log
MinJobAge=3600
DefMemPerCPU=2000
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={spec.cpus} RealMemory={spec.mem_mb} \
Gres=gpu:{spec.gpu_type}:{spec.gpus} State=UNKNOWN
PartitionName={spec.cpu_partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={spec.gpu_partition} Nodes={node} MaxTime=INFINITE State=UP
"""


def gres_conf_text(state_dir: Path, node: str, spec: NodeSpec) -> str:
    """gres.conf: the node's GPUs as typed GRES on the fake device files."""
    last = spec.gpus - 1
    return (
        f"{MARKER}\n"
        "AutoDetect=off\n"
        f"NodeName={node} Name=gpu Type={spec.gpu_type} "
        f"File={state_dir}/fakegpu/nvidia[0-{last}]\n"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _munge_answers() -> bool:
    """True when a munged answers on the default socket (a credential round-trips)."""
    if not MUNGE_SOCKET.exists():
        return False
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=True)
        subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10, check=True)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def _sbin(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        raise SlurmUnavailable(f"{name} not found")
    return found


def node_state(env: dict[str, str]) -> dict[str, str]:
    """Partition → node state as sinfo reports it ({} when the controller does not answer)."""
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%R %t"], env=env, capture_output=True, text=True, timeout=20
    )
    if proc.returncode != 0:
        return {}
    return dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)


def start(state_dir: Path = DEFAULT_STATE_DIR, spec: NodeSpec | None = None) -> Cluster:
    """Write the config, start munged/slurmctld/slurmd, wait for an idle node; return the cluster.

    Raises SlurmUnavailable when this machine cannot run it (not root, programs missing, the
    SLURM ports already taken by another controller).
    """
    spec = spec or NodeSpec()
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting slurmctld/slurmd needs root")
    missing = missing_binaries()
    if missing:
        raise SlurmUnavailable(f"SLURM programs missing: {', '.join(missing)}")
    state_dir = Path(state_dir)
    for pid_name in ("slurmctld", "slurmd"):
        pid = _read_pid(state_dir / "run" / f"{pid_name}.pid")
        if pid is not None and _pid_alive(pid) and _proc_name(pid) == pid_name:
            raise RuntimeError(f"{pid_name} of {state_dir} still runs (pid {pid}): stop it first")
    busy = [p for p in (6817, 6818) if _port_in_use(p)]
    if busy:
        raise SlurmUnavailable(f"SLURM ports {busy} are in use by another cluster")
    for name in ("slurm.conf", "gres.conf"):
        if not _ours_or_absent(SLURM_ETC / name):
            raise SlurmUnavailable(f"{SLURM_ETC / name} exists and was not written by {__file__}")

    t0 = time.monotonic()
    node = socket.gethostname().split(".")[0]
    for sub in ("spool/ctld", "spool/d", "log", "run", "fakegpu"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    # Fresh controller state: no jobs or node states left from an earlier cluster.
    shutil.rmtree(state_dir / "spool" / "ctld", ignore_errors=True)
    (state_dir / "spool" / "ctld").mkdir(parents=True)
    for old_log in (state_dir / "log").glob("*.log"):
        old_log.unlink()
    for old_pid in (state_dir / "run").glob("slurm*.pid"):
        old_pid.unlink()
    for i in range(spec.gpus):
        dev = state_dir / "fakegpu" / f"nvidia{i}"
        if not dev.exists():
            # Character devices like the NVIDIA ones (major 195): SLURM sets
            # CUDA_VISIBLE_DEVICES from their minors; plain files leave it empty.
            os.mknod(dev, 0o600 | 0o020000, os.makedev(195, i))
    SLURM_ETC.mkdir(parents=True, exist_ok=True)
    (SLURM_ETC / "slurm.conf").write_text(slurm_conf_text(state_dir, node, spec))
    (SLURM_ETC / "gres.conf").write_text(gres_conf_text(state_dir, node, spec))
    cluster = Cluster(state_dir=state_dir, node=node, spec=spec)
    started_file = state_dir / "run" / "started"
    started_file.write_text("")

    def record(name: str) -> None:
        cluster.started.append(name)
        started_file.write_text("\n".join(cluster.started) + "\n")

    if not _munge_answers():
        if not MUNGE_KEY.exists():
            subprocess.run(["mungekey", "-c", "-k", str(MUNGE_KEY)], check=True)
            shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
        munged_pid = state_dir / "run" / "munged.pid"
        munged_pid.unlink(missing_ok=True)
        Path("/var/log/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/var/log/munge", "munge", "munge")
        Path("/var/lib/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/var/lib/munge", "munge", "munge")
        # munged refuses a pid file in a directory others may write; it writes its own into
        # /run/munge, which we copy into our run/ so that stop() finds it.
        subprocess.run(
            ["runuser", "-u", "munge", "--", _sbin("munged")], check=True, capture_output=True
        )
        _wait(_munge_answers, 20, "munged")
        pid = _read_pid(Path("/run/munge/munged.pid"))
        if pid is not None:
            munged_pid.write_text(f"{pid}\n")
            record("munged")

    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    conf = str(cluster.conf)
    try:
        subprocess.run([_sbin("slurmctld"), "-f", conf], check=True, env=env)
        record("slurmctld")
        subprocess.run([_sbin("slurmd"), "-f", conf], check=True, env=env)
        record("slurmd")

        def idle() -> bool:
            running = status(state_dir)
            dead = [
                d
                for d in ("slurmctld", "slurmd")
                if running[d] is None
                and ((state_dir / "run" / f"{d}.pid").exists() or time.monotonic() - t0 > 15)
            ]
            if dead:
                logs = {d: state_dir / "log" / f"{d}.log" for d in dead}
                tails = "\n".join(
                    f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                    for p in logs.values()
                    if p.exists()
                )
                raise RuntimeError(f"{', '.join(dead)} exited during start-up:\n{tails}")
            states = node_state(env)
            return all(states.get(p) == "idle" for p in (spec.cpu_partition, spec.gpu_partition))

        _wait(idle, 60, "an idle node in sinfo", state_dir / "log" / "slurmctld.log")
    except BaseException:
        stop(state_dir)
        raise
    cluster.start_s = time.monotonic() - t0
    return cluster


def _stop_pid(name: str, pid_file: Path, timeout: float = 20) -> bool:
    pid = _read_pid(pid_file)
    if pid is None or not _pid_alive(pid) or _proc_name(pid) != name:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def cancel_all_jobs(env: dict[str, str], timeout: float = 30) -> None:
    """Cancel every job of this cluster (it is ours alone) and wait until none is left."""
    proc = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True)
    ids = proc.stdout.split() if proc.returncode == 0 else []
    if not ids:
        return
    subprocess.run(["scancel", *ids], env=env, capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(
            ["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i"],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not proc.stdout.split():
            return
        time.sleep(0.5)


def _ours_or_absent(path: Path) -> bool:
    """True when `path` does not exist or this script wrote it (its first line is MARKER)."""
    try:
        with path.open() as f:
            return f.readline().startswith(MARKER)
    except FileNotFoundError:
        return True


def stop(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Cancel the cluster's jobs, stop the daemons `start` started, remove its config files.

    Returns the names of the daemons stopped.
    """
    state_dir = Path(state_dir)
    started_file = state_dir / "run" / "started"
    if not started_file.exists():
        return []
    started = started_file.read_text().split()
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    if "slurmctld" in started:
        cancel_all_jobs(env)
    stopped = [
        name
        for name in reversed(DAEMONS)
        if name in started and _stop_pid(name, state_dir / "run" / f"{name}.pid")
    ]
    for name in ("slurm.conf", "gres.conf"):
        if (SLURM_ETC / name).exists() and _ours_or_absent(SLURM_ETC / name):
            (SLURM_ETC / name).unlink()
    started_file.unlink()
    return stopped


def status(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, int | None]:
    """Daemon → pid of the ones recorded in the state directory that still run."""
    out: dict[str, int | None] = {}
    for name in DAEMONS:
        pid = _read_pid(Path(state_dir) / "run" / f"{name}.pid")
        alive = pid is not None and _pid_alive(pid) and _proc_name(pid) == name
        out[name] = pid if alive else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(f"install: {install():.1f} s")
        elif args.command == "start":
            t_install = install()
            cluster = start(args.state_dir)
            print(f"install {t_install:.1f} s, start {cluster.start_s:.1f} s ({cluster.conf})")
        elif args.command == "stop":
            print("stopped: " + (" ".join(stop(args.state_dir)) or "nothing"))
        else:
            for name, pid in status(args.state_dir).items():
                print(f"{name}: {pid if pid else 'not running (or not ours)'}")
    except SlurmUnavailable as e:
        print(f"SLURM unavailable: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
