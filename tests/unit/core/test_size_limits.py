"""A size below a backend's smallest volume is refused with the range, never rounded up."""

from __future__ import annotations

import pytest

from orlop.backends import BACKENDS, backend_class
from orlop.core.options import bounded_size, exact_size

pytestmark = pytest.mark.unit

GIB, MIB = 1024**3, 1024**2
# kind → (the smallest size it takes, the range its message states)
SMALLEST = {
    "loopfile": (16 * MIB, "16M or more"),
    "ebs": (GIB, "1G or more"),
    "gce": (GIB, "1G or more"),
    "cinder": (GIB, "1G or more"),
    "digitalocean": (GIB, "1G to 16T"),
    "powerflex": (GIB, "1G to 1P"),
    "vsphere": (MIB, "1M to 62T"),
    "azurefile": (GIB, "1G to 100T"),
    "powerscale": (MIB, "1M or more"),
}


def size_option(kind: str):  # type: ignore[no-untyped-def]
    return backend_class(kind).options.options["size"]


def test_every_backend_with_a_size_is_listed_here() -> None:
    sized = {kind for kind in BACKENDS if "size" in backend_class(kind).options.options}
    assert sized == set(SMALLEST)


@pytest.mark.parametrize("kind", sorted(SMALLEST))
@pytest.mark.parametrize("value", ["5", "0", "1023"])
def test_a_size_below_the_minimum_is_refused_with_the_range(kind: str, value: str) -> None:
    _, stated = SMALLEST[kind]
    with pytest.raises(ValueError) as refused:
        size_option(kind).canonical(value)
    message = str(refused.value)
    assert repr(value) in message and stated in message, message
    assert "without a unit counts bytes" in message  # the likely typo, named


@pytest.mark.parametrize("kind", sorted(SMALLEST))
def test_the_minimum_itself_and_a_unit_one_byte_short_of_it(kind: str) -> None:
    smallest, stated = SMALLEST[kind]
    assert int(size_option(kind).canonical(str(smallest))) >= smallest
    with pytest.raises(ValueError) as refused:
        size_option(kind).canonical(f"{smallest - 1}")
    assert stated in str(refused.value)
    half = f"{smallest // MIB // 2}M" if smallest >= 2 * MIB else "512K"
    with pytest.raises(ValueError) as refused:
        size_option(kind).canonical(half)
    assert "without a unit" not in str(refused.value)  # it had one


def test_bounded_size_and_exact_size() -> None:
    assert bounded_size("1.5G", GIB, 2 * GIB, "x") == GIB * 3 // 2
    with pytest.raises(ValueError, match="outside the sizes a thing can have: 1G to 2G"):
        bounded_size("3G", GIB, 2 * GIB, "a thing")
    with pytest.raises(ValueError, match="is not a size"):
        bounded_size("ten", GIB, 2 * GIB, "a thing")
    assert [exact_size(n) for n in (GIB, 16384 * GIB, 300 * MIB, 4097, 1024**5, 1536 * GIB)] == [
        "1G",
        "16T",
        "300M",
        "4097",
        "1P",
        "1536G",
    ]
