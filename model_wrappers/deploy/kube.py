"""A small Kubernetes API client for any kind of object, with one-line errors.

It speaks the REST API through the ``kubernetes`` package's configured ``ApiClient`` (so
kubeconfig files, contexts, client certificates, tokens and in-cluster configuration all work)
and finds each kind's URL by API discovery, which is also how a cluster without Seldon's CRD is
recognised. Every failure becomes a :class:`ClusterError` whose message says what the cluster
answered, in one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from .manifest import SELDON_GROUP

FIELD_MANAGER = "seldon-river"
# How server-side apply words a schema violation it finds while building the patch.
TYPED_PATCH_ERROR = "failed to create typed patch object"
# (connect, read) seconds: an unreachable server should fail fast, a slow apply should not.
REQUEST_TIMEOUT = (5, 60)


class ClusterError(Exception):
    """The cluster could not be reached, or refused or failed a request."""


class SeldonNotInstalled(ClusterError):
    """The cluster does not serve SeldonDeployments: Seldon Core's CRD is missing."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API, as discovery reports it."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path of the collection, or of one object when ``name`` is given."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is needed")
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


@dataclass(frozen=True)
class Ref:
    """One object: its resource, name and namespace (None for cluster-scoped kinds)."""

    resource: Resource
    name: str
    namespace: str | None

    def __str__(self) -> str:
        group = self.resource.api_version.rpartition("/")[0]
        kind = f"{self.resource.plural}.{group}" if group else self.resource.plural
        where = f" (namespace {self.namespace})" if self.namespace else ""
        return f"{kind}/{self.name}{where}"


def _status_message(exc: ApiException) -> str:
    """The message of the Status object the server sent back, or the HTTP reason."""
    try:
        body = json.loads(exc.body)
        message = body.get("message")
        if message:
            return " ".join(str(message).split())
    except (TypeError, ValueError, AttributeError):
        pass
    return f"HTTP {exc.status} {exc.reason}".strip()


