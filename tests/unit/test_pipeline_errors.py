"""The retryable answer for a store or write lock not there in time is one
the operation's model lists: DependencyTimeoutException where it does,
KMSInternalException (every operation lists it) where it does not."""

from __future__ import annotations

import botocore.session

from keycask.service.doors.awsjson import NO_DEPENDENCY_TIMEOUT


def test_operations_without_dependency_timeout_match_the_model() -> None:
    model = botocore.session.get_session().get_service_model("kms")
    lacking = set()
    for name in model.operation_names:
        errors = {shape.name for shape in model.operation_model(name).error_shapes}
        assert "KMSInternalException" in errors, name
        if "DependencyTimeoutException" not in errors:
            lacking.add(name)
    assert lacking == NO_DEPENDENCY_TIMEOUT
