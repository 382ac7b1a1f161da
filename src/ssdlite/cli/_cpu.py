"""CPU speed for every command: a caching allocator and huge pages, set up before PyTorch is loaded.

Training a detector on the CPU allocates and frees activation buffers of several megabytes at every
layer of every step. glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MB) with a
fresh ``mmap`` each time and gives them back with ``munmap``, so every step faults its activations in
page by page again: measured on the 2-core machine this project is developed on (issue 15), 460k minor
page faults per second and 49% of the training process's CPU time in the kernel. Two remedies, both in
the spirit of PyTorch's own CPU launcher (``torch.backends.xeon.run_cpu``, which preloads tcmalloc or
jemalloc the same way):

- **tcmalloc** (gperftools' ``libtcmalloc_minimal``, Debian package ``libtcmalloc-minimal4``, installed
  by the project's Makefile) keeps freed pages cached, so the same buffers are reused without faults.
  It must be loaded before anything allocates, which for a running Python process means re-executing
  it with ``LD_PRELOAD``. ``TCMALLOC_RELEASE_RATE=0`` stops it returning memory to the system in the
  background (the buffers are needed again at the next step).
- **Transparent huge pages for PyTorch's allocator** (``THP_MEM_ALLOC_ENABLE=1``, read by PyTorch's
  CPU allocator on its first allocation): 2 MB-aligned buffers advised as huge pages, so a fault maps
  512 pages at once. It also helps without tcmalloc, and costs nothing where THP is off.

:func:`relaunch_for_speed` is called by ``ssdlite.cli.main`` when the command runs as a program (not
when ``main(argv)`` is called from Python: a library does not re-execute its host), with the runtime the
arguments choose, parsed without PyTorch (:mod:`ssdlite.cli._runtime` and the runtime table): a command whose
runtime asks for the system allocator (:func:`keeps_system_allocator`) is not re-executed. It does nothing
when the environment already has both settings, off Linux, or when ``SSDLITE_CPU_TUNING=0`` asks for
the plain process. Without tcmalloc on the machine it only sets the huge-page variable in this process,
which is early enough because the ``ssdlite`` package and command line do not import PyTorch until a
command runs.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Sequence

#: Environment switch: ``SSDLITE_CPU_TUNING=0`` keeps the process as started (system allocator, no THP).
SWITCH = "SSDLITE_CPU_TUNING"
#: Set in the re-executed process, so that it never re-executes again (e.g. if the preload failed).
RELAUNCHED = "SSDLITE_RELAUNCHED"
TCMALLOC = "tcmalloc_minimal"


def find_tcmalloc() -> str | None:
    """The soname of tcmalloc known to the dynamic loader (``ldconfig -p``), e.g. ``libtcmalloc_minimal.so.4``."""
    for name in (TCMALLOC, "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def tuned_environment(environ: dict[str, str]) -> tuple[dict[str, str], bool]:
    """``(environment to run with, whether a re-execution is needed to apply it)``.

    A re-execution is needed only to preload tcmalloc; the huge-page variable works when set in this
    process before PyTorch's first allocation.
    """
    env = dict(environ)
    env.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if environ.get(RELAUNCHED) or sys.platform != "linux":
        return env, False
    preload = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    if any("tcmalloc" in p or "jemalloc" in p for p in preload):
        return env, False  # the user chose an allocator already
    lib = find_tcmalloc()
    if lib is None:
        return env, False
    env["LD_PRELOAD"] = " ".join([lib, *preload])
    env.setdefault("TCMALLOC_RELEASE_RATE", "0")
    # tcmalloc reports every allocation above 1 GB on stderr by default; a large batch is not news.
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    env[RELAUNCHED] = "1"
    return env, True


def keeps_system_allocator(argv: Sequence[str]) -> bool:
    """Whether the command line runs a runtime whose row sets ``system_allocator`` (OpenVINO: its CPU plugin
    aborts, "double free or corruption", in a process with tcmalloc preloaded). The runtime is the one the command
    resolves from its parsed ``--format``/``--backend`` or its file's suffix (:func:`ssdlite.cli._runtime.runtime_of_argv`,
    torch-free, the same resolution the command makes)."""
    from ssdlite.cli._runtime import runtime_of_argv

    runtime = runtime_of_argv(argv)
    return runtime is not None and runtime.system_allocator


def relaunch_for_speed(system_allocator: bool = False) -> None:
    """Re-execute the running command with tcmalloc preloaded, or set the huge-page variable in place; nothing
    when the command's runtime needs the ``system_allocator`` (:func:`keeps_system_allocator`).

    Returns only when no re-execution happens. Must run before PyTorch is imported.
    """
    if os.environ.get(SWITCH, "1") == "0" or system_allocator:
        return
    env, relaunch = tuned_environment(dict(os.environ))
    if not relaunch or "torch" in sys.modules:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", env["THP_MEM_ALLOC_ENABLE"])
        return
    # sys.orig_argv is the command line as the interpreter received it (interpreter options, `-m ssdlite`
    # or the console script's path, then the arguments), so the new process is the same command.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
