"""Benchmark: what the API server tests' control plane costs `make test` (budget: a fresh machine's whole
`make test` under 60 minutes).

The cold build (`tools/control-plane/build.sh` with empty Go module and build caches, as on a fresh
machine: every module downloaded from the proxy, Kubernetes compiled); a rebuild with warm caches; the
start of etcd and kube-apiserver until /readyz is ok (three starts; the median), and their resident
memory when ready and after the CRDs and both example stacks' objects are applied.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import tempfile
import time

from tests.infra.conftest import FIXTURES
from tests.infra.program import STACKS, run_program
from tests.support import control_plane
from tests.support.kube_client import Client

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "control-plane" / "build.sh"
CRD_BUILD = ROOT / "tools" / "crds" / "build.sh"
STARTS = 3


def _build(script: pathlib.Path, out: pathlib.Path, caches: pathlib.Path | None) -> float:
    env = dict(os.environ)
    if caches is not None:
        env.update(GOMODCACHE=str(caches / "mod"), GOCACHE=str(caches / "build"))
    start = time.perf_counter()
    subprocess.run([str(script), str(out)], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS")


def _objects() -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        ansible = pathlib.Path(scratch) / "ansible"
        subprocess.run(["cp", "-r", str(FIXTURES / "ansible"), str(ansible)], check=True)
        objects = []
        for stack in STACKS:
            run, error, _ = run_program(stack, {"mlstack:ansibleDir": str(ansible)})
            assert run is not None, error
            objects += run.kubernetes_objects()
    return objects


def _start(workdir: pathlib.Path, binaries: pathlib.Path, objects: list[dict] | None = None):
    """Seconds to ready; RSS (MiB) of etcd and kube-apiserver when ready and after applying ``objects``."""
    work = pathlib.Path(tempfile.mkdtemp(dir=workdir))
    start = time.perf_counter()
    with control_plane.running(work, binaries) as plane:
        ready = time.perf_counter() - start
        rss_ready = tuple(_rss_mib(pid) for pid in plane.pids)
        if objects:
            with plane.session() as session:
                client = Client(plane.url, session)
                control_plane.install_crds(
                    client, {(o["apiVersion"].rpartition("/")[0], o["kind"]) for o in objects}
                )
                order = {"Namespace": 0, "PriorityClass": 0, "RuntimeClass": 0, "ServiceAccount": 1}
                for obj in sorted(objects, key=lambda o: order.get(o["kind"], 2)):
                    if client.resource(obj):
                        client.apply(obj)
        rss_loaded = tuple(_rss_mib(pid) for pid in plane.pids)
    return ready, rss_ready, rss_loaded


def run(workdir: pathlib.Path) -> str:
    cold_out = workdir / "cold"
    with tempfile.TemporaryDirectory(dir=workdir) as caches:
        cold = _build(BUILD, cold_out, pathlib.Path(caches))
        crds_cold = _build(CRD_BUILD, workdir / "crds", pathlib.Path(caches))
    warm = _build(BUILD, workdir / "warm", None)
    binaries = control_plane.build()
    load = os.getloadavg()[0]
    starts = [_start(workdir, binaries) for _ in range(STARTS)]
    _, rss_ready, rss_loaded = _start(workdir, binaries, _objects())
    size = sum(f.stat().st_size for f in cold_out.iterdir()) / 2**20
    return f"""## Test control plane: build, start, memory (`bench_control_plane`)

`tools/control-plane/build.sh` builds kube-apiserver and etcd (the versions of its go.mod) from the Go
module proxy; `tests/support/control_plane.py` starts them for the API server tests
(`tests/infra/test_api_server.py`). Load average before the starts: {load:.1f} (the machine is shared).

| step | wall time (s) |
| --- | ---: |
| cold build (empty module and build caches: download and compile) | {cold:.0f} |
| rebuild, warm caches | {warm:.0f} |
| CRDs after it (controller-gen built and run; Kubernetes modules already in the cache) | {crds_cold:.0f} |
| start to /readyz ok (median of {STARTS}) | {statistics.median(s[0] for s in starts):.1f} |

| process | RSS when ready (MiB) | RSS with the CRDs and both stacks applied (MiB) |
| --- | ---: | ---: |
| etcd | {rss_ready[0]:.0f} | {rss_loaded[0]:.0f} |
| kube-apiserver | {rss_ready[1]:.0f} | {rss_loaded[1]:.0f} |

The two binaries take {size:.0f} MiB under build/control-plane.
"""
