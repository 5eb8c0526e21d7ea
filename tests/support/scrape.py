"""Fetch the metrics listener's pages over TCP or a unix socket, and parse them."""

from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families


def fetch(address: str, path: str, method: str = "GET") -> tuple[int, str]:
    """(status, body) of one request to the listener at HOST:PORT or a unix socket path."""
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(address)
    else:
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
    with sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: orlop\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


Page = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Page:
    """Every sample of a Prometheus text page, parsed by the library: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)
