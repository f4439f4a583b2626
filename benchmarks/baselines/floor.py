"""The wrapper's floor: a Seldon component that does no work at all.

What ``seldon-core-microservice`` itself costs per request (HTTP, Flask, payload handling,
metrics bookkeeping) is what no component served by it can go below. With ``fast_metrics`` the
component uses :func:`model_wrappers.seldon_metrics.install`, as seldon-river's components do.

Run it with::

    seldon-core-microservice benchmarks.baselines.floor.Floor --service-type MODEL
"""

from __future__ import annotations

try:
    from seldon_core.proto.prediction_pb2 import SeldonMessage  # the stock wrapper's own class
except ImportError:  # the project's server installed without the seldon-core extra
    from model_wrappers.protocol import SeldonMessage

ANSWER = {"data": {"names": ["False", "True"], "ndarray": [[0.5, 0.5]]}}


class Floor:
    """Answers every prediction with the same probabilities and every feedback with nothing.

    Parameters
    ----------
    fast_metrics
        Use seldon-river's one-round-trip metrics bookkeeping.

    """

    def __init__(self, fast_metrics: bool = False, **_ignored):
        self.fast_metrics = fast_metrics

    def load(self):
        if self.fast_metrics:
            from model_wrappers import seldon_metrics

            seldon_metrics.install()

    def predict_raw(self, request):
        if isinstance(request, dict):
            return ANSWER
        reply = SeldonMessage()
        reply.data.names.extend(ANSWER["data"]["names"])
        reply.data.tensor.shape.extend([1, 2])
        reply.data.tensor.values.extend([0.5, 0.5])
        return reply

    def send_feedback_raw(self, feedback):
        return SeldonMessage()
