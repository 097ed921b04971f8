"""Running the cases: one loop over futures, whether they come from a local process pool or
a Dask cluster.

Both executors get the same pure function (``run_case``) and the same case objects; the
loop keeps a bounded number of cases in flight, records each result as it arrives, and on
Ctrl-C lets the running cases finish (their outputs are whole) before writing the report.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import secrets
import signal
import threading
import time
from collections import deque
from typing import Any, Mapping

from qidicom.batch.cases import Case, CaseResult, run_case
from qidicom.batch.manifest import load_cases
from qidicom.batch.progress import Progress
from qidicom.batch.report import BatchReport
from qidicom.batch import storage
from qidicom.batch.storage import resolve
from qidicom.errors import QidicomError

#: A case in flight when a local worker process dies is run again alone; if its worker dies
#: then too, it is reported failed (Dask's scheduler applies its own rule instead,
#: ``distributed.scheduler.allowed-failures``).
LOCAL_ATTEMPTS = 2
REPORT_NAME = "qidicom-batch-report"
#: How long past its --case-timeout a case may run before the driver stops it from outside
#: (the worker's own time limit is delivered between Python steps, so a case stuck inside one
#: C call, or a worker that cannot exit, would otherwise hold the batch forever). The local
#: pool's worker is then terminated; a Dask case is abandoned (its thread may run on, but its
#: deadline check writes nothing).
TIMEOUT_GRACE = 15.0
#: How long a local worker gets to exit when the pool closes before it is terminated.
EXIT_GRACE = 30.0


_busy = threading.Lock()


def _worker_start() -> None:
    """Set up a local pool's worker process."""
    # Ctrl-C in a terminal reaches the whole process group; the driver decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker would outlive a driver killed outright (it holds its own end of the task
    # queue, and the forkserver waits for it), so it watches the driver: when the driver is
    # gone it finishes the case it is running, whose output is then whole, and leaves.
    driver = multiprocessing.parent_process()
    if driver is None:
        return

    def watch() -> None:
        driver.join()  # returns when the driver's end of the pipe closes: when it dies
        with _busy:
            os._exit(0)

    threading.Thread(target=watch, name="qidicom-batch-driver-watch", daemon=True).start()


def _pool_case(case: Case) -> CaseResult:
    with _busy:
        return run_case(case)


class _Inline:
    """Cases run one after another in this process (``workers=0``): for debugging, and for
    fsspec's in-process ``memory://`` store."""

    description = "this process"
    dashboard = None
    stops_cases_by_restarting = False

    def slots(self) -> int:
        return 1

    def submit(self, case: Case) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(run_case(case))
        return future

    def restart(self) -> None:
        pass

    def stop_now(self) -> None:
        pass

    def close(self) -> None:
        pass


