"""Sharing an epoch's reward pro rata, in whole wei, so that the shares add up to the reward exactly.

Rounding rule (largest remainder, Hamilton's method):

1. each account gets `floor(reward * weight / total_weight)` wei;
2. the wei left over (fewer than the number of accounts) go one each to the accounts with the largest remainders
   `reward * weight mod total_weight`;
3. equal remainders are ordered by the account's lowercase hex address, ascending.

All arithmetic is on Python integers (no floats), so the result is exact and the same on every machine.
"""

from __future__ import annotations

from collections.abc import Mapping


def share_pro_rata(reward: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split `reward` wei among the accounts by integer `weights`; the values add up to `reward` exactly.

    Accounts with weight 0 get 0. Raises ValueError on a negative reward or weight, or when all weights are 0.
    """
    if not isinstance(reward, int) or reward < 0:
        raise ValueError(f"reward: {reward!r} is not a non-negative integer (wei)")
    for account, weight in weights.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise ValueError(f"weight of {account}: {weight!r} is not a non-negative integer")
    total = sum(weights.values())
    if total == 0:
        raise ValueError("weights: all zero, nothing to share by")
    shares = {account: reward * weight // total for account, weight in weights.items()}
    left = reward - sum(shares.values())
    by_remainder = sorted(weights, key=lambda a: (-(reward * weights[a] % total), a.lower()))
    for account in by_remainder[:left]:
        shares[account] += 1
    return shares
