"""Dataset fingerprints for lineage.

A fingerprint is a hash over (the content digest of the checked rows, the contract, the
preprocessing settings). The content digest sums per-row hashes modulo 2**64, so it does not
depend on row order, file layout or Ray's blocking; any changed, added or removed row changes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ray_ml.data._contract import Contract

__all__ = ["fingerprint"]


def fingerprint(digest: str, contract: Contract, preprocessing: dict[str, Any]) -> str:
    """32 hex characters identifying the data a run trained on."""
    payload = json.dumps(
        {"data": digest, "contract": contract.to_dict(), "preprocessing": preprocessing},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