class _LocalPool:
    """A process pool of ``workers`` processes on this machine."""

    dashboard = None
    stops_cases_by_restarting = True  # a stuck case is stopped with its worker

    def __init__(self, workers: int):
        self.workers = workers
        self.description = f"local process pool, {workers} worker(s)"
        self._start()

    def _start(self) -> None:
        methods = multiprocessing.get_all_start_methods()
        if "forkserver" in methods:
            # Workers fork from a server that has imported the library once: fast starts,
            # and no fork of a driver that runs threads (the progress bar, the executor's own).
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["qidicom.batch.cases", "qidicom.seg", "qidicom.pm", "qidicom.sr"])
        else:
            context = multiprocessing.get_context("spawn")
        self.executor = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_worker_start)

    def slots(self) -> int:
        return self.workers

    def submit(self, case: Case) -> cf.Future:
        return self.executor.submit(_pool_case, case)

    def _processes(self) -> list:
        return list((getattr(self.executor, "_processes", None) or {}).values())

    def _end(self, processes: list, grace: float) -> None:
        """Wait up to ``grace`` seconds for the processes to exit, then terminate, then kill."""
        until = time.monotonic() + grace
        for process in processes:
            process.join(timeout=max(0.0, until - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def restart(self) -> None:
        """A worker died and took the pool with it (concurrent.futures cannot replace one), or
        a case overran its time limit: stop every worker and start a new pool.

        Waits until the old workers are gone, so that no retried case runs beside an earlier
        attempt at it.
        """
        processes = self._processes()
        for process in processes:
            process.terminate()
        self._end(processes, 10.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._start()

    def stop_now(self) -> None:
        processes = self._processes()
        for process in processes:
            process.terminate()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._end(processes, 5.0)

    def close(self) -> None:
        # Not shutdown(wait=True): a worker that cannot exit would hold the batch forever.
        processes = self._processes()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._end(processes, EXIT_GRACE)


class _Dask:
    """A ``distributed.Client``: an existing cluster's, or one on a LocalCluster we own."""

    # A stuck case is abandoned: its thread may run on, but its deadline check writes nothing.
    stops_cases_by_restarting = False

    def __init__(self, client, cluster=None):
        self.client = client
        self.cluster = cluster
        self.executor = client.get_executor(pure=False)
        self.dashboard = getattr(client, "dashboard_link", None)
        workers = len(client.scheduler_info().get("workers", {}))
        self.description = f"Dask scheduler {client.scheduler.address}, {workers} worker(s)"
        self._slots = (0.0, 1)

    def slots(self) -> int:
        checked, slots = self._slots
        if time.monotonic() - checked > 2.0:  # workers come and go; ask now and then
            slots = max(1, sum(self.client.nthreads().values()))
            self._slots = (time.monotonic(), slots)
        return slots

    def submit(self, case: Case) -> cf.Future:
        key = f"qidicom-{case.conversion}-{case.id}-{secrets.token_hex(4)}"
        return self.executor.submit(run_case, case, key=key)

    def restart(self) -> None:
        pass  # the scheduler replaces dead workers itself

    def stop_now(self) -> None:
        self.executor.shutdown(wait=False)

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        if self.cluster is not None:
            self.client.close()
            self.cluster.close()


def _backend(client, scheduler: str | None, workers: int | None):
    if client is not None:
        return _Dask(client)
    if scheduler:
        try:
            import distributed
        except ImportError:
            raise QidicomError("--scheduler needs Dask's distributed (pip install 'qidicom[batch]')") from None
        if scheduler == "local" or scheduler.startswith("local:"):
            count = scheduler.partition(":")[2]
            if count and not count.isdigit():
                raise QidicomError(f"--scheduler {scheduler}: expected local:N, N a number of workers")
            n = int(count) if count else (workers or os.cpu_count() or 1)
            # The cluster is ours and lives only for this batch: its chatter is not news.
            for name in ("distributed", "tornado"):
                logging.getLogger(name).setLevel(logging.ERROR)
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
            )
            return _Dask(distributed.Client(cluster), cluster)
        try:
            return _Dask(distributed.Client(scheduler, timeout="20s"))
        except (OSError, TimeoutError, ValueError) as error:
            raise QidicomError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({error})") from None
    count = (os.cpu_count() or 1) if workers is None else workers
    if count < 0:
        raise QidicomError(f"--workers {count}: expected 0 (this process) or more")
    return _Inline() if count == 0 else _LocalPool(count)


def _failure(case: Case, error: BaseException) -> CaseResult:
    name = type(error).__name__
    if name == "KilledWorker":
        text = "the worker running it died each time it was tried (a crash, or out of memory)"
    elif isinstance(error, cf.CancelledError):
        text = "cancelled"
    else:
        text = f"{name}: {error}".strip()
    return CaseResult.of(case, "failed", error=text)


def run_cases(cases: list[Case], backend, progress: Progress) -> tuple[dict[str, CaseResult], bool]:
    """Run cases on a backend; returns the results by case and whether Ctrl-C stopped it."""
    results: dict[str, CaseResult] = {}
    queued = deque(cases)
    running: dict[cf.Future, Case] = {}
    crashes: dict[str, int] = {}

    def record(result: CaseResult) -> None:
        results[result.case] = result
        progress.update(result)

    def collect(futures) -> None:
        broken = []
        for future in futures:
            case = running.pop(future)
            try:
                record(future.result())
            except cf.process.BrokenProcessPool:
                broken.append(case)
            except Exception as error:
                record(_failure(case, error))
        if broken:
            # A worker process died and the pool with it. Which case killed it is unknown, so
            # each case then in flight is a suspect: tried again alone, and failed if the
            # worker dies with it alone too.
            for future, case in running.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    record(future.result())
                else:
                    broken.append(case)
            running.clear()
            backend.restart()
            for case in reversed(broken):
                crashes[case.id] = crashes.get(case.id, 0) + 1
                if crashes[case.id] >= LOCAL_ATTEMPTS:
                    record(CaseResult.of(case, "failed", error="the worker process died running this case (a crash, or out of memory)"))
                else:
                    queued.appendleft(case)

    def may_start(case: Case) -> bool:
        if any(crashes.get(other.id) for other in running.values()):
            return False  # a suspect runs alone
        return not (crashes.get(case.id) and running)

    def stop_overdue() -> None:
        """Stop, from outside, cases far past their time limit.

        A case's own limit ends it between Python steps; this is for one stuck in a C call
        or in a worker that cannot exit. Cases start in the order submitted, so the first
        ones in flight, as many as there are slots, are the running ones: a case's clock
        starts when it becomes one of them (checked each second, so it errs late).
        """
        now = time.monotonic()
        head = list(running)[: backend.slots()]
        for future in [future for future in began if future not in running]:
            del began[future]  # ended
        for future in head:
            began.setdefault(future, now)
        overdue = [
            future for future in head
            if running[future].timeout and now - began[future] > running[future].timeout + TIMEOUT_GRACE
        ]
        if not overdue:
            return
        stopped = [running[future] for future in overdue]
        for future in overdue:
            case = running.pop(future)
            if not backend.stops_cases_by_restarting:
                future.cancel()  # (a local pool's futures end with the pool)
            record(CaseResult.of(
                case, "timeout", seconds=round(now - began[future], 4),
                error=f"no result within {case.timeout:g} s (--case-timeout); stopped from outside",
            ))
        if backend.stops_cases_by_restarting:
            # The stuck worker is stopped with the pool; the other cases in flight are not
            # suspects, just run again.
            others = list(running.values())
            running.clear()
            backend.restart()
            queued.extendleft(reversed(others))
        for case in stopped:
            storage.remove_partials(case.output)

    began: dict[cf.Future, float] = {}  # when each running case became one of the first
    try:
        while queued or running:
            window = max(2 * backend.slots(), backend.slots() + 2)
            while queued and len(running) < window and may_start(queued[0]):
                case = queued.popleft()
                running[backend.submit(case)] = case
            done, _ = cf.wait(list(running), timeout=1.0, return_when=cf.FIRST_COMPLETED)
            collect(done)
            stop_overdue()
        return results, False
    except KeyboardInterrupt:
        pass
    # Interrupted: nothing new starts; running cases finish, since their work is nearly done
    # and their outputs are whole either way.
    for future in list(running):
        if future.cancel():
            running.pop(future)
    progress.note(f"interrupted: letting {len(running)} running case(s) finish (Ctrl-C again to stop them now)")
    try:
        while running:
            done, _ = cf.wait(list(running), timeout=1.0, return_when=cf.FIRST_COMPLETED)
            collect(done)
            stop_overdue()
    except KeyboardInterrupt:
        backend.stop_now()
    return results, True


def run_batch(
    manifest: Any,
    output_directory: str | os.PathLike,
    client=None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    defaults: Mapping[str, Any] | None = None,
    force: bool = False,
    case_timeout: float | None = None,
    report: str | os.PathLike | bool = True,
    progress: bool = True,
    base: str | os.PathLike | None = None,
    verbose: bool = False,
) -> BatchReport:
    """Convert every case of a manifest; returns the report (also written, unless ``report=False``).

    ``manifest`` is a path or URL (CSV, JSON lines, Parquet), a DataFrame or a list of dicts,
    checked whole first (ManifestError lists every bad row). Cases run on ``client`` (a
    ``distributed.Client``) if given, else on ``scheduler`` ("tcp://host:port", or "local:N"
    for a LocalCluster started and stopped here), else on a local pool of ``workers``
    processes (default: the core count; 0 runs them in this process). Cases whose output is
    up to date are skipped unless ``force``. ``report`` is where to write
    ``<report>.csv`` and ``.json`` (default: qidicom-batch-report in the output directory).
    ``progress`` shows a bar on a terminal and a line now and then elsewhere; ``verbose`` adds
    a line per case.

    In a script, call it under ``if __name__ == "__main__":``: worker processes start by
    importing the main module, as with every multiprocessing or Dask start method but fork.
    """
    cases = load_cases(manifest, output_directory, defaults=defaults, base=base, force=force, case_timeout=case_timeout)
    location = None
    if report is not False:
        root = resolve(os.fspath(output_directory), os.getcwd())
        location = resolve(REPORT_NAME, root) if report is True else resolve(os.fspath(report), os.getcwd())
        location = location.removesuffix(".csv").removesuffix(".json")
        # The report may land in a folder that is also an input: it is none of the inputs.
        cases = [dataclasses.replace(case, bookkeeping=(location + ".csv", location + ".json")) for case in cases]
    started = time.monotonic()
    meter = Progress(len(cases), enabled=progress, each=verbose)
    backend = _backend(client, scheduler, workers)
    interrupted = False
    try:
        meter.note(f"qidicom batch: {len(cases)} case(s) on {backend.description}")
        if backend.dashboard:
            meter.note(f"Dask dashboard: {backend.dashboard}")
        results, interrupted = run_cases(cases, backend, meter)
    finally:
        meter.close()
        backend.close()
    ordered = [results.get(case.id) or CaseResult.of(case, "not run") for case in cases]
    outcome = BatchReport(
        ordered, seconds=time.monotonic() - started, scheduler=backend.description,
        dashboard=backend.dashboard, interrupted=interrupted,
    )
    if location is not None:
        outcome.write(location)
    return outcome
