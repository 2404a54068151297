"""One warm Jupyter kernel per runner process, reused from notebook to notebook (used by `xfer rehearse`).

A rehearsal run lasts seconds, and about half of them went to starting a kernel and importing torch, transformers,
datasets and matplotlib again for every notebook (measured: ~3 s for the imports cell, ~4.5 s of transformers' lazy
model and tokenizer imports inside the phase, ~1 s for matplotlib/seaborn, ~1.5 s kernel start, of 12-21 s per
run). Here a kernel is started once per runner process and each notebook is executed in it by papermill (the same
notebook, the same injected parameters cell, the same cells) after a reset: the user namespace is cleared
(``%reset -f``), figures are closed, the working directory and execution counter are set as a fresh kernel would
have them. Modules stay imported: that is the saving.

What a fresh kernel would catch and this would not: a notebook that works only because an earlier notebook imported
or set something outside its namespace. Every phase notebook imports what it uses, the first run of each process is
on a fresh kernel, and after a failed run the kernel is replaced; `xfer rehearse --fresh-kernels` turns reuse off.
`xfer run` (the user's real runs, minutes to hours each) always starts a fresh kernel per run.
"""
from __future__ import annotations

import os

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

ENGINE = "xfer-warm-kernel"

# Run silently before a notebook's first cell: the state a fresh kernel would have, bar the imported modules.
_RESET = """\
get_ipython().run_line_magic("reset", "-f")
import os as _xfer_os, sys as _xfer_sys
_xfer_os.chdir({cwd!r})
if "matplotlib.pyplot" in _xfer_sys.modules:
    _xfer_sys.modules["matplotlib.pyplot"].close("all")
get_ipython().execution_count = 1
del _xfer_os, _xfer_sys
"""


class _Client(PapermillNotebookClient):
    """papermill's client on a kernel it does not own: resets the kernel first, closes its channels after."""

    def __init__(self, nb_man, reset_code: str, **kw):
        super().__init__(nb_man, **kw)
        self.reset_code = reset_code

    def papermill_execute_cells(self):
        reply = self.wait_for_reply(self.kc.execute(self.reset_code, silent=True, store_history=False))
        if not reply or reply["content"].get("status") != "ok":
            where = self.nb_man.nb.metadata.get("papermill", {}).get("input_path", "the notebook")
            raise RuntimeError(f"could not reset the warm kernel before {where}: {reply and reply['content']}")
        super().papermill_execute_cells()


class WarmEngine(NBClientEngine):
    """papermill engine: execute in the caller's kernel manager `km` (started on first use, kept alive after)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, **kwargs):
        km = kwargs.pop("km")
        cwd = os.getcwd()                  # papermill.execute_notebook has chdir'ed to its `cwd` argument
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logger, log_output=log_output, stdout_file=stdout_file,
                             stderr_file=stderr_file)
        client = _Client(nb_man, reset_code=_RESET.format(cwd=str(cwd)), km=km, **final)
        try:
            return client.execute()
        finally:
            if client.kc is not None:      # the client is ours to close; the kernel is the keeper's
                client.kc.stop_channels()


papermill_engines.register(ENGINE, WarmEngine)


class WarmKernel:
    """The kernel of one runner process. `execute(...)` takes papermill.execute_notebook's arguments; a failed
    notebook (or a dead kernel) retires the kernel, so the next notebook starts on a fresh one."""

    def __init__(self):
        self.km = None
        self.runs = 0

    def execute(self, input_path, output_path, **kw):
        import papermill
        from jupyter_client.manager import AsyncKernelManager
        if self.km is not None and not self._alive():
            self.close()
        if self.km is None:
            self.km = AsyncKernelManager(kernel_name=kw.get("kernel_name") or "python3")
        try:
            nb = papermill.execute_notebook(input_path, output_path, engine_name=ENGINE, km=self.km, **kw)
        except BaseException:
            self.close()
            raise
        self.runs += 1
        return nb

    def _alive(self) -> bool:
        from jupyter_core.utils import run_sync
        try:
            return bool(run_sync(self.km.is_alive)())
        except Exception:          # noqa: BLE001 - a kernel we cannot ask is a kernel we replace
            return False

    def close(self) -> None:
        """Shut the kernel down (idempotent)."""
        km, self.km = self.km, None
        if km is None:
            return
        from jupyter_core.utils import run_sync
        try:
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=True)
        except Exception:          # noqa: BLE001 - shutting down a kernel that is already gone
            pass
