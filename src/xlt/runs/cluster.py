"""``xlt study --engine submitit``: a study's runs as jobs of submitit (an established job engine), on this machine
(its LocalExecutor: ``workers`` jobs at once, cores / workers torch threads each, the rule of the local pool) or on
SLURM (the study file's ``slurm:`` block, submitit's SLURM parameters, one job array).

A job is the study's ``run_job`` on plain data (the run's settings and folder): a module-level function that imports
torch inside and runs the study's own run function, so a job writes its run exactly as the pool does. submitit keeps each job's pickled call, its
result and its stdout/stderr in ``logs/`` inside the study's folder; a job that fails is one line naming its log.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from xlt.errors import XltError

LOGS = "logs"  # submitit's folder inside the study's output folder
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # a local job is never cut short (submitit's default is 2 minutes)
_POLL_S = 1.0
ONE_PROCESS = ("nodes", "ntasks_per_node", "gpus_per_node", "gpus_per_task")  # SLURM parameters that must stay 1


def submitit():
    """The submitit module, or one line naming the extra that installs it."""
    try:
        import submitit as module
    except ImportError:
        raise XltError('--engine submitit needs submitit: pip install "xlt[cluster]"') from None
    return module


def executor_parameters(slurm: dict | None, workers: int) -> dict:
    """The keywords of submitit's ``AutoExecutor.update_parameters``: on SLURM, the ``slurm:`` block's keys as its
    ``slurm_`` parameters (``--workers`` N > 1: at most N array tasks at once, unless the block says
    ``array_parallelism``); on this machine, no time limit."""
    if slurm is None:
        return {"timeout_min": LOCAL_TIMEOUT_MIN}
    if not isinstance(slurm, dict) or not slurm:
        raise XltError("the study file's slurm: block must be a mapping of submitit's SLURM parameters to values")
    if "time" not in slurm:  # submitit's default is 5 minutes, which would cut every run short
        raise XltError("the study file's slurm: block needs time: the minutes one run may take (e.g. time: 240)")
    several = {key: slurm[key] for key in ONE_PROCESS if isinstance(slurm.get(key), int) and slurm[key] > 1}
    if several:  # every task would run the whole run, all into one folder
        key, value = next(iter(several.items()))
        raise XltError(f"the study file's slurm: block asks for {key}: {value}; a study run is one process on one "
                       "GPU (several GPUs per run: xlt train under accelerate launch, docs/several-gpus.md)")
    parameters = {f"slurm_{key}": value for key, value in slurm.items()}
    if workers > 1:
        parameters.setdefault("slurm_array_parallelism", workers)
    return parameters


def make_executor(folder: str | Path, parameters: dict, cluster: str):
    """submitit's ``AutoExecutor`` for ``cluster`` ("slurm", "local"; "debug" runs jobs in this process) with
    ``parameters``, which submitit itself checks: a parameter it does not know is one line."""
    engine = submitit()
    try:
        executor = engine.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as err:  # SlurmExecutor looks for srun
        raise XltError(f"cannot submit to {cluster}: {str(err).splitlines()[0]} (the slurm: block needs a SLURM "
                       "login node; without it --engine submitit runs the jobs here)") from None
    try:
        executor.update_parameters(**parameters)
    except (NameError, ValueError, TypeError, AssertionError) as err:
        first = str(err).splitlines()[0].split(" Valid arguments")[0].strip("'\" ")  # not submitit's list of them
        raise XltError(f"the study file's slurm: block: {first}") from None
    return executor


def run_jobs(run_job, runs: list, names: list[str], output_dir: str | Path, workers: int, slurm: dict | None,
             cluster: str | None = None) -> list[str]:
    """Each run as a job of ``run_job(settings, folder, threads)``; one line per run: ``ran   NAME: metrics`` or
    ``failed NAME: error (log: PATH)``."""
    cluster = cluster or ("slurm" if slurm is not None else "local")
    executor = make_executor(Path(output_dir) / LOGS / "%j", executor_parameters(slurm, workers), cluster)
    calls = [(run.cfg.to_dict(), run.cfg.output_dir) for run in runs]
    if slurm is not None:  # one job array; the cores of each job are SLURM's
        jobs = executor.map_array(run_job, [c[0] for c in calls], [c[1] for c in calls], [None] * len(calls))
        print(f"xlt: submitted {len(jobs)} runs as one SLURM job array; logs in {Path(output_dir) / LOGS}",
              file=sys.stderr, flush=True)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        jobs = _local_jobs(executor, run_job, calls, names, threads, workers)
    return [_outcome(name, job) for name, job in zip(names, jobs)]


def _local_jobs(executor, run_job, calls: list[tuple[dict, str]], names: list[str], threads: int, workers: int) -> list:
    """The jobs on this machine, at most ``workers`` running at once; returns when all have ended."""
    jobs, running = [], []
    for k, (settings, folder) in enumerate(calls):
        while len(running) >= workers:
            time.sleep(_POLL_S)
            running = [job for job in running if not job.done()]
        print(f"xlt: study run {k + 1}/{len(calls)}: {names[k]}", file=sys.stderr, flush=True)
        jobs.append(executor.submit(run_job, settings, folder, threads))
        running.append(jobs[-1])
    while any(not job.done() for job in jobs):
        time.sleep(_POLL_S)
    return jobs


def _outcome(name: str, job) -> str:
    """``ran   NAME: metrics``, or one line of why the job failed and where its log is."""
    try:
        return f"ran   {name}: {job.result()}"
    except Exception as err:  # submitit's FailedJobError carries the job's traceback; UncompletedJobError a state
        return f"failed {name}: {job_error(str(err))} (log: {job.paths.stderr})"


def job_error(message: str) -> str:
    """The line that says what went wrong: the job's exception (the traceback's last line, ``xlt.errors.XltError:``
    dropped), or the first line of a job that ended without a result."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:
        tail = lines[lines.index("Traceback (most recent call last):"):]
        last = next((line for line in reversed(tail) if not line.startswith(("You can check", "- ", "File "))
                     and ":" in line and not line.startswith("----")), tail[-1])
        return last.removeprefix("xlt.errors.XltError: ")
    return lines[0] if lines else "no output"
