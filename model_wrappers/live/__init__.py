"""The live view: a page that plots what a component (or a whole local graph) learns, as it learns.

``GET /live`` answers one self-contained HTML page (its script and charts inline, nothing fetched
from elsewhere) and ``GET /live/events`` a stream of server-sent events, each carrying the
status ``/health/status`` serves and the server's time. Every component serves both on its
metrics port; ``seldon-river run`` serves them on its gateway port for every node of the graph.

- :mod:`.feed`: the newest status of one source, read in a background thread while someone
  watches, handed to a bounded number of streams;
- :mod:`.app`: the ASGI application answering ``/live`` and ``/live/events``;
- :mod:`.sources`: what an event carries for one component, and for a local graph.
"""

from __future__ import annotations

from .app import LiveApp, page
from .feed import FeedFull, StatusFeed

__all__ = ["FeedFull", "LiveApp", "StatusFeed", "page"]
