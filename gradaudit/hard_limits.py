"""Hard limits: `--timeout` and `--max-memory` bound the whole audit of each model on the command line.

The declared-size check (gradaudit.limits) refuses a model before anything is allocated, but it
only sees the sizes a file declares; a shape computed at run time, or a torch `forward` that
allocates, gets past it, and the probe's own `timeout` is only looked at between passes. So the
`gradaudit` command runs its work under a supervisor, and each model's load, static analysis,
probe, rules and verification run inside `model_limits`:

- **Time.** The command forks at start-up: the parent becomes a small supervisor (it has imported
  click, never torch), the child runs `cli.main`. Before each model the child writes a deadline
  and what it is doing (`stage`) on a shared page; the supervisor kills the child with SIGKILL at
  the deadline and prints `exceeded --timeout (N s) while <stage> <model>`, exit 2. A kill from
  another process stops anything: a Python loop in `forward`, a C kernel that never returns, or
  one that holds the GIL, which no in-process watchdog thread could interrupt. With `--debug` the
  supervisor first has the child print every thread's Python stack (faulthandler, which works
  from a signal handler while C code holds the GIL): where the model was stuck.
- **Memory.** Before each model the child lowers its own RLIMIT_DATA to the data memory it uses
  now plus `--max-memory` plus HEADROOM, and restores it afterwards. RLIMIT_DATA counts heap and
  private writable mappings when they are reserved, not when touched, so a huge `torch.empty`
  fails at once, before it can page anything in; RLIMIT_AS would also count the address space
  that torch's libraries and every thread's malloc arena reserve without using (torch's import
  alone maps ~640 MiB, of which ~220 MiB is data). The failed allocation surfaces as MemoryError, numpy's
  MemoryError or torch's "DefaultCPUAllocator: can't allocate memory" RuntimeError, which
  `model_limits` turns into `exceeded --max-memory (N) while <stage> <model>`, exit 2. A library
  that aborts instead (an uncaught std::bad_alloc) ends the child by a signal; the supervisor
  reports that in one line, exit 2, naming the stage.

Why not fork per model, or a watchdog thread in one process: a child forked from a process that
has already run a parallel torch op hangs in its first parallel op (libgomp's thread pool does
not survive fork; measured with torch 2.13 on 2 threads), so only a process that has run no torch
op may fork, which is the command at start-up. Spawning instead re-imports torch for every model
(seconds each). A watchdog thread cannot stop code holding the GIL, and `os._exit` from a thread
would kill whatever embeds gradaudit. The supervisor costs one fork and 20 wake-ups a second.

The limits belong to the command: `cli.main(argv)` called in-process (the tests) and the Python
API `gradaudit.audit()` run without a supervisor; there `model_limits` and `stage` do nothing and
only the probe's between-pass timeout holds. Without fork (Windows) the command runs the same way;
without /proc/self/status (not Linux) the memory backstop is off and the declared check remains.
"""

from __future__ import annotations

import faulthandler
import mmap
import os
import signal
import struct
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from gradaudit.errors import InputError
from gradaudit.limits import format_size, out_of_memory

POLL_S = 0.05  # how often the supervisor looks at the deadline and the child
STACK_DUMP_SIGNAL = signal.SIGUSR1  # faulthandler prints every thread's stack, even while C code holds the GIL
STACK_DUMP_S = 0.5
STAGE_BYTES = 1024
# Memory the audit itself may take beyond --max-memory (parsing, graphs, Python objects: ~5 MiB for
# a small model): a cap set just above a model's tensors must still reach the declared-size check,
# whose message names the tensor, instead of failing on gradaudit's own bookkeeping.
HEADROOM = 64 * 1024**2
# armed (0/1), deadline (time.monotonic, shared by all processes), timeout s, memory cap, stage length
_HEADER = struct.Struct("<Bddqi")

# In the supervised child only: the page shared with the supervisor, and the model being audited:
# its name, what runs now, and its deadline, timeout and cap (None between models).
_board: mmap.mmap | None = None
_model = ""
_doing = ""
_limits: tuple[float, float, int] | None = None


class LimitExceeded(InputError):
    """The audit of one model went past `--timeout` or `--max-memory`."""


