"""The claims a notebook checks: each paper claim with its evidence and verdict.

*Asserted* claims (exact identities, structural facts) raise :class:`ClaimFailed` when they fail, so a
failed claim fails the run; *reported* claims (sample quality and other results that depend on the
training budget) record a plain "does not hold at this profile" instead of failing.

No verdict rests on NaN: a claim whose evidence is NaN, infinite or missing — in ``values`` (the
numbers the verdict reads), in ``holds`` itself, or as "nan"/"inf" in the evidence text — is recorded
with the verdict :data:`BAD_EVIDENCE` and raises :class:`ClaimFailed`, asserted or reported alike
(``NaN < 0.1`` is False, which would otherwise read as an honest "does not hold").
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .params import dry_run

__all__ = ["INCONCLUSIVE", "BAD_EVIDENCE", "ClaimFailed", "Claim", "Claims", "markdown"]

INCONCLUSIVE = "not separable at this profile"
BAD_EVIDENCE = "fails: evidence is NaN or missing"
# "nan", "inf", "-inf", "infinity" as a number in the evidence text (not "information", "L-inf norm")
_BAD_TEXT = re.compile(r"(?<!\w)(?<!\w-)[-+]?(nan|inf|infinity)(?!\w|-\w)", re.IGNORECASE)


class ClaimFailed(AssertionError):
    """An asserted claim does not hold, or a claim's evidence is NaN or missing."""


@dataclass(frozen=True)
class Claim:
    """One row of a claims table."""

    claim: str      # what the paper says, in one sentence
    evidence: str   # the measurement, with its numbers
    verdict: str    # "holds", "fails", "does not hold at this profile", INCONCLUSIVE or BAD_EVIDENCE
    asserted: bool  # True: a failure stops the run; False: reported only


def _bad_numbers(value: Any) -> str | None:
    """Why ``value`` is not usable evidence ("NaN", "missing", ...), or None when it is finite."""
    if value is None:
        return "missing"
    if isinstance(value, (bool, str)):
        return None if isinstance(value, bool) else f"a string {value!r}, not a number"
    if isinstance(value, Mapping):
        bad = [f"{k}: {why}" for k, v in value.items() if (why := _bad_numbers(v)) is not None]
        return "; ".join(bad) or None
    if isinstance(value, (list, tuple)):
        if not value:
            return "empty"
        bad = [why for v in value if (why := _bad_numbers(v)) is not None]
        return bad[0] if bad else None
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().double().numpy()
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # numpy array or scalar
        import numpy as np

        arr = np.asarray(value, dtype=np.float64)
        if arr.size == 0:
            return "empty"
        return None if np.isfinite(arr).all() else ("NaN" if np.isnan(arr).any() else "infinite")
    try:
        x = float(value)
    except (TypeError, ValueError):
        return f"{type(value).__name__} {value!r:.60}, not a number"
    return None if math.isfinite(x) else ("NaN" if math.isnan(x) else "infinite")


def evidence_problems(evidence: str, holds: Any = True, values: Mapping | None = None) -> list[str]:
    """What makes a claim's evidence unusable: NaN, inf or None values, "nan" in the text, no text.

    Parameters
    ----------
    evidence : str
        The evidence text of the claim.
    holds : bool-like
        The verdict's input; a NaN here (``bool(nan)`` is True) is bad evidence too.
    values : mapping of str to number, tensor or array, optional
        The numbers the verdict reads, e.g. ``{"ed_trained": 0.003, "floor": 0.0004}``.

    Returns
    -------
    list of str
        Empty when the evidence is usable.
    """
    if values is not None and not isinstance(values, Mapping):
        raise ValueError(f"values must be a dict naming the numbers the verdict reads, e.g. "
                         f"values={{'ed': ed, 'floor': floor}}, got {type(values).__name__}")
    problems = []
    if not isinstance(evidence, str) or not evidence.strip():
        problems.append("the evidence text is empty")
    elif _BAD_TEXT.search(evidence):
        problems.append(f"the evidence text contains {_BAD_TEXT.search(evidence).group(0)!r}")
    if not isinstance(holds, bool) and (why := _bad_numbers(holds)) is not None:
        problems.append(f"holds is {why}")
    for name, v in (values or {}).items():
        if (why := _bad_numbers(v)) is not None:
            problems.append(f"{name} is {why}")
    return problems


