"""Pure helpers: an estimate with its interval, byte formatting, flag parsing.

Nothing here reads data; everything is a small function of its arguments, so the unit
tests and hypothesis properties exercise it directly.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ByteSize, TypeAdapter, ValidationError

from memsweep.errors import MemsweepError

_BINARY_SHORT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i)\s*$", re.IGNORECASE)
_BARE_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)


def parse_bytes(value: str | int | float) -> int:
    """Parse ``"64GB"``, ``"512MiB"`` (also ``"512Mi"``) or ``"1000B"``, with pydantic's
    :class:`~pydantic.ByteSize`: decimal units are 10³, binary ones 2¹⁰.

    A size needs its unit: a bare number (``64``, ``"64"``) is refused with "did you mean
    64GB?" rather than read as 64 bytes. Raises ``ValueError`` naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 16GB, got {value!r}")
    if isinstance(value, int | float) or _BARE_NUMBER_RE.match(str(value)):
        number = str(value).strip()
        raise ValueError(
            f"a size needs a unit, got {number!r}: did you mean {number}GB? "
            f"(write bytes as {number}B)"
        )
    text = str(value)
    short = _BINARY_SHORT_RE.match(text)
    if short:  # ByteSize knows "MiB", not Kubernetes' "Mi".
        text = f"{short.group(1)}{short.group(2)}B"
    try:
        return int(_BYTE_SIZE.validate_python(text.strip()))
    except ValidationError:
        raise ValueError(f"expected a size such as 16GB or 512MiB, got {value!r}") from None


MB = 1e6
"""Decimal megabyte: the unit of drift rates (MB/h), as ``parse_bytes`` reads ``MB``."""


@dataclass(frozen=True)
class Estimate:
    """A fitted number with its interval (two-sided, at the analysis' confidence)."""

    value: float
    """Point estimate, in the unit its name states (bytes, bytes per transition, …)."""

    low: float
    """Lower end of the interval."""

    high: float
    """Upper end of the interval."""

    def contains(self, truth: float) -> bool:
        return self.low <= truth <= self.high

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in another unit (``factor`` > 0)."""
        return Estimate(self.value * factor, self.low * factor, self.high * factor)

    def shifted(self, offset: float) -> Estimate:
        return Estimate(self.value + offset, self.low + offset, self.high + offset)

    def to_json(self) -> dict[str, float | None]:
        return {
            "estimate": _finite(self.value),
            "ci_low": _finite(self.low),
            "ci_high": _finite(self.high),
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def format_bytes(value: float | None, signed: bool = False) -> str:
    """``1234567890`` → ``1.23 GB`` (decimal units, three significant digits)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    size = abs(value)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{sign}{_three_digits(size / scale)} {unit}"
    return f"{sign}{size:.0f} B"


def _three_digits(number: float) -> str:
    if number >= 100:
        return f"{number:.0f}"
    if number >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


def format_interval(estimate: Estimate | None, unit: str = "bytes") -> str:
    """``1.20 GB (95% CI 1.10 GB – 1.30 GB)`` style text; ``unit`` is ``bytes`` or a suffix."""
    if estimate is None:
        return "n/a"
    half = (estimate.high - estimate.low) / 2
    symmetric = math.isclose(estimate.value - estimate.low, half, rel_tol=0.01)
    if unit == "bytes" and symmetric and half < 0.01 * abs(estimate.value):
        return f"{format_bytes(estimate.value)} ± {format_bytes(half)}"
    if unit == "bytes":
        return (
            f"{format_bytes(estimate.value)} "
            f"[{format_bytes(estimate.low)} – {format_bytes(estimate.high)}]"
        )
    low, high = format_number(estimate.low), format_number(estimate.high)
    return f"{format_number(estimate.value)} [{low} – {high}] {unit}"


def as_written(value: object, rel_tol: float = 0.0) -> str:
    """A factor value as a sweep file writes it: a float that is a whole number (within
    ``rel_tol``, for a count carried as a median or an estimate) without ``.0`` or
    thousands separators (``2000``, ``328706``), anything else as ``str`` gives it."""
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and math.isclose(value, round(value), rel_tol=rel_tol)
    ):
        return str(round(value))
    return str(value)


def format_level(confidence: float) -> str:
    """An interval's confidence as a percentage with the digits it needs: 0.95 → ``95%``,
    0.999 → ``99.9%`` (``:.0%`` printed it as ``100%``)."""
    return f"{round(confidence * 100, 10):.10g}%"