def _connection_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, e.g. 'Connection refused'."""
    reason = getattr(exc, "reason", None) or exc
    while getattr(reason, "reason", None) is not None and reason.reason is not reason:
        reason = reason.reason
    text = str(reason)
    # urllib3 wraps the OS error as "<object at 0x...>: Failed to establish ...: [Errno 111] Connection refused"
    if "] " in text:
        text = text.rsplit("] ", 1)[1]
    return text.rstrip(")").strip() or type(reason).__name__


class Cluster:
    """A connection to one API server, as the kubeconfig (or in-cluster configuration) says.

    Parameters
    ----------
    kubeconfig
        Path of the kubeconfig file; default ``$KUBECONFIG`` or ``~/.kube/config``, or the pod's
        service account when running in a cluster with no kubeconfig.
    context
        Context of the kubeconfig to use; default its current context.
    """

    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        self.default_namespace = "default"
        if kubeconfig is not None and not os.path.isfile(kubeconfig):
            raise ClusterError(f"kubeconfig {kubeconfig} does not exist")
        if kubeconfig is None and not _in_cluster_only() and not _default_kubeconfig_exists():
            raise ClusterError(
                "no kubeconfig: set KUBECONFIG or pass --kubeconfig (~/.kube/config does not exist)"
            )
        try:
            if kubeconfig is None and context is None and _in_cluster_only():
                config.load_incluster_config()
                self.api = client.ApiClient()
                self.default_namespace = _pod_namespace() or "default"
            else:
                self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
                contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context is not None:
                    active = next((c for c in contexts if c.get("name") == context), active)
                ns = (active or {}).get("context", {}).get("namespace")
                self.default_namespace = ns or "default"
        except ConfigException as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ClusterError(f"cannot use kubeconfig {where}: {exc}") from None
        except OSError as exc:
            raise ClusterError(f"cannot read kubeconfig {kubeconfig}: {exc.strerror}") from None
        self.server = self.api.configuration.host
        self._discovered: dict[str, dict[str, Resource]] = {}

    # -- raw requests --------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body=None,
        content_type: str = "application/json",
    ) -> dict:
        """Sends one request and returns the decoded JSON answer.

        Raises
        ------
        ClusterError
            The server cannot be reached, or answered with an error status (``status`` and
            ``message`` attributes are set on the exception for the latter).
        """
        try:
            resp = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 0 or exc.status is None:
                raise ClusterError(f"cannot reach the Kubernetes API server at {self.server}: {exc.reason}") from None
            err = ClusterError(_status_message(exc))
            err.status = exc.status
            raise err from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API server at {self.server}: {_connection_reason(exc)}"
            ) from None
        data = resp.data
        return json.loads(data) if data else {}

    # -- discovery -----------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> Resource:
        """Finds how the server serves ``kind`` of ``api_version``.

        Raises
        ------
        SeldonNotInstalled
            A SeldonDeployment was asked for and the server does not know the kind.
        ClusterError
            Any other kind the server does not serve, or a failed request.
        """
        if api_version not in self._discovered:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                listing = self.request("GET", path)
            except ClusterError as exc:
                if getattr(exc, "status", None) != 404:
                    raise _explain(exc, "discover", f"the API {path}") from None
                listing = {"resources": []}
            self._discovered[api_version] = {
                r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in listing.get("resources", [])
                if "/" not in r["name"]  # subresources such as seldondeployments/status
            }
        found = self._discovered[api_version].get(kind)
        if found is None:
            if api_version.startswith(SELDON_GROUP + "/"):
                raise SeldonNotInstalled(
                    f"the cluster at {self.server} does not serve {kind} ({api_version}): "
                    "install Seldon Core first (its operator installs the SeldonDeployment CRD)"
                )
            raise ClusterError(f"the cluster at {self.server} does not serve {kind} ({api_version})")
        return found

    def ref(self, obj: dict, namespace: str | None) -> Ref:
        """The :class:`Ref` of a manifest object, placing namespaced objects in ``namespace``
        unless they name their own (which must then agree with an explicit ``namespace``)."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        name = obj["metadata"]["name"]
        if not resource.namespaced:
            return Ref(resource, name, None)
        own = obj["metadata"].get("namespace")
        if own and namespace and own != namespace:
            raise ClusterError(
                f"{obj['kind']} {name} names namespace {own!r} but --namespace {namespace!r} was given"
            )
        return Ref(resource, name, own or namespace or self.default_namespace)

    # -- objects -------------------------------------------------------------------------
    def get(self, ref: Ref) -> dict | None:
        """The object as stored, or None when it does not exist."""
        try:
            return self.request("GET", ref.resource.path(ref.namespace, ref.name))
        except ClusterError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise _explain(exc, "read", ref) from None

    def list(self, resource: Resource, namespace: str | None) -> list[dict]:
        """All objects of ``resource`` in ``namespace``."""
        try:
            return self.request("GET", resource.path(namespace)).get("items", [])
        except ClusterError as exc:
            group = resource.api_version.rpartition("/")[0]
            what = f"{resource.plural}.{group}" if group else resource.plural
            raise _explain(exc, "list", f"{what} in namespace {namespace}") from None

    def apply(self, obj: dict, ref: Ref, dry_run: bool = False) -> dict:
        """Creates or updates ``obj`` with server-side apply and returns what the server stored.

        Unknown fields are errors (``fieldValidation=Strict``), as with ``kubectl apply``.
        """
        body = dict(obj)
        body["metadata"] = dict(obj["metadata"])
        if ref.namespace:
            body["metadata"]["namespace"] = ref.namespace
        query = [("fieldManager", FIELD_MANAGER), ("force", "true"), ("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            return self.request(
                "PATCH",
                ref.resource.path(ref.namespace, ref.name),
                query=query,
                body=body,
                content_type="application/apply-patch+yaml",
            )
        except ClusterError as exc:
            if TYPED_PATCH_ERROR in str(exc):
                self._raise_validation_error(body, ref)
            raise _explain(exc, "apply", ref) from None

    def _raise_validation_error(self, body: dict, ref: Ref) -> None:
        """Asks for the API server's validation message through a dry-run create or replace.

        Server-side apply reports a value of the wrong type or an unknown field while building
        its patch, in Go terms (``expected string, got &value.valueUnstructured{...}``); create and
        replace validate the same object against the same schema and say it the way ``kubectl``
        users know. Returns when the dry run passes (the caller then reports the apply error).
        """
        query = [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict"), ("dryRun", "All")]
        current = self.get(ref)
        try:
            if current is None:
                self.request("POST", ref.resource.path(ref.namespace), query=query, body=body)
            else:
                body = dict(body)
                body["metadata"] = dict(body["metadata"], resourceVersion=current["metadata"]["resourceVersion"])
                self.request("PUT", ref.resource.path(ref.namespace, ref.name), query=query, body=body)
        except ClusterError as exc:
            raise _explain(exc, "apply", ref) from None

    def delete(self, ref: Ref, dry_run: bool = False) -> bool:
        """Deletes the object; False when it did not exist.

        Dependents are left to the garbage collector (background propagation), which is what
        a cluster does without waiting on it.
        """
        query = [("propagationPolicy", "Background")]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            self.request("DELETE", ref.resource.path(ref.namespace, ref.name), query=query)
        except ClusterError as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise _explain(exc, "delete", ref) from None
        return True


def _explain(exc: ClusterError, verb: str, ref: Ref | str) -> ClusterError:
    """Prefixes the server's message with what was being done and what kind of refusal it is.

    Parameters
    ----------
    exc
        The error :meth:`Cluster.request` raised (``status`` set when the server answered).
    verb
        What was being done, e.g. ``apply``.
    ref
        What it was done to.
    """
    status = getattr(exc, "status", None)
    message = str(exc)
    if status == 403:
        text = f"permission denied: cannot {verb} {ref}: {message}"
    elif status == 401:
        text = f"the API server did not accept the kubeconfig's credentials: {message}"
    elif status in (400, 409, 422):
        text = f"the API server rejected {ref}: {message}"
    elif status is None:
        text = message
    else:
        text = f"cannot {verb} {ref}: {message}"
    err = ClusterError(text)
    err.status = status
    return err


def _default_kubeconfig_exists() -> bool:
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return any(os.path.exists(p) for p in kubeconfig.split(os.pathsep) if p)


def _in_cluster_only() -> bool:
    """True in a pod that has no kubeconfig: then the service account is used."""
    return not _default_kubeconfig_exists() and "KUBERNETES_SERVICE_HOST" in os.environ


def _pod_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return None
