"""GetKeyLastUsage: a key's last successful cryptographic use, as recorded
by core/usage.py (kept in memory, written about once a second)."""

from __future__ import annotations

from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.requests import KeyRequest
from keycask.service.core.resolve import use_key
from keycask.service.core.results import GetKeyLastUsageResult, KeyLastUsageData


async def get_key_last_usage(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    key = (
        await use_key(deps.keys, call, req.key_id, "kms:GetKeyLastUsage", state="GetKeyLastUsage")
    ).value
    usage = await deps.usage.last(key.key_id)
    return Outcome(
        GetKeyLastUsageResult(
            key_id=key.arn,
            key_creation_date=key.created,
            # keycask records every key's use from its creation on.
            tracking_start_date=key.created,
            key_last_usage=(
                KeyLastUsageData()
                if usage is None
                else KeyLastUsageData(
                    operation=usage.operation,
                    timestamp=usage.time,
                    # The audit record of the request carries this id.
                    cloud_trail_event_id=usage.request_id,
                    kms_request_id=usage.request_id,
                )
            ),
        )
    )
