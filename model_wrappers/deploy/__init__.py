"""Put SeldonDeployments (and what they need) into a Kubernetes cluster and read them back.

``seldon-river deploy`` creates or updates every object of a manifest with server-side apply,
``seldon-river undeploy`` deletes them, ``seldon-river status`` prints what the cluster reports.
A Helm values file for ``charts/seldon-river`` is accepted in place of a manifest.

Modules
-------
manifest
    Reading manifests (multi-document YAML, or a values file rendered with ``helm template``)
    and the checks made before anything is sent to a cluster.
servers
    Whether Seldon Core's operator registers each graph node's ``implementation``.
kube
    A small client for the Kubernetes API (discovery, apply, get, delete) whose errors are one
    line long and say what the cluster answered.
command
    The three subcommands.
"""
