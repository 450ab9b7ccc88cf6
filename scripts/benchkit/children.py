"""Benchmark helper processes: each runs one coroutine on its own event loop.

A benchmark's load clients and watchers run in processes of their own (the
'spawn' start method, so nothing of the parent's loop leaks in), so their
clocks and CPU are not held up by the parent.  Parent and child talk over a
pipe in tuples: the child sends ``("ready", ...)`` when it is set up,
``("done", result)`` or ``("error", text)`` at the end, and the parent may
send anything else (a child decides what it understands).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Coroutine, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

# How long the parent waits for a child to exit after it was asked to stop,
# before terminating it, and for its pipe thread after that.
JOIN_TIMEOUT_S = 5.0

Work = Callable[[Any, Connection], Coroutine[Any, Any, Any]]


def run_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run on uvloop when it is installed (it is, on Linux), as the nodes do."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def child_entry(work: Work, label: str, job: Any, conn: Connection) -> None:
    """A child process's target: run ``work(job, conn)`` and send its result.

    Any failure is sent as ``("error", text)`` too, so the parent never
    waits for a result that will not come.
    """
    try:
        result = run_loop(work(job, conn))
        conn.send(("done", result))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"{label}: {exc!r}"))
        raise


def spawn(work: Work, label: str, job: Any) -> tuple[BaseProcess, Connection]:
    """Start a child process running ``work(job, conn)``; returns it and the parent's end."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=child_entry, args=(work, label, job, child_end), daemon=True)
    process.start()
    child_end.close()
    return process, parent_end


def pump_pipe(
    conn: Connection,
    loop: asyncio.AbstractEventLoop,
    on_message: Callable[[Any], None],
    on_eof: Callable[[BaseException], None],
) -> threading.Thread:
    """A thread that receives from ``conn`` and hands each message to ``loop``.

    (``loop.add_reader`` on the pipe would make its descriptor non-blocking,
    and ``Connection.recv`` cannot read a large message from such a pipe.)
    """

    def deliver(callback: Callable[[Any], None], value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(callback, value)

    def run() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError) as exc:
                deliver(on_eof, exc)
                return
            deliver(on_message, message)

    thread = threading.Thread(target=run, name="pipe", daemon=True)
    thread.start()
    return thread


async def serve_until_stopped(
    conn: Connection,
    tasks: list[asyncio.Task[Any]],
    connected: Sequence[asyncio.Event],
    ready_timeout_s: float,
    then: Sequence[Callable[[], Coroutine[Any, Any, Any]]] = (),
) -> None:
    """A child's main loop: once every ``connected`` event is set, start ``then``,
    tell the parent ``("ready",)`` and run until it says ``("stop",)`` or goes
    away; the tasks are cancelled on the way out, whatever happened."""
    stop = asyncio.Event()

    def on_message(message: Any) -> None:
        if message == ("stop",):
            stop.set()

    pump_pipe(conn, asyncio.get_running_loop(), on_message, lambda exc: stop.set())
    try:
        waiter = asyncio.gather(*(event.wait() for event in connected))
        await asyncio.wait_for(waiter, ready_timeout_s)
        tasks.extend(asyncio.create_task(start()) for start in then)
        conn.send(("ready",))
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def stop_process(process: BaseProcess) -> None:
    """Wait for a child to exit; terminate it if it does not."""
    process.join(timeout=JOIN_TIMEOUT_S)
    if process.is_alive():
        process.terminate()
        process.join(timeout=JOIN_TIMEOUT_S)


class Child:
    """One helper process that reports ready, then runs until told ``("stop",)``.

    ``start`` returns once the child said it is ready; ``stop`` collects its
    result and makes sure the process is gone.
    """

    def __init__(self, work: Work, label: str, job: Any) -> None:
        self.work = work
        self.label = label
        self.job = job
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.pump: threading.Thread | None = None
        self.result: Any = None
        self.error: str | None = None
        self.ready = asyncio.Event()
        self.finished = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _on_message(self, message: Any) -> None:
        match message:
            case ("ready", *_):
                self.ready.set()
            case ("done", result):
                self.result = result
                self.finished.set()
            case ("error", text):
                self.error = str(text)
                self.finished.set()

    def _on_eof(self, exc: BaseException) -> None:
        if self.result is None and self.error is None:
            self.error = f"the {self.label} exited without a result ({exc!r})"
        self.finished.set()

    async def start(self, timeout_s: float) -> None:
        self.process, self.conn = spawn(self.work, self.label, self.job)
        self.pump = pump_pipe(self.conn, asyncio.get_running_loop(), self._on_message, self._on_eof)
        ready = asyncio.ensure_future(self.ready.wait())
        finished = asyncio.ensure_future(self.finished.wait())
        await asyncio.wait(
            {ready, finished}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        finished.cancel()
        if not self.ready.is_set():
            raise RuntimeError(self.error or f"the {self.label} did not get ready in time")

    async def stop(self, timeout_s: float) -> Any:
        """Tell the child to stop, collect its result (None if it had none)."""
        if self.process is None or self.conn is None:
            return None
        try:
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), timeout_s)
        finally:
            await asyncio.to_thread(stop_process, self.process)
            if self.pump is not None:
                await asyncio.to_thread(self.pump.join, JOIN_TIMEOUT_S)
            self.conn.close()
        return self.result
