"""The one client factory: a configured official ``kubernetes`` client per cluster.

``connect(registry, name)`` decrypts the stored credential in memory and builds
an ``ApiClient``. The official client wants file paths for a client certificate
and key; this module hands it ``/proc/self/fd/N`` paths of sealed, close-on-exec
``memfd`` files (anonymous memory, never on a disk), kept open for as long as
the connection lives. The CA goes in as data (``ca_cert_data``), bearer tokens
as the ``authorization`` API key, and exec plugins run through the client's own
``ExecProvider``, refreshed before their token expires.

Connections are cached per registry and cluster and rebuilt when the record's
``credential_rev`` changes (``--upsert`` with a new credential, ``hub key
rotate``), which is compared in clear without decrypting anything.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import threading
import warnings
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes.client import ApiClient, Configuration, VersionApi
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.exec_provider import ExecProvider
from kubernetes.config.kube_config import ConfigNode

from clusters.errors import ClusterError
from clusters.kubeconfig import BearerToken, ClientCertificate, ExecPlugin, TLSSettings
from hub.logs import redact, scrub

if TYPE_CHECKING:
    from clusters.registry import ClusterCredentials, Registry

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
# Refresh an exec plugin's token this long before it expires.
_EXEC_REFRESH_MARGIN = timedelta(seconds=60)


class ConnectError(ClusterError):
    """A cluster could not be reached or refused us; the message says which and why."""


def _memfd(label: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, sealed against any change."""
    fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(fds: list[int], api_client: ApiClient) -> None:
    try:
        api_client.close()  # type: ignore[no-untyped-call]
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        fds.clear()


class Connection:
    """A ready client for one cluster: ``api_client`` for typed APIs, ``DynamicClient``
    and ``watch.Watch``; ``configuration`` for anything that needs the settings.

    Share it between threads freely. Get it from ``connect()`` again for each unit of
    work rather than keeping it for hours, so a replaced credential is picked up.
    """

    def __init__(
        self,
        *,
        name: str,
        server: str,
        credential_rev: str,
        api_client: ApiClient,
        configuration: Configuration,
        fds: list[int],
        expires_at: datetime | None = None,
    ) -> None:
        self.name = name
        self.server = server
        self.credential_rev = credential_rev
        self.api_client = api_client
        self.configuration = configuration
        # Certificates from an exec plugin expire; the cache rebuilds after this time.
        self.expires_at = expires_at
        self._finalizer = weakref.finalize(self, _release, fds, api_client)

    def __repr__(self) -> str:
        return f"Connection(name={self.name!r}, server={self.server!r})"

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Release the client's sockets and in-memory credential files now."""
        self._finalizer()

    def version(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The server's ``gitVersion`` from ``/version``; ConnectError when that fails."""
        try:
            info = VersionApi(self.api_client).get_code(_request_timeout=(timeout, timeout))
        except Exception as exc:
            raise ConnectError(describe_failure(exc, self.server, timeout)) from None
        return str(info.git_version)


def describe_failure(exc: BaseException, server: str, timeout: float | None = None) -> str:
    """One line saying why a request to ``server`` failed, without any secret in it."""
    if isinstance(exc, ClusterError):
        return str(exc)
    if isinstance(exc, ApiException):
        status = exc.status
        if status == 401:
            return f"unauthorised: {server} rejected the credential (HTTP 401)"
        if status == 403:
            return f"forbidden: the credential may not read /version on {server} (HTTP 403)"
        return f"{server} answered HTTP {status} {exc.reason or ''}".rstrip()
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.SSLError):
        return (
            f"TLS handshake with {server} failed: {scrub(str(exc.args[-1] if exc.args else exc))}"
        )
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        detail = str(exc).rsplit(":", 1)[-1].strip() or "connection failed"
        return f"unreachable: cannot connect to {server} ({detail})"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        within = f" within {timeout:g}s" if timeout else ""
        return f"unreachable: no answer from {server}{within}"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return f"unreachable: {server} closed the connection without an answer"
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return f"unreachable: {server}: {type(exc).__name__}"
    if isinstance(exc, ConfigException):
        return f"exec credential plugin failed: {scrub(str(exc))}"
    if isinstance(exc, OSError):
        return f"cannot connect to {server}: {exc.strerror or type(exc).__name__}"
    return f"request to {server} failed: {type(exc).__name__}"


class _ExecToken:
    """The ``refresh_api_key_hook`` of an exec-plugin connection."""

    def __init__(self, provider: ExecProvider, first: dict[str, Any]) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._status = first

    def __call__(self, configuration: Configuration) -> None:
        with self._lock:
            expiry = _expiry(self._status)
            if expiry is not None and datetime.now(UTC) + _EXEC_REFRESH_MARGIN >= expiry:
                try:
                    self._status = _run_exec(self._provider)
                except ClusterError:
                    log.warning("exec credential plugin failed; keeping the old token")
                    return
            token = self._status.get("token")
            if isinstance(token, str):
                configuration.api_key["authorization"] = token


