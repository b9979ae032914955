"""Bad input to a PyTorch job: ranks started by hand with the variables a PyTorchJob injects
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Every case ends with one clear error within its
timeouts, and nothing good on disk is touched."""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import pick_free_port
from tests.workloads.support import ROOT, json_lines, run_workloads, subprocess_env

pytestmark = pytest.mark.slow


def start_rank(rank: int, world_size: int, port: int, dataset, output, *flags: str) -> subprocess.Popen:
    env = subprocess_env(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    argv = [
        sys.executable, "-m", "workloads", "train", "--framework", "pytorch", "--strategy", "ddp",
        "--data", str(dataset), "--output", str(output), "--metrics-port", "0", "--threads", "1",
        "--collective-timeout", "20", *flags,
    ]  # fmt: skip
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, list[str], str]:
    """(exit code, error messages, whole output) of a rank, which must end within ``timeout``."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the rank hung for {timeout} s:\n{output[-3000:]}")
    errors = [r["msg"] for r in json_lines(output) if r.get("level") == "error"]
    return process.returncode, errors, output


def test_ranks_that_disagree_about_world_size_and_settings_stop_at_once_naming_both(small_dataset, tmp_path):
    port = pick_free_port()
    common = ("--startup-timeout", "60", "--batch-size", "96")  # 96 divides among 2 and among 3
    ranks = [
        start_rank(0, 2, port, small_dataset, tmp_path / "model", *common),
        start_rank(1, 3, port, small_dataset, tmp_path / "model", *common, "--learning-rate", "0.01"),
    ]
    began = time.monotonic()
    (code0, errors0, out0), (code1, errors1, out1) = (finish(rank) for rank in ranks)
    assert time.monotonic() - began < 60, "a disagreement must not wait for a timeout"
    verdict = (
        "rank 1 has WORLD_SIZE=3, rank 0 has 2; rank 1 runs with --learning-rate 0.01, rank 0 with 0.001"
    )
    assert (code0, code1) == (1, 1), out0[-2000:] + out1[-2000:]
    assert errors0 == [f"the workers disagree about the job: {verdict}"]
    assert errors1 == [f"the workers disagree about the job (rank 0's verdict): {verdict}"]
    assert "Traceback" not in out0 + out1
    assert not (tmp_path / "model").exists()


def test_an_unreachable_master_ends_the_rank_with_a_retryable_error_bounded_by_the_startup_timeout(
    small_dataset, tmp_path
):
    port = pick_free_port()  # nothing listens there
    began = time.monotonic()
    code, errors, output = finish(
        start_rank(1, 2, port, small_dataset, tmp_path / "model", "--startup-timeout", "3")
    )
    assert code == 138, output[-2000:]
    assert len(errors) == 1 and errors[0].startswith(
        f"cannot reach the rendezvous of rank 0 at 127.0.0.1:{port} (MASTER_ADDR:MASTER_PORT) within --startup-timeout 3 s"
    )
    assert time.monotonic() - began < 60 and "Traceback" not in output


def test_a_rank_whose_peers_never_come_gives_up_after_the_startup_timeout(small_dataset, tmp_path):
    code, errors, output = finish(
        start_rank(0, 2, pick_free_port(), small_dataset, tmp_path / "model", "--startup-timeout", "3")
    )
    assert code == 138, output[-2000:]
    assert errors == [
        f"WORLD_SIZE is 2 but only 1 of them reached the rendezvous at 127.0.0.1:{errors[0].split('127.0.0.1:')[1].split()[0]} "
        "(MASTER_ADDR:MASTER_PORT) within --startup-timeout 3 s: start every rank, or correct WORLD_SIZE"
    ]


def tree_digest(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def checkpoints(small_dataset, tmp_path_factory) -> pathlib.Path:
    """The checkpoints of one finished single-process run: steps 4 and 8 (the latest)."""
    root = tmp_path_factory.mktemp("checkpointed")
    result = run_workloads(
        "train", "--framework", "pytorch", "--strategy", "ddp", "--data", str(small_dataset),
        "--output", str(root / "model"), "--checkpoint-dir", str(root / "checkpoints"),
        "--epochs", "1", "--batch-size", "256", "--checkpoint-every", "4", "--metrics-port", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "checkpoints"


def flip_a_byte(directory: pathlib.Path) -> str:
    payload = directory / "step-000000008" / "torch" / "state.pt"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    return "step-000000008/torch/state.pt: SHA-256 is"


def truncate_the_payload_and_its_digest(directory: pathlib.Path) -> str:
    payload = directory / "step-000000008" / "torch" / "state.pt"
    payload.write_bytes(payload.read_bytes()[:1000])
    (payload.parent / "state.pt.sha256").write_text(hashlib.sha256(payload.read_bytes()).hexdigest())
    return "cannot restore"


def garble_the_pointer(directory: pathlib.Path) -> str:
    (directory / "latest.json").write_text('{"step": ')
    return "latest.json is not a checkpoint pointer"


@pytest.mark.xdist_group("damaged-checkpoints")
@pytest.mark.parametrize("damage", [flip_a_byte, truncate_the_payload_and_its_digest, garble_the_pointer])
def test_a_damaged_checkpoint_stops_the_run_naming_the_file_and_nothing_is_overwritten(
    small_dataset, checkpoints, tmp_path, damage
):
    directory = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, directory)
    expected = damage(directory)
    before = tree_digest(directory)
    result = run_workloads(
        "train", "--framework", "pytorch", "--strategy", "ddp", "--data", str(small_dataset),
        "--output", str(tmp_path / "model"), "--checkpoint-dir", str(directory),
        "--epochs", "2", "--batch-size", "256", "--checkpoint-every", "4", "--metrics-port", "0",
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [r["msg"] for r in json_lines(result.stderr) if r.get("level") == "error"]
    assert len(errors) == 1 and expected in errors[0], errors
    assert "Traceback" not in result.stderr
    assert tree_digest(directory) == before  # the good step-4 checkpoint and everything else untouched
    assert not (tmp_path / "model").exists()


def test_a_frozen_peer_ends_the_other_rank_within_the_collective_timeout_with_the_retryable_code(
    small_dataset, tmp_path
):
    """SIGSTOP keeps the peer's sockets open: only the process group's timeout can notice."""
    import os
    import signal
    import threading

    port = pick_free_port()
    flags = ("--startup-timeout", "60", "--collective-timeout", "5", "--epochs", "100", "--log-every", "5")
    ranks = [start_rank(rank, 2, port, small_dataset, tmp_path / "model", *flags) for rank in (0, 1)]
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(ranks[0].stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any('"msg": "step ' in line for line in lines):
            assert time.monotonic() < deadline, "training never started:\n" + "".join(lines[-20:])
            assert ranks[0].poll() is None, "".join(lines[-20:])
            time.sleep(0.2)
        os.kill(ranks[1].pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        code = ranks[0].wait(timeout=90)
        waited = time.monotonic() - frozen_at
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
                rank.wait()
    errors = [r["msg"] for r in json_lines("".join(lines)) if r.get("level") == "error"]
    assert code == 138, "".join(lines[-20:])
    assert len(errors) == 1 and errors[0].startswith("lost contact with a peer worker while training")
    assert waited < 45
