"""The text of ``memsweep compare``: per matched trial and role, A, B and ``B − A``.

Reads a :class:`~memsweep.analyze.compare.Comparison`; writes nothing. A difference whose
interval excludes 0 is marked ``*``; peak is one measurement per run, so its difference
has no interval and is never marked.
"""

from __future__ import annotations

import json
from typing import Any

from memsweep.analyze.compare import Comparison, Difference, factor_text, same_folder
from memsweep.units import Estimate, format_bytes, format_interval, format_level, json_ready

_LABELS = {
    "plateau": "plateau",
    "peak": "peak",
    "bytes_per_transition": "bytes/transition",
    "growth": "growth MB/1M",
}


def _value(quantity: str, estimate: Estimate | None, interval: bool, signed: bool = False) -> str:
    if estimate is None:
        return "n/a"
    if quantity == "growth":
        # Bytes per env step = MB per 1M env steps.
        mb = estimate
        if not interval:
            return f"{mb.value:+.3g}" if signed else f"{mb.value:.3g}"
        return format_interval(mb, "MB/1M env steps")
    if quantity == "bytes_per_transition":
        if not interval:
            return f"{estimate.value:,.0f} B"
        return format_interval(estimate, "B/transition")
    if not interval:
        return format_bytes(estimate.value, signed=signed)
    return format_interval(estimate)


def _line(d: Difference) -> str:
    label = _LABELS[d.quantity]
    a = _value(d.quantity, d.a, interval=False)
    b = _value(d.quantity, d.b, interval=False)
    if d.difference is None:
        diff = "n/a"
    elif d.has_interval:
        diff = _value(d.quantity, d.difference, interval=True)
    else:
        diff = _value(d.quantity, d.difference, interval=False, signed=True) + " (no interval)"
    mark = " *" if d.differs else ""
    return f"    {label:<17} A {a:>12}   B {b:>12}   B−A {diff}{mark}"


def comparison_text(comparison: Comparison) -> str:
    """The printed comparison: header, one block per matched trial, the unmatched, notes."""
    c = comparison
    lines = [
        f"Run A: {c.name_a} ({c.uri_a})",
        f"Run B: {c.name_b} ({c.uri_b})"
        + (" — the same folder as A" if same_folder(c.uri_a, c.uri_b) else ""),
        f"Matched on: {', '.join(c.factors) or '(no common factor)'}; "
        f"{len(c.pairs)} trial pair(s); intervals {format_level(c.confidence)}; "
        "* = the difference's interval excludes 0. Growth is the late rate after the "
        "plateau (MB per 1M env steps = bytes per env step).",
    ]
    for trial_a, trial_b, key in c.pairs:
        lines.append("")
        lines.append(f"{trial_a} ↔ {trial_b}: {factor_text(key)}")
        for role in (r for r in c.matched if r.trial_a == trial_a):
            verdicts = (
                role.verdict_a
                if role.verdict_a == role.verdict_b
                else f"{role.verdict_a} → {role.verdict_b}"
            )
            lines.append(f"  {role.role} ({verdicts})")
            lines += [_line(d) for d in role.differences]
    if c.unmatched:
        lines.append("")
        lines.append(f"Unmatched ({len(c.unmatched)}):")
        lines += [
            f"  run {u.run} {u.trial_id}: {factor_text(u.factors)} ("
            + (
                "the other run ran these values fewer times; its trials with them are paired"
                if u.other_has_fewer
                else "no trial of the other run has these values"
            )
            + ")"
            for u in c.unmatched
        ]
    if c.notes:
        lines.append("")
        lines += [f"Note: {note}" for note in c.notes]
    return "\n".join(lines)


def comparison_json(comparison: Comparison) -> str:
    """The comparison as JSON (estimates as ``{estimate, ci_low, ci_high}``; bytes, bytes
    per transition, bytes per env step)."""
    c = comparison
    payload: dict[str, Any] = {
        "run_a": {"name": c.name_a, "uri": c.uri_a},
        "run_b": {"name": c.name_b, "uri": c.uri_b},
        "confidence": c.confidence,
        "matched_on": list(c.factors),
        "pairs": [
            {
                "trial_a": role.trial_a,
                "trial_b": role.trial_b,
                "role": role.role,
                "verdict_a": role.verdict_a,
                "verdict_b": role.verdict_b,
                **{
                    d.quantity: {
                        "a": d.a,
                        "b": d.b,
                        "difference": d.difference if d.has_interval else None,
                        "difference_value": d.difference.value if d.difference else None,
                        "differs": d.differs,
                    }
                    for d in role.differences
                },
            }
            for role in c.matched
        ],
        "unmatched": [
            {
                "run": u.run,
                "trial_id": u.trial_id,
                "factors": dict(u.factors),
                "other_has_fewer": u.other_has_fewer,
            }
            for u in c.unmatched
        ],
        "notes": list(c.notes),
    }
    return json.dumps(json_ready(payload), indent=2)
