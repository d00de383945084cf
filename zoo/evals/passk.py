"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained
on Code"): with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), the chance that k
samples drawn without replacement from the n include at least one that passes. Computed as a
product, which stays exact where the binomials overflow."""

from __future__ import annotations

from typing import Sequence

from ..runtime.errors import UsageError


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k)/C(n, k); 1.0 when fewer than k samples fail."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)) or not 0 <= c <= n or k < 1:
        raise UsageError(f"pass@k needs integers 0 <= c <= n and k >= 1, got n={n!r}, c={c!r}, k={k!r}")
    if k > n:
        raise UsageError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(results: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems, each with its own list of pass/fail results (a fraction)."""
    if not results:
        raise UsageError("pass@k of no problems")
    return sum(pass_at_k(len(r), sum(bool(x) for x in r), k) for r in results) / len(results)