def format_number(value: float) -> str:
    """Three significant digits, thousands separators for large values."""
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


_DIGITS = re.compile(r"(\d+)")


def natural_order(values: Iterable[Any]) -> list[Any]:
    """``values`` in the order a reader expects: numbers ascending by value (2 before 10),
    then text, whose digit runs compare as numbers (``64x64`` before ``256x256``)."""

    def key(value: Any) -> tuple[int, float, tuple[tuple[int, int, str], ...]]:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return (0, float(value), ())
        runs = _DIGITS.split(str(value))
        return (
            1,
            0.0,
            tuple((0, int(run), "") if i % 2 else (1, 0, run) for i, run in enumerate(runs)),
        )

    return sorted(values, key=key)


def parse_size(text: str, flag: str) -> int:
    """A user's memory size (``64GB``, ``512MiB``) or a :class:`MemsweepError` naming the flag."""
    try:
        return parse_bytes(text)
    except ValueError:
        if text.strip().startswith("-"):
            hint = "a size is not negative: give one such as 64GB"
        elif _BARE_NUMBER_RE.match(text):
            hint = f"a size needs a unit: did you mean {text.strip()}GB?"
        else:
            hint = "use e.g. 64GB, 16GiB or 512MB"
        raise MemsweepError(f"{flag}: Invalid memory size format: {text!r} ({hint})") from None


_COUNT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kKmMgG])?\s*$")
_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


MAX_COUNT = 10**15
"""The largest count a flag takes (a replay capacity of 10¹⁵ transitions is already far
past any machine; beyond it a float loses whole numbers)."""


def parse_count(text: str, flag: str, minimum: int = 0) -> int:
    """A whole count: ``1000000``, ``1_000_000``, ``1e6`` or ``1M`` (decimal suffixes),
    from ``minimum`` to :data:`MAX_COUNT`. :class:`MemsweepError` (exit 2) otherwise."""
    match = _COUNT_RE.match(text.replace("_", "").replace(",", ""))
    if not match:
        if text.strip().startswith("-"):
            raise MemsweepError(f"{flag}: must be ≥ {minimum}, got {text!r}")
        raise MemsweepError(f"{flag}: expected a whole number such as 1000000 or 1e6, got {text!r}")
    number, suffix = match.groups()
    value = float(number) * _COUNT_SUFFIX[(suffix or "").lower()]
    if value != int(value):
        raise MemsweepError(f"{flag}: expected a whole number, got {text!r}")
    if value < minimum:
        raise MemsweepError(f"{flag}: must be ≥ {minimum}, got {text!r}")
    if value > MAX_COUNT:
        raise MemsweepError(f"{flag}: at most 1e15, got {text!r}")
    return int(value)


def parse_counts(text: str, flag: str, minimum: int = 0, example: str = "4,5,6") -> list[int]:
    """Whole counts separated by commas (``4,5,6``; each as :func:`parse_count` reads it,
    from ``minimum``). :class:`MemsweepError` (exit 2) naming the part that is not one."""
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        if not part.startswith("-") and not _COUNT_RE.match(part.replace("_", "")):
            raise MemsweepError(
                f"{flag}: expected whole numbers separated by commas such as {example}, "
                f"got {part!r}" + (f" in {text!r}" if len(parts) > 1 else "")
            )
    return [parse_count(part, flag, minimum) for part in parts]


_HIDDEN_RE = re.compile(r"^\s*\d+(\s*[,x]\s*\d+)*\s*$")


def parse_model(text: str) -> tuple[str, tuple[int, ...] | None]:
    """``512,512`` or ``512x512`` → (label ``512x512``, dense sizes); any other label as is.

    A conv label such as ``c32k8s4-c64k4s2+512`` has no dense-only shape: (label, None).
    """
    if _HIDDEN_RE.match(text):
        sizes = tuple(int(part) for part in re.split(r"[,x]", text.replace(" ", "")))
        if any(size <= 0 for size in sizes):
            raise MemsweepError(f"--model: layer sizes must be > 0, got {text!r}")
        return "x".join(str(size) for size in sizes), sizes
    if not text.strip():
        raise MemsweepError("--model: expected layer sizes such as 256,256 or a model label")
    return text.strip(), None


def json_ready(value: Any) -> Any:
    """Turn NaN/inf into None and numpy scalars into Python ones, recursively."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, Estimate):
        return value.to_json()
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
