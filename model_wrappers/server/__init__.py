"""The project's own server for Seldon components: Seldon's v1 protocol on one event loop.

- :mod:`.main`: the ``seldon-river-microservice`` command (the arguments of Seldon's
  ``seldon-core-microservice``), one process or several workers;
- :mod:`.component`: a component class as Seldon's wrapper calls it (hooks, errors, metrics);
- :mod:`.rest`, :mod:`.grpc_api`: the REST and gRPC APIs Seldon's orchestrator calls;
- :mod:`.metrics`: Seldon's custom metrics in Prometheus' format;
- :mod:`.wire`: Seldon's protobuf messages and services;
- :mod:`.workers`: several serving processes sharing the ports.
"""
