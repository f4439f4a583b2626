"""Seldon's gRPC services: every method with its full path and its request and response classes.

Examples
--------
>>> method = SERVICES["seldon.protos.Model"]["Predict"]
>>> method.path, method.request.DESCRIPTOR.full_name
('/seldon.protos.Model/Predict', 'seldon.protos.SeldonMessage')
>>> sorted(SERVICES["seldon.protos.Router"])
['Route', 'SendFeedback']

"""

from __future__ import annotations

import dataclasses

from google.protobuf.message import Message

from .messages import POOL, message_class


@dataclasses.dataclass(frozen=True)
class Method:
    """One gRPC method.

    A server reading requests should take the raw bytes and parse them with
    :func:`~model_wrappers.protocol.messages.decode` itself: an exception raised by a gRPC
    request deserializer becomes an INTERNAL error, whereas bytes that do not decode are the
    client's mistake (INVALID_ARGUMENT).
    """

    service: str  # full service name, e.g. "seldon.protos.Model"
    name: str  # e.g. "Predict"
    request: type[Message]
    response: type[Message]

    @property
    def path(self) -> str:
        """The HTTP/2 path gRPC calls, e.g. ``/seldon.protos.Model/Predict``."""
        return f"/{self.service}/{self.name}"


def _services() -> dict[str, dict[str, Method]]:
    file = POOL.FindFileByName("seldon/protos/prediction.proto")
    return {
        service.full_name: {
            method.name: Method(
                service.full_name,
                method.name,
                message_class(method.input_type.full_name),
                message_class(method.output_type.full_name),
            )
            for method in service.methods
        }
        for service in file.services_by_name.values()
    }


# full service name -> method name -> Method, for the services of Seldon Core v1's protocol.
SERVICES: dict[str, dict[str, Method]] = _services()
