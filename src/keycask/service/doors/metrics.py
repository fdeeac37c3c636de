"""``GET /metrics`` asked by a caller who signs: the Prometheus exposition
for a principal allowed ``keycask:GetMetrics`` (identity policies, on
``*``; administrators are allowed everything).

Not matched by ``X-Amz-Target``: the HTTP route (``http/metrics.py``) hands
such a scrape to the pipeline with this door, so it is authenticated,
authorized and audited like any request (operation ``GetMetrics``, door
``metrics``). A scrape from a loopback peer, or on ``--metrics-listen``, is
answered at the route without a door. Refusals are 403 (an unavailable
store 503), in AWS JSON as the KMS door answers them; the answer's body is
the exposition as bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import AccessDeniedException, KMSError
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.door import Action
from keycask.service.doors.awsjson import AwsJsonErrors, WireCodec
from keycask.service.doors.signed import SignedCallers

GET_METRICS = "GetMetrics"
PERMISSION = "keycask:GetMetrics"


class MetricsDoor(AwsJsonErrors):
    name = "metrics"
    prefixes: tuple[str, ...] = ()
    serves_sealed = False

    def __init__(
        self,
        signed: SignedCallers,
        codec: WireCodec,
        scrape: Callable[[], Awaitable[bytes]],
        *,
        operator_account: str,
    ) -> None:
        super().__init__(codec)
        self._scrape = scrape
        self._operator_account = operator_account
        self._action = Action(GET_METRICS, self._run)
        # A GET carries no X-Amz-Target to sign: the host is required, as ever.
        self.authenticate = partial(signed.authenticate, required_signed_headers=("host",))

    def operation(self, target: str) -> str | None:
        return GET_METRICS

    def action(self, call: Call, request: HttpRequest) -> Action:
        return self._action

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        return None

    async def _run(self, call: Call, request: object) -> Outcome:
        # The series count every account's requests and keys on this node:
        # only the operator account's principals may read them, whatever a
        # tenant administrator's allow-all says.
        assert call.caller is not None
        if call.caller.principal.account != self._operator_account:
            raise AccessDeniedException(
                f"User: {call.caller.arn} is not authorized to perform: {PERMISSION}: "
                "a node's metrics are for principals of the operator account"
            )
        await call.authorize(PERMISSION)
        return Outcome(await self._scrape())

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        assert isinstance(result, bytes)
        return result

    def error_status(self, error: KMSError) -> int:
        # Whatever refused it (no or a bad signature, no permission, sealed),
        # a scrape is forbidden; a store that did not answer is unavailable.
        return 503 if error.status >= 500 else 403

    async def commit(self, writes: Sequence[Write]) -> None:
        raise AssertionError("a scrape stages no writes")
