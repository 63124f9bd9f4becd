"""hmxnb: reproduce 'When AI Says It Feels' (HMX-feel) with self-rewarded GRPO, notebook by notebook."""

__version__ = "0.1.0"


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
