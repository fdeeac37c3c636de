"""botocore's KMS model as the codec tests see it (shared by unit and property tests)."""

from __future__ import annotations

from typing import Any

from botocore.loaders import Loader
from botocore.model import ServiceModel

from keycask.http.awsjson import snake_case

MODEL: dict[str, Any] = Loader().load_service_model("kms", "service-2")
SHAPES: dict[str, Any] = MODEL["shapes"]
SERVICE = ServiceModel(MODEL, service_name="kms")


def snaked(value: Any, shape_name: str) -> Any:
    """botocore's CamelCase params as the codec's snake_case values."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        members = shape["members"]
        return {snake_case(k): snaked(v, members[k]["shape"]) for k, v in value.items()}
    if kind == "list":
        return [snaked(item, shape["member"]["shape"]) for item in value]
    if kind == "map":
        return {k: snaked(v, shape["value"]["shape"]) for k, v in value.items()}
    return value
