"""The runner: everything around the method that runs it, kept apart from it.

Which runs (one, a sweep, a member: run.py), one run's steps refused / run / recorded (runsteps.py), the step and run
records and the lock (runstate.py), sweep members (members.py), SLURM and local jobs (submit.py, job.py), stop
signals (stop.py), stale inputs and marked reports (freshness.py), papermill and the kernel of one step
(execute.py), the real-browser check of pages and `hmxnb lab` (browser.py), the notebooks' generated Colab cells and
notebook 03 (colab.py), and the command line (cli.py, `python -m hmxnb`).

The method package (hmxnb, outside this folder) imports nothing from here; notebooks import the method package only
(tests/test_imports.py checks both).
"""