def run_supervised(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` in a forked child under the supervisor; its exit code, or 2 past a limit."""
    if not hasattr(os, "fork"):  # no fork (Windows): the probe's between-pass timeout only
        return main(argv)
    board = mmap.mmap(-1, _HEADER.size + STAGE_BYTES)
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        _run_child(main, argv, board, supervisor)
    return _supervise(pid, board, debug="--debug" in (sys.argv[1:] if argv is None else argv))


def _run_child(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, board: mmap.mmap,
               supervisor: int) -> None:
    global _board
    _board = board
    _die_with_parent(supervisor)
    faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)  # where a model was stuck, for --debug
    code = 3
    try:
        code = main(argv)
    except SystemExit as stop:  # click exits by itself when stdout is a closed pipe (`| head`)
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException:  # main maps every error to a code; anything left must still end the child
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be said
                pass
        os._exit(code)


def _die_with_parent(supervisor: int) -> None:
    """Ask Linux to SIGKILL this child if the supervisor dies (a CI job cancelled with SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the forwarded SIGTERM still ends the child
        pass
    if os.getppid() != supervisor:  # it died before the request was made
        os._exit(1)


def _supervise(pid: int, board: mmap.mmap, debug: bool) -> int:
    """Wait for the child; kill it at a model's deadline (with `debug`, after it printed its Python
    stacks). Signals meant for the command reach it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child too: it reports and exits
    forwarded: list[int] = []

    def forward(number: int, _frame: object) -> None:
        forwarded.append(number)
        os.kill(pid, number)

    for name in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(name, forward)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) in forwarded:
                return 128 + os.WTERMSIG(status)  # stopped from outside, as the shell reports it
            return _child_exit_code(status, board)
        armed, deadline, timeout, _, doing = _read(board)
        if armed and time.monotonic() >= deadline:
            os.kill(pid, signal.SIGSTOP)  # freeze it, then make sure the model did not just finish
            armed, deadline, timeout, _, doing = _read(board)
            if armed and time.monotonic() >= deadline:
                if debug:
                    os.kill(pid, STACK_DUMP_SIGNAL)
                    os.kill(pid, signal.SIGCONT)
                    time.sleep(STACK_DUMP_S)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                _say(f"gradaudit: error: exceeded --timeout ({timeout:g} s) while {doing}")
                return LimitExceeded.exit_code
            os.kill(pid, signal.SIGCONT)
        time.sleep(POLL_S)


def _child_exit_code(status: int, board: mmap.mmap) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    name = signal.Signals(number).name if number in set(signal.Signals) else f"signal {number}"
    armed, _, _, cap, doing = _read(board)
    if armed:  # the model's work ended it (a library aborting on a failed allocation): an input error,
        # and the cap is the likely cause worth naming
        _say(f"gradaudit: error: the audit ended by {name} while {doing} (--max-memory {format_size(cap)})")
        return LimitExceeded.exit_code
    _say(f"gradaudit: internal error: the audit ended by {name}")
    return 3


def _say(line: str) -> None:
    """One line on stderr, cleaned like every line the CLI prints (it names the model); on a terminal
    it first erases the child's progress line, cut off by the kill."""
    from gradaudit.report.common import clean

    sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "") + clean(line) + "\n")
    sys.stderr.flush()


def _read(board: mmap.mmap) -> tuple[bool, float, float, int, str]:
    armed, deadline, timeout, cap, length = _HEADER.unpack_from(board, 0)
    text = bytes(board[_HEADER.size:_HEADER.size + max(0, min(length, STAGE_BYTES))])
    return bool(armed), deadline, timeout, cap, text.decode("utf-8", "replace")


def _publish(doing: str) -> None:
    """Write the model's limits and what runs now on the shared page (`armed` while a model runs)."""
    global _doing
    _doing = doing
    text = f"{doing} {_model}".encode("utf-8")[:STAGE_BYTES]
    deadline, timeout, cap = _limits or (0.0, 0.0, 0)
    _board[_HEADER.size:_HEADER.size + len(text)] = text
    _board[:_HEADER.size] = _HEADER.pack(_limits is not None, deadline, timeout, cap, len(text))


def stage(doing: str) -> None:
    """Say what runs now (`probing`), for the message a limit prints; does nothing unsupervised."""
    if _board is not None and _limits is not None:
        _publish(doing)


@contextmanager
def model_limits(model: str, timeout: float, max_memory: int) -> Iterator[None]:
    """Bound the work on one model by `timeout` seconds and `max_memory` (+ HEADROOM) more bytes of data memory."""
    global _model, _limits
    if _board is None:
        yield
        return
    import resource

    from gradaudit.report.common import clean

    _warm_up()
    previous = resource.getrlimit(resource.RLIMIT_DATA)
    used = _data_memory()
    if used is not None:
        ceiling = used + max_memory + HEADROOM
        if previous[1] != resource.RLIM_INFINITY:
            ceiling = min(ceiling, previous[1])
        resource.setrlimit(resource.RLIMIT_DATA, (ceiling, previous[1]))
    _model, _limits = clean(model), (time.monotonic() + timeout, timeout, max_memory)
    _publish("loading")
    try:
        yield
    except BaseException as problem:
        resource.setrlimit(resource.RLIMIT_DATA, previous)  # room again for the message and the unwinding
        if used is not None and out_of_memory(problem):
            cap = format_size(max_memory)
            raise LimitExceeded(f"exceeded --max-memory ({cap}) while {_doing} {_model}") from problem
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, previous)
        _limits = None
        _publish("")


def _warm_up() -> None:
    """Import the loaders (torch, onnx) and start torch's thread pools before measuring: that
    memory is gradaudit's, the same for every model, not the model's."""
    import torch

    import gradaudit.loaders.onnx_loader  # noqa: F401 - imported for its memory, not its names
    import gradaudit.loaders.torch_loader  # noqa: F401

    torch.zeros(1 << 17).add_(1)  # the intra-op (OpenMP) pool
    torch.ones(64, 64) @ torch.ones(64, 64)  # the BLAS pool


def _data_memory() -> int | None:
    """Bytes the process counts against RLIMIT_DATA (VmData, Linux); None where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


