"""``seldon-river run``: a SeldonDeployment's graph on one machine, no cluster.

- :mod:`.manifest` reads the SeldonDeployment (graph, containers, orchestrator env).
- :mod:`.plan` turns each graph node into the ``seldon-river-microservice`` process Seldon's
  operator would have started (class, parameters, environment, model folder, state).
- :mod:`.supervisor` starts, watches and stops those processes.
- :mod:`.orchestrator` walks the graph per request the way Seldon's orchestrator does.
- :mod:`.gateway` serves Seldon's external API (REST and gRPC) in front of it.
- :mod:`.command` is the ``run`` subcommand; :mod:`.demo` the ``demo`` subcommand.
"""