def _expiry(status: dict[str, Any]) -> datetime | None:
    stamp = status.get("expirationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def _run_exec(provider: ExecProvider) -> dict[str, Any]:
    try:
        status = provider.run()  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise ClusterError(f"exec credential plugin failed: {scrub(str(exc))}") from None
    except OSError as exc:
        raise ClusterError(
            f"exec credential plugin {provider.args[0]!r} cannot run: {exc.strerror}"
        ) from None
    if not isinstance(status, dict):
        raise ClusterError("exec credential plugin returned no status")
    for key in ("token", "clientKeyData"):
        if isinstance(status.get(key), str):
            redact(status[key])
    return status


def _exec_provider(plugin: ExecPlugin, server: str, tls: TLSSettings) -> ExecProvider:
    config: dict[str, Any] = {
        "apiVersion": plugin.api_version,
        "command": plugin.command,
        "args": list(plugin.args),
        "env": [{"name": k, "value": v} for k, v in plugin.env],
        "provideClusterInfo": plugin.provide_cluster_info,
    }
    cluster: dict[str, Any] = {"server": server, "insecure-skip-tls-verify": tls.insecure}
    if tls.ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(tls.ca_data).decode()
    if tls.server_name:
        cluster["tls-server-name"] = tls.server_name
    node, cluster_node = ConfigNode("exec", config), ConfigNode("cluster", cluster)  # type: ignore[no-untyped-call]
    return ExecProvider(node, None, cluster_node)  # type: ignore[no-untyped-call]


def build_connection(creds: ClusterCredentials) -> Connection:
    """A new, uncached connection from decrypted credentials."""
    cfg = Configuration(host=creds.server)
    cfg.verify_ssl = not creds.tls.insecure
    if creds.tls.insecure:
        # The user chose insecure-skip-tls-verify for this cluster, as kubectl allows; say
        # so once here instead of urllib3 warning on every request.
        log.info("cluster %s: TLS certificate verification is off", creds.name)
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    if creds.tls.ca_data:
        cfg.ca_cert_data = creds.tls.ca_data.decode("ascii")
    if creds.tls.server_name:
        cfg.tls_server_name = creds.tls.server_name
    # Retry refused connections briefly, but never re-send a request whose answer was lost.
    cfg.retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.1)
    fds: list[int] = []
    expires_at: datetime | None = None
    credential = creds.credential
    try:
        cert_pem: bytes | None = None
        key_pem: bytes | None = None
        if isinstance(credential, BearerToken):
            redact(credential.token)
            cfg.api_key = {"authorization": credential.token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        elif isinstance(credential, ClientCertificate):
            cert_pem, key_pem = credential.cert_pem, credential.key_pem
        else:
            provider = _exec_provider(credential, creds.server, creds.tls)
            status = _run_exec(provider)
            if isinstance(status.get("token"), str):
                cfg.api_key = {"authorization": status["token"]}
                cfg.api_key_prefix = {"authorization": "Bearer"}
                cfg.refresh_api_key_hook = _ExecToken(provider, status)  # type: ignore[assignment]
            elif isinstance(status.get("clientCertificateData"), str) and isinstance(
                status.get("clientKeyData"), str
            ):
                cert_pem = status["clientCertificateData"].encode()
                key_pem = status["clientKeyData"].encode()
                expires_at = _expiry(status)
            else:
                raise ClusterError(
                    f"exec credential plugin for cluster {creds.name!r} returned neither a "
                    "token nor a client certificate and key"
                )
        if cert_pem is not None and key_pem is not None:
            redact(key_pem)
            cert_fd = _memfd(f"hub-{creds.name}-cert", cert_pem)
            fds.append(cert_fd)
            key_fd = _memfd(f"hub-{creds.name}-key", key_pem)
            fds.append(key_fd)
            cfg.cert_file = f"/proc/self/fd/{cert_fd}"
            cfg.key_file = f"/proc/self/fd/{key_fd}"
        api_client = ApiClient(cfg)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Connection(
        name=creds.name,
        server=creds.server,
        credential_rev=creds.credential_rev,
        api_client=api_client,
        configuration=cfg,
        fds=fds,
        expires_at=expires_at,
    )


def probe_version(creds: ClusterCredentials, timeout: float) -> str:
    """Connect with ``creds`` and read ``/version`` (used before registering, and by check)."""
    connection = build_connection(creds)
    try:
        return connection.version(timeout)
    finally:
        connection.close()


@dataclass
class _Entry:
    connection: Connection


class ConnectionCache:
    """Connections of one registry, by cluster name. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def get(self, registry: Registry, name: str) -> Connection:
        record = registry.get(name)  # clear columns only: cheap enough for every call
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and self._fresh(entry.connection, record.credential_rev):
                return entry.connection
        connection = build_connection(registry.credentials(name))
        with self._lock:
            entry = self._entries.get(name)
            # Another thread may have built the same one meanwhile: keep theirs.
            if entry is not None and self._fresh(entry.connection, connection.credential_rev):
                connection.close()
                return entry.connection
            self._entries[name] = _Entry(connection)
        if entry is not None:
            log.debug("cluster %s: credential changed, rebuilt its client", name)
        return connection

    @staticmethod
    def _fresh(connection: Connection, rev: str) -> bool:
        if connection.closed or connection.credential_rev != rev:
            return False
        return connection.expires_at is None or datetime.now(UTC) < connection.expires_at

    def forget(self, name: str) -> None:
        """Drop a cluster's connection (it stays usable by whoever still holds it)."""
        with self._lock:
            self._entries.pop(name, None)

    def close(self) -> None:
        with self._lock:
            entries, self._entries = self._entries, {}
        for entry in entries.values():
            entry.connection.close()


def connect(registry: Registry, name: str) -> Connection:
    """The client for cluster ``name``: cached, rebuilt when its credential changes.

    Raises ClusterNotFound for an unknown name and DecryptError
    (``cannot decrypt credentials for cluster NAME: wrong master key?``) when the
    master key at hand cannot open the credential. Nothing is contacted here; the
    first request is.
    """
    return registry.connections.get(registry, name)
