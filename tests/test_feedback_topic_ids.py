"""Which feedback messages read from a topic get an id from their place in it (no broker needed)."""

from __future__ import annotations

import json

import pytest

from model_wrappers.kafka_feedback import FeedbackConsumer


class Message:
    def __init__(self, value: dict):
        self._value = json.dumps(value).encode()

    def value(self):
        return self._value

    def topic(self):
        return "feedback"

    def partition(self):
        return 0

    def offset(self):
        return 7


def posted(feedback: dict) -> dict:
    consumer = FeedbackConsumer.__new__(FeedbackConsumer)  # only the message's preparation: no broker
    body, problem = consumer._prepared(Message(feedback))
    assert problem is None
    return json.loads(body)


@pytest.mark.parametrize("feedback", [{"truth": {"data": {"ndarray": [[1]]}}},
                                      {"response": None, "truth": 1}, {"response": {"meta": None}, "truth": 1},
                                      {"response": {"meta": {"tags": {"other": 1}}}, "truth": 1}])
def test_a_feedback_without_an_id_is_named_by_its_place_in_the_topic(feedback):
    tags = posted(feedback)["response"]["meta"]["tags"]
    assert tags["seldon_river_feedback_id"] == "kafka:feedback:0:7"


@pytest.mark.parametrize("feedback", [
    {"response": {"meta": {"puid": "p1"}}, "truth": 1},
    {"request": {"meta": {"puid": "p1"}}, "truth": 1},
    {"response": {"meta": {"tags": {"seldon_river_feedback_id": "mine"}}}, "truth": 1},
    # Malformed parts are posted as they came, for the graph to refuse saying why.
    {"response": "not an object", "truth": 1},
    {"response": {"meta": ["not", "an", "object"]}, "truth": 1},
    {"response": {"meta": {"tags": {"seldon_river_feedback_id": ["not text"]}}}, "truth": 1},
])
def test_a_feedback_with_an_id_or_malformed_is_posted_unchanged(feedback):
    assert posted(feedback) == feedback