class Claims:
    """The claims a notebook checks, in order; printed and saved as the claims table.

    Examples
    --------
    >>> claims = Claims()
    >>> claims.check("A(t) is 1 before the interval", "max |A - 1| = 0", True)
    >>> claims.report("samples match the data", "ED 0.02 vs floor 0.001", False,
    ...               values={"ed": 0.02, "floor": 0.001})
    >>> claims.rows[-1].verdict
    'does not hold at this profile'

    The methods return None, so a notebook cell ending in one prints nothing (nbval compares outputs).
    """

    def __init__(self) -> None:
        self.rows: list[Claim] = []

    def _refuse_bad_evidence(self, claim: str, evidence: str, holds: Any, values, asserted: bool) -> None:
        problems = evidence_problems(evidence, holds, values)
        if problems:
            self.rows.append(Claim(claim, str(evidence), BAD_EVIDENCE, asserted))
            raise ClaimFailed(f"claim {claim!r} rests on NaN or missing evidence ({'; '.join(problems)}); "
                              f"evidence: {evidence!r}. Find where the measurement became NaN or empty "
                              "(a diverged training run, an empty sample set) and fix it; a claim cannot "
                              "be decided on it.")

    def check(self, claim: str, evidence: str, holds: Any, values: Mapping | None = None) -> None:
        """Record an asserted claim; raise :class:`ClaimFailed` if it does not hold or its evidence is bad.

        Under a dry run (stand-in data, ``scripts/run_notebook.py --dry-run``) a claim that does not hold
        is recorded as "fails (dry run: not stopped)" and the run goes on; bad evidence still raises.

        ``values``: the numbers the verdict reads (see :func:`evidence_problems`).
        """
        self._refuse_bad_evidence(claim, evidence, holds, values, True)
        holds = bool(holds)
        if not holds and dry_run():  # stand-in data decide nothing: record, do not stop the dry run
            self.rows.append(Claim(claim, evidence, "fails (dry run: not stopped)", True))
            return
        self.rows.append(Claim(claim, evidence, "holds" if holds else "fails", True))
        if not holds:
            raise ClaimFailed(f"claim failed: {claim} — evidence: {evidence}")

    def report(self, claim: str, evidence: str, holds: Any, decidable: bool = True,
               values: Mapping | None = None) -> None:
        """Record a claim whose outcome depends on scale (training budget, sample size).

        Does not raise when the claim does not hold; raises :class:`ClaimFailed` when its evidence is
        NaN or missing. ``decidable=False`` (e.g. the error bars of the compared results overlap)
        records the verdict "not separable at this profile" whatever ``holds`` says.
        """
        self._refuse_bad_evidence(claim, evidence, holds, values, False)
        if not decidable:
            self.rows.append(Claim(claim, evidence, INCONCLUSIVE, False))
            return
        self.rows.append(Claim(claim, evidence, "holds" if holds else "does not hold at this profile",
                               False))

    def inconclusive(self, claim: str, evidence: str, values: Mapping | None = None) -> None:
        """Record a comparison the data cannot decide at this scale (e.g. error bars overlap).

        Raises :class:`ClaimFailed` when the evidence is NaN or missing.
        """
        self._refuse_bad_evidence(claim, evidence, True, values, False)
        self.rows.append(Claim(claim, evidence, INCONCLUSIVE, False))

    def bad_rows(self) -> list[Claim]:
        """The claims recorded with NaN or missing evidence (their call raised ClaimFailed)."""
        return [r for r in self.rows if r.verdict == BAD_EVIDENCE]

    def raise_if_bad(self) -> None:
        """Raise :class:`ClaimFailed` if any claim rests on NaN or missing evidence."""
        bad = self.bad_rows()
        if bad:
            raise ClaimFailed(f"{len(bad)} claim(s) rest on NaN or missing evidence: "
                              + "; ".join(f"{r.claim!r} ({r.evidence})" for r in bad))

    def table(self):
        """The claims as a pandas DataFrame with columns claim, evidence, verdict, checked."""
        import pandas as pd

        return pd.DataFrame([{"claim": r.claim, "evidence": r.evidence, "verdict": r.verdict,
                              "checked": "asserted" if r.asserted else "reported"} for r in self.rows],
                            columns=["claim", "evidence", "verdict", "checked"])

    def markdown(self) -> str:
        """The claims table in Markdown."""
        return markdown(self.table())

    def summary(self) -> str:
        """One deterministic line per asserted claim (what nbval compares), then the reported count.

        Raises :class:`ClaimFailed` if any claim rests on NaN or missing evidence (also when the
        exception of that claim was caught), so the run fails.
        """
        self.raise_if_bad()
        lines = [f"[{r.verdict}] {r.claim}" for r in self.rows if r.asserted]
        n_rep = sum(not r.asserted for r in self.rows)
        lines.append(f"{len(lines)} asserted claims checked; {n_rep} reported claims in the claims table")
        return "\n".join(lines)


def markdown(df, floatfmt: str = ".4g") -> str:
    """A DataFrame as a Markdown table, "|" inside headers and cells escaped (|Δ| would split columns)."""
    import pandas as pd

    esc = df.rename(columns=lambda c: str(c).replace("|", "\\|"))
    for col in esc.columns:
        if not pd.api.types.is_numeric_dtype(esc[col]):
            esc[col] = esc[col].map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    return esc.to_markdown(index=False, floatfmt=floatfmt)
