"""zoo.sandbox against hostile programs: each test checks what docs/sandbox.md claims, no more."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from zoo.runtime.errors import UsageError

from zoo import sandbox


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state or "\nState:\tX" in state


def _wait_dead(pid: int, seconds: float = 2.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _dead(pid):
            return True
        time.sleep(0.02)
    return False


def _tagged(tag: str) -> list[int]:
    out = []
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                if f"ZOO_TEST_TAG={tag}".encode() in Path(e.path, "environ").read_bytes().split(b"\0") \
                        and not _dead(int(e.name)):
                    out.append(int(e.name))
            except OSError:
                pass
    return out


def test_passes_and_fails_with_output():
    r = sandbox.run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert (r.status, r.returncode, r.stdout, r.stderr) == ("passed", 0, "out\n", "err\n")
    r = sandbox.run("raise SystemExit(3)")
    assert (r.status, r.returncode) == ("failed", 3)
    r = sandbox.run("assert 1 == 2")
    assert r.status == "failed" and "AssertionError" in r.stderr
    assert 0 < r.duration < 5


def test_stdin_is_empty_unless_given():
    assert sandbox.run("print(input())").status == "failed"  # EOFError: nothing to read
    assert sandbox.run("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"


def test_infinite_loop_hits_the_wall_clock():
    r = sandbox.run("while True:\n    pass", timeout=0.5, cpu_seconds=None)
    assert r.status == "timeout" and r.returncode is None and r.duration < 3


def test_infinite_loop_hits_the_cpu_limit():
    r = sandbox.run("while True:\n    pass", timeout=10, cpu_seconds=1)
    assert r.status == "killed" and r.duration < 5 and "CPU time limit" in r.notes


def test_memory_hog_gets_memory_error():
    r = sandbox.run("x = bytearray(1 << 31)\nprint('allocated')", memory_bytes=256 << 20)
    assert r.status == "failed" and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_huge_output_is_capped_and_killed():
    r = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", output_bytes=100_000, timeout=10)
    assert r.status == "output_limit" and r.output_truncated
    assert len(r.stdout) + len(r.stderr) <= 100_000 and r.duration < 5


def test_closing_stdout_does_not_end_the_run_early():
    src = "import os, sys, time\nos.close(1)\ntime.sleep(0.3)\nprint('still here', file=sys.stderr)\nraise SystemExit(4)"
    r = sandbox.run(src)
    assert (r.status, r.returncode, r.stderr) == ("failed", 4, "still here\n")
    r = sandbox.run("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(5)", timeout=0.5)
    assert r.status == "timeout"


def test_cwd_is_a_fresh_folder_removed_after():
    r = sandbox.run("import os\nopen('f.txt', 'w').write('hi')\nprint(os.getcwd())\nprint(sorted(os.listdir()))",
                    files={"data/in.txt": "x"})
    cwd, listing = r.stdout.splitlines()
    assert Path(cwd).name.startswith("zoo-sandbox-") and listing == "['data', 'f.txt', 'main.py']"
    assert not Path(cwd).exists()
    with pytest.raises(UsageError, match="outside"):
        sandbox.run("pass", files={"../escape.txt": "x"})


def test_file_size_limit_caps_files_anywhere(tmp_path):
    target = tmp_path / "big.bin"
    r = sandbox.run(f"open({str(target)!r}, 'wb').write(b'x' * (4 << 20))", file_size_bytes=1 << 20)
    assert r.status == "failed" and "File too large" in r.stderr
    assert target.stat().st_size <= 1 << 20


def test_writing_outside_its_folder_is_not_prevented(tmp_path):
    """It is not a container: the program has this user's file permissions (docs/sandbox.md)."""
    target = tmp_path / "outside.txt"
    r = sandbox.run(f"open({str(target)!r}, 'w').write('written')")
    assert r.status == "passed" and target.read_text() == "written"


def test_os_system_output_is_captured_and_its_children_killed():
    tag = os.urandom(4).hex()
    r = sandbox.run("import os\nos.system('echo from-shell; sleep 60 &')\nprint('done')",
                    env={"ZOO_TEST_TAG": tag})
    assert r.status == "passed" and r.stdout.split() == ["from-shell", "done"]
    assert not _tagged(tag) or _wait_dead(_tagged(tag)[0])


@pytest.mark.parametrize("cgroup", ["auto", "off"])
def test_a_child_left_running_is_killed(cgroup, monkeypatch):
    if cgroup == "off":
        monkeypatch.setenv("ZOO_SANDBOX_CGROUP", "off")
    src = ("import subprocess, sys\n"
           "a = subprocess.Popen(['sleep', '60'])\n"
           "b = subprocess.Popen(['sleep', '61'], start_new_session=True)\n"  # escapes the process group
           "print(a.pid, b.pid, flush=True)")
    r = sandbox.run(src)
    assert r.status == "passed"
    for pid in map(int, r.stdout.split()):
        assert _wait_dead(pid), f"pid {pid} still running"
    if cgroup == "off":
        assert any("no cgroup" in n for n in r.notes)


def test_child_killed_on_timeout_too():
    r = sandbox.run("import subprocess, time\np = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
                    "print(p.pid, flush=True)\ntime.sleep(60)", timeout=0.5)
    assert r.status == "timeout" and _wait_dead(int(r.stdout))


@pytest.mark.skipif(not sandbox.cgroup_available() and os.geteuid() == 0,
                    reason="as root without a writable pids cgroup nothing bounds a fork bomb (RLIMIT_NPROC does "
                           "not apply to root): not run, to keep the machine safe")
def test_fork_bomb_is_bounded_and_cleaned_up():
    tag = os.urandom(4).hex()
    src = ("import os, time\n"
           "end = time.time() + 30\n"
           "while time.time() < end:\n"
           "    try:\n"
           "        if os.fork() == 0:\n"
           "            print(os.getpid(), flush=True)\n"
           "    except OSError:\n"
           "        time.sleep(0.01)\n")
    r = sandbox.run(src, timeout=1.5, max_processes=16, env={"ZOO_TEST_TAG": tag})
    assert r.status == "timeout"
    assert len(set(r.stdout.split())) < 16  # at most 16 processes at once, and none of them ever exits
    time.sleep(0.1)
    assert _tagged(tag) == []


def test_bad_limits_are_usage_errors():
    with pytest.raises(UsageError, match="timeout"):
        sandbox.run("pass", timeout=-1)
    with pytest.raises(UsageError, match="unknown sandbox limit"):
        sandbox.run("pass", wall=3)
    with pytest.raises(UsageError, match="string"):
        sandbox.run(b"print(1)")  # type: ignore[arg-type]


def test_run_many_keeps_order():
    rs = sandbox.run_many([f"print({i})" for i in range(6)], workers=2)
    assert [r.stdout.strip() for r in rs] == [str(i) for i in range(6)]
