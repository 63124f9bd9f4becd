"""Execute one notebook with papermill: its kernel's own log in kernel.log, settled progress bars, and the error
of a failing cell as one line. (hmxnb.runner.run decides what runs; this module runs it.)"""

from __future__ import annotations

import os
from pathlib import Path


# Progress bars in an executed notebook are a stored document, not a live display: one line when a loop starts and
# one when it ends (tqdm reads TQDM_* variables as its defaults), instead of a red wall of updates; and no warning
# that the kernel has no widgets for them (text bars are what a stored notebook wants).
KERNEL_ENV = {"TQDM_MININTERVAL": "3600", "PYTHONWARNINGS": "ignore:IProgress not found"}


def _kernel_manager(log_path: Path, env: dict | None = None):
    """An AsyncKernelManager whose kernel writes its own log (not cell output) to `log_path`, not to our terminal,
    and runs with KERNEL_ENV and `env` (hmxnb.unsloth_env: no Unsloth import for `use_unsloth: false`)."""
    from jupyter_client import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["env"] = {**(kw.get("env") or os.environ), **KERNEL_ENV, **(env or {})}
            with open(log_path, "ab") as log:
                kw["stderr"] = kw["stdout"] = log
                return await super()._async_launch_kernel(kernel_cmd, **kw)

    return LoggedKernelManager


def execute(notebook: Path, out_nb: Path, parameters: dict, progress: bool, env: dict | None = None) -> None:
    """Run `notebook` into `out_nb`. A KeyboardInterrupt (Ctrl-C, or hmxnb.runner.stop.Stopped) shuts the kernel down
    on its way out (papermill's kernel context), so no kernel outlives the step."""
    import papermill as pm

    pm.execute_notebook(
        str(notebook), str(out_nb), parameters=parameters, kernel_name="python3",
        progress_bar=progress, cwd=str(notebook.parent), log_output=False, report_mode=False,
        kernel_manager_class=_kernel_manager(out_nb.parent / "kernel.log", env),
        coalesce_streams=True,  # one stream output per cell; a progress bar's \r updates collapse to its last line
    )


def error_line(err: Exception) -> str:
    """'ValueError in cell [3]: the last line of its message': what the runner prints and records."""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    cell = getattr(err, "exec_count", None)
    where = f" in cell [{cell}]" if cell is not None else ""
    return f"{ename}{where}: {str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ''}"
