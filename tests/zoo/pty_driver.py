"""Drives `zoo chat` through a real pseudo-terminal (stdlib only: run in a fresh interpreter, so
the fork happens in a process without torch's threads). Usage: `import pty_driver; pty_driver.main(PYTHON, FOLDER)`;
exits 0 when the session went as expected, else prints what it saw and exits 1."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time


CHILD = [0]


def _child_state() -> str:
    try:
        with open(f"/proc/{CHILD[0]}/status") as f:
            state = [line for line in f if line.startswith("State")]
        with open(f"/proc/{CHILD[0]}/wchan") as f:
            return f"child {CHILD[0]}: {state} {f.read()}"
    except OSError as e:
        return f"child {CHILD[0]}: {e}"


def read_until(fd: int, needle: bytes, timeout: float = 90.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {needle!r} in {buf[-600:]!r} ({_child_state()})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}: {buf[-600:]!r}")
            buf += chunk
    return buf


def drive(python: str, folder: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the REPL on the pty
        # a terminal session's Ctrl-C: a runner started in the background (`cmd &` in a script)
        # ignores SIGINT, exec keeps SIG_IGN, and Python then installs no KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(python, [python, "-m", "zoo", "chat", folder, "--max-new-tokens", "30000", "--system", "Be brief."])
    CHILD[0] = pid
    try:
        read_until(fd, b">>> ")
        os.write(fd, b"/system\n")
        read_until(fd, b"system prompt cleared")
        os.write(fd, b"hello zoo\n")
        read_until(fd, b"hello zoo\r\n")
        time.sleep(1.0)  # mid-reply: 30000 tokens take several seconds even on a fast machine
        os.write(fd, b"\x03")
        after = read_until(fd, b"(reply stopped)\r\n>>> ")  # the reply ends and the prompt is back
        assert b"Traceback" not in after, after
        os.write(fd, b"/reset\n")
        read_until(fd, b"(conversation reset)")
        os.write(fd, b"/exit\n")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        pid = 0
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def main(python: str, folder: str) -> None:
    try:
        drive(python, folder)
    except AssertionError as e:
        print(f"pty session failed: {e}")
        sys.exit(1)
    print("ok")
