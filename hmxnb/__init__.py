"""hmxnb: reproduce 'When AI Says It Feels' (HMX-feel) with self-rewarded GRPO, notebook by notebook."""

import sys

__version__ = "0.1.0"

# Modules that moved into the runner package (hmxnb/runner/): importing one by its old name fails with one line
# naming the new place, instead of a bare "No module named".
MOVED = {f"hmxnb.{name}": f"hmxnb.runner.{name}" for name in (
    "run", "runsteps", "runstate", "members", "submit", "job", "stop", "freshness", "execute", "browser", "colab",
    "launch")}
# and modules merged into the module of their topic
MOVED |= {"hmxnb.reward_batch": "hmxnb.rewards", "hmxnb.logits": "hmxnb.loglik", "hmxnb.prefix_reuse": "hmxnb.loglik",
          "hmxnb.judge_validity": "hmxnb.judge", "hmxnb.report_text": "hmxnb.report", "hmxnb.render": "hmxnb.report",
          "hmxnb.compare_plots": "hmxnb.plots", "hmxnb.display": "hmxnb.plots", "hmxnb.datahash": "hmxnb.steps",
          "hmxnb.generation": "hmxnb.chat", "hmxnb.grpo_args": "hmxnb.train", "hmxnb.verdict": "hmxnb.report",
          "hmxnb.paper_models": "hmxnb.paper", "hmxnb.schema": "hmxnb.params", "hmxnb.metrics": "hmxnb.compare",
          "hmxnb.rubric": "hmxnb.judge"}


class _MovedModules:
    """A last-resort import finder: only names in MOVED, which no other finder finds any more."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname in MOVED:  # ImportError, not ModuleNotFoundError: `from hmxnb import run` shows this line too
            raise ImportError(f"{fullname} moved to {MOVED[fullname]}: import it from there", name=fullname)
        return None


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def _import_unsloth_first() -> str | None:
    """Import Unsloth before anything imports transformers, TRL or PEFT (it patches them on import).

    Every notebook imports hmxnb before those libraries, so doing it here puts Unsloth first wherever it is installed
    (the GPU extra). On a machine where it cannot load (no GPU) the reason is kept and the CPU path is used.
    HMXNB_IMPORT_UNSLOTH=0 skips it (e.g. with `use_unsloth: false` on a GPU machine that has it installed).
    """
    import importlib.util
    import os

    if os.environ.get("HMXNB_IMPORT_UNSLOTH", "1") == "0" or importlib.util.find_spec("unsloth") is None:
        return None
    try:
        import unsloth  # noqa: F401
    except Exception as err:  # unsloth raises on machines without a supported GPU
        return f"{type(err).__name__}: {err}"
    return None


UNSLOTH_IMPORT_ERROR = _import_unsloth_first()


def unsloth_env(params: dict) -> dict[str, str]:
    """Environment for a process that runs `params` (a notebook kernel, `accelerate launch`, a script): with
    `use_unsloth: false` Unsloth is not imported there, so TRL and transformers stay unpatched on a GPU machine too."""
    return {} if params.get("use_unsloth", True) else {"HMXNB_IMPORT_UNSLOTH": "0"}
