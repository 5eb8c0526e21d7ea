"""A load generator for HTTP-over-unix-socket RPC servers that costs far less than they do.

Each client is its own process (multiprocessing, fork) holding one raw keep-alive unix
socket. Requests are pre-built bytes; a response is framed by its Content-Length (or, for
Go's large bodies, its chunks) and otherwise not parsed: only the status line is checked.
One *operation* is a short script of requests sent one after the other (a Get is one
request; a Mount+Unmount pair is two), and its latency is the time for the whole script.

`trivial_server()` is the cheapest server Python can be — one process per connection,
canned answer, no HTTP parsing — so that running the generator against it shows the
generator's own ceiling, and the CPU time columns show what each side spends per op.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import tempfile
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_CTX = mp.get_context("fork")
_TICK = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT = 10.0  # a request unanswered this long marks the server as hung


def post(
    endpoint: str, body: bytes, content_type: str = "application/vnd.docker.plugins.v1.2+json"
) -> bytes:
    """The request dockerd sends to a plugin: POST, a JSON body, keep-alive."""
    return (
        f"POST {endpoint} HTTP/1.1\r\nHost: plugin\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Connection:
    """One keep-alive connection: send pre-built bytes, frame the answer, copy nothing more.

    Responses are read with recv_into into one reused buffer; the body is copied out only
    when asked for (to check answers before timing), never in the timed loop.
    """

    __slots__ = ("_buf", "_end", "_sock", "_view")

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(path)
        self._buf = bytearray(1 << 18)
        self._view = memoryview(self._buf)
        self._end = 0  # bytes of the buffer holding data received and not yet consumed

    def close(self) -> None:
        self._view.release()
        self._sock.close()

    def _fill(self) -> None:
        if self._end == len(self._buf):
            self._view.release()
            self._buf.extend(bytes(len(self._buf)))
            self._view = memoryview(self._buf)
        received = self._sock.recv_into(self._view[self._end :])
        if not received:
            raise ConnectionError("server closed the connection")
        self._end += received

    def call(self, request: bytes, body: bool = False) -> tuple[bytes, bytes]:
        """Send; return (status code, body if asked for) of the response."""
        self._sock.sendall(request)
        end = self._buf.find(b"\r\n\r\n", 0, self._end)
        while end < 0:
            self._fill()
            end = self._buf.find(b"\r\n\r\n", 0, self._end)
        buf = self._buf
        status = bytes(buf[9:12])
        start = end + 4
        at = buf.find(b"ontent-Length: ", 0, end)
        if at < 0:
            at = buf.find(b"ontent-length: ", 0, end)
        if at >= 0:
            stop = buf.find(b"\r", at, end + 1)
            size = int(buf[at + 15 : stop])
            while self._end < start + size:
                self._fill()
            content = bytes(self._buf[start : start + size]) if body else b""
            self._consume(start + size)
            return status, content
        # Transfer-Encoding: chunked (Go's net/http, for bodies over its buffer).
        parts: list[bytes] = []
        pos = start
        while True:
            line_end = self._buf.find(b"\r\n", pos, self._end)
            while line_end < 0:
                self._fill()
                line_end = self._buf.find(b"\r\n", pos, self._end)
            size = int(bytes(self._buf[pos:line_end]).split(b";")[0], 16)
            need = line_end + 2 + size + 2
            while self._end < need:
                self._fill()
            if size == 0:
                self._consume(need)
                return status, b"".join(parts)
            if body:
                parts.append(bytes(self._buf[line_end + 2 : line_end + 2 + size]))
            pos = need

    def _consume(self, used: int) -> None:
        left = self._end - used
        if left:  # not expected: one request is in flight at a time
            self._buf[:left] = self._buf[used : self._end]
        self._end = left


@dataclass
class Result:
    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_us: float  # generator CPU per op, all clients
    server_cpu_us: float | None  # server CPU per op, when its pid is known
    hung: bool = False  # some request went unanswered for REQUEST_TIMEOUT seconds


def _worker(
    path: str,
    script: Sequence[bytes],
    warmup: float,
    duration: float,
    barrier: mp.synchronize.Barrier,
    out: mp.connection.Connection,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn = Connection(path, timeout=REQUEST_TIMEOUT)
        call = conn.call
        clock = time.perf_counter_ns
        hung = False
        deadline = time.monotonic() + warmup
        try:
            while time.monotonic() < deadline:
                for request in script:
                    call(request)
        except TimeoutError:
            hung = True
        barrier.wait(timeout=60)
        latencies = array("q")
        add = latencies.append
        errors = 0
        cpu0 = os.times()
        begin = clock()
        end = begin + int(duration * 1e9)
        now = begin
        try:
            while now < end and not hung:
                for request in script:
                    status, _ = call(request)
                    if status != b"200":
                        errors += 1
                t = clock()
                add(t - now)
                now = t
        except TimeoutError:
            hung = True
            now = clock()
        cpu1 = os.times()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        out.send((latencies.tobytes(), (now - begin) / 1e9, errors, cpu, hung))
        barrier.wait(timeout=60)  # stay connected until the server's CPU time is read
        conn.close()
    except BaseException as error:
        out.send(error)
        raise
    finally:
        out.close()


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, its threads and its live descendants."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / _TICK
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(_proc_cpu(int(child)) for child in f.read().split())
    return total


def run(
    path: str,
    scripts: Sequence[Sequence[bytes]],
    clients: int,
    duration: float = 3.0,
    warmup: float = 0.5,
    server_pid: int | None = None,
) -> Result:
    """Drive `clients` processes; client i repeats scripts[i % len(scripts)]."""
    barrier = _CTX.Barrier(clients + 1)
    pipes, procs = [], []
    for i in range(clients):
        receive, send = _CTX.Pipe(duplex=False)
        proc = _CTX.Process(
            target=_worker,
            args=(path, scripts[i % len(scripts)], warmup, duration, barrier, send),
            daemon=True,
        )
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    try:
        barrier.wait(timeout=60)
        server0 = _proc_cpu(server_pid) if server_pid else 0.0
        answers = [pipe.recv() for pipe in pipes]
        server1 = _proc_cpu(server_pid) if server_pid else 0.0
        barrier.wait(timeout=60)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    for answer in answers:
        if isinstance(answer, BaseException):
            raise RuntimeError(f"a load generator client failed: {answer!r}") from answer
    latencies = array("q")
    ops_per_s = 0.0
    errors = 0
    client_cpu = 0.0
    seconds = 0.0
    hung = False
    for raw, elapsed, errs, cpu, stuck in answers:
        hung = hung or stuck
        part = array("q")
        part.frombytes(raw)
        latencies.extend(part)
        ops_per_s += len(part) / elapsed if elapsed > 0 else 0.0
        errors += errs
        client_cpu += cpu
        seconds = max(seconds, elapsed)
    ordered = sorted(latencies)
    ops = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(ops - 1, int(q * ops))] / 1e6 if ops else float("nan")

    return Result(
        ops=ops,
        seconds=seconds,
        ops_per_s=ops_per_s,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        errors=errors,
        client_cpu_us=client_cpu / ops * 1e6 if ops else float("nan"),
        server_cpu_us=(server1 - server0) / ops * 1e6 if ops and server_pid else None,
        hung=hung,
    )


# The cheapest server: a process per connection, a canned answer, no HTTP parsing ---------
def _serve_connection(conn: socket.socket, response: bytes) -> None:
    recv, send = conn.recv, conn.sendall
    buf = b""
    while True:
        chunk = recv(65536)
        if not chunk:
            return
        buf += chunk
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            at = buf.find(b"Content-Length: ", 0, end)
            size = int(buf[at + 16 : buf.find(b"\r", at)]) if at >= 0 else 0
            if len(buf) < end + 4 + size:
                break
            buf = buf[end + 4 + size :]
            send(response)


def _trivial_main(path: str, response: bytes, ready: mp.synchronize.Event) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap connection processes
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    ready.set()
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            try:
                _serve_connection(conn, response)
            finally:
                os._exit(0)
        conn.close()


@contextlib.contextmanager
def trivial_server(body: bytes) -> Iterator[tuple[str, int]]:
    """Yield (socket path, pid) of the trivial server answering `body` to every request."""
    directory = tempfile.mkdtemp(prefix="orlop-bench-trivial-")
    path = os.path.join(directory, "trivial.sock")
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    ready = _CTX.Event()
    proc = _CTX.Process(target=_trivial_main, args=(path, response, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("the trivial server did not start")
        assert proc.pid is not None
        yield path, proc.pid
    finally:
        # The connection processes exit when their client closes; the listener is ours.
        proc.kill()
        proc.join(5)
        with contextlib.suppress(OSError):
            os.unlink(path)
            os.rmdir(directory)
