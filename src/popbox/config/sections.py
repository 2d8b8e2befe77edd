"""The configuration's sections: frozen dataclasses with a default for every setting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from popbox.config.directory_sections import (
    DirectoryConfig,
    InternalSettings,
    NamesConfig,
)
from popbox.config.profiles import DEFAULT_COMPAT, Compat
from popbox.protocol.mechanisms import DEFAULT_MECHANISMS

__all__ = [
    "MAX_COMMAND_SIZE",
    "MIN_COMMAND_SIZE",
    "RFC2449_MIN_COMMAND_SIZE",
    "AdminConfig",
    "AuthConfig",
    "Backend",
    "Compat",
    "Config",
    "ConfigError",
    "FailClosed",
    "LmtpConfig",
    "LoginType",
    "OverQuota",
    "Pop3Config",
    "ProtocolLogConfig",
    "QuotaConfig",
    "RetentionConfig",
    "ServerConfig",
    "SortOrder",
    "StorageConfig",
    "SyncCommit",
    "TlsConfig",
]

LoginType = Literal["plaintext_login", "plaintext_authentication", "secure_login"]
Backend = Literal["sqlite", "postgresql"]
OverQuota = Literal["temporary", "permanent"]
# PostgreSQL's synchronous_commit levels popbox may ask for; "" keeps the database's own.
SyncCommit = Literal["", "local", "remote_write", "on", "remote_apply"]
FailClosed = Literal["closed", "open"]
LogLevel = Literal["debug", "info", "warning", "error"]
SortOrder = Literal["ascending", "descending"]
Rollover = Literal["hourly", "daily", "weekly", "monthly"]

MIN_COMMAND_SIZE = 40  # E0006: Exchange's allowed range is 40..1024 octets
MAX_COMMAND_SIZE = 1024
RFC2449_MIN_COMMAND_SIZE = 255  # RFC 2449 section 4, once CAPA is offered


class ConfigError(ValueError):
    """A configuration problem; the message names the key or file at fault."""


@dataclass(frozen=True, slots=True)
class Pop3Config:
    listen: tuple[str, ...] = ("127.0.0.1:110",)  # E0001
    tls_listen: tuple[str, ...] = ("127.0.0.1:995",)  # E0001
    banner: str = "popbox POP3 server ready"
    max_command_size: int = 512  # octets incl. CRLF (2.1.2, E0006)
    single_space_separators: bool = False  # 2.1.1: Exchange accepts runs of SP/TAB
    unauthenticated_timeout: float = 60.0  # V0002
    authenticated_timeout: float = 1800.0  # V0002
    login_type: LoginType = "secure_login"  # V0010
    lock_mailbox: bool = False  # 2.1.3 / C0004: snapshot, no exclusive lock
    lock_lease: float = 300.0  # seconds a maildrop lock survives its holder's silence
    exact_rfc822_size: bool = True  # 2.1.4 / 2.1.5
    # Set-PopSettings MessageRetrievalSortOrder: "descending" numbers the newest message 1.
    message_order: SortOrder = "ascending"
    sasl_line_max: int = 65536  # RFC 5034: SASL responses are not bound by command size
    max_bad_commands: int = 20  # C0005: close after this many -ERR for bad input
    max_auth_failures: int = 3  # C0005: close after this many failed logins
    auth_failure_delay: float = 1.0  # seconds before any failed login is answered
    shutdown_grace: float = 30.0  # seconds SIGTERM lets sessions finish before closing them
    # Seconds a client has to finish a TLS handshake (port 995 or after STLS); unset: the
    # unauthenticated_timeout, since a handshake is part of the time before login (V0002).
    tls_handshake_timeout: float | None = None
    # Set-PopSettings Internal/ExternalConnectionSettings: HOST:PORT[:SSL|TLS] entries that
    # say what clients are told to use (config/connection_settings.py); the wire is not
    # changed.  Internal, none given: built from the listeners; external: none.
    internal_connection_settings: tuple[str, ...] = ()
    external_connection_settings: tuple[str, ...] = ()

    @property
    def handshake_timeout(self) -> float:
        """The TLS handshake timeout in force (``tls_handshake_timeout`` or its default)."""
        if self.tls_handshake_timeout is None:
            return self.unauthenticated_timeout
        return self.tls_handshake_timeout


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: str = ""  # empty: a self-signed certificate generated in data_dir
    key_file: str = ""
    # ACME (RFC 8555): with a directory URL the certificate comes from that CA instead,
    # kept in data_dir/acme and renewed by the server itself.
    acme_directory: str = ""  # e.g. https://acme-v02.api.letsencrypt.org/directory
    acme_domains: tuple[str, ...] = ()  # DNS names of the certificate, the first is its CN
    acme_contact: str = ""  # e-mail address the CA writes to about expiry and problems
    acme_ca_file: str = ""  # CA bundle for the directory's HTTPS; empty: the system's CAs
    # HTTP-01 (RFC 8555 section 8.3): the CA fetches http://<domain>/.well-known/...
    # on port 80, so this listener must be reachable there from the internet.
    acme_http_listen: str = "0.0.0.0:80"
    # Renewal starts this long before expiry, or halfway through a shorter certificate's
    # lifetime; 30 days is Let's Encrypt's advice for its 90-day certificates.
    acme_renew_before: float = 30 * 86400.0
    acme_retry_interval: float = 3600.0  # after a failed renewal; the CA rate-limits failures
    acme_timeout: float = 300.0  # seconds one issuance may take, the wait at start included


@dataclass(frozen=True, slots=True)
class LmtpConfig:
    listen: tuple[str, ...] = ("127.0.0.1:24",)
    hostname: str = ""  # in the greeting and Received headers; empty: this host's name
    max_message_size: int = 50 * 1024 * 1024  # octets, announced as SIZE; larger: 552 5.3.4
    spool_threshold: int = 1024 * 1024  # DATA octets kept in memory; beyond: data_dir file
    over_quota: OverQuota = "temporary"  # 452 4.2.2 (the MTA retries) or 552 5.2.2 (bounce)
    timeout: float = 300.0  # seconds an LMTP client may stay silent
    # Seconds a delivery (mailbox + content digest) is remembered, so an MTA's retry of
    # a message that did commit is not stored twice (LMTP and `popbox deliver`); 0: off.
    # An hour covers an MTA's first retries (Postfix's first comes after 300 s) while
    # keeping small the chance that identical content re-sent on purpose is taken for one.
    dedup_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    default_quota: int | None = None  # octets per mailbox unless the user has one (E0003)
    warning_percent: int = 90  # E0004: crossing this share of the quota sends one warning


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    retrieved_days: int | None = None  # E0005: days kept after first retrieval; None: ever
    unretrieved_days: int | None = None  # days a never-retrieved message is kept
    interval: float = 3600.0  # seconds between retention sweeps in `popbox serve`


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: Backend = "sqlite"
    # libpq-style URL; several hosts ("postgresql://h1:5432,h2:5432/db?target_session_attrs=
    # read-write") are tried in order, and whichever is the primary is used (failover).
    dsn: str = ""
    # When a commit counts as done (a delivery's 250, QUIT's +OK): "" the database's own
    # setting; "on"/"remote_write"/"remote_apply" once a synchronous standby has it.
    synchronous_commit: SyncCommit = ""
    # A pooler in transaction mode (PgBouncer pool_mode = transaction) sits in front of
    # PostgreSQL: no statement cache, no per-connection settings.
    transaction_pooler: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """SASL mechanisms, password verifiers, OAuth token checks and brute-force limits."""

    mechanisms: tuple[str, ...] = DEFAULT_MECHANISMS  # offered, in CAPA order
    admins: tuple[str, ...] = ()  # may log in as another user (PLAIN authzid, RFC 4616)
    secret_file: str = ""  # empty: data_dir/auth-secret, generated; keys SCRAM's fake salts
    scram_iterations: int = 10000  # PBKDF2 rounds of new SCRAM verifiers (RFC 7677: >= 4096)
    # argon2id cost of new password hashes; a stored hash made otherwise is rehashed at
    # its user's next login, and its checks are padded to this cost meanwhile (V0009).
    argon2_time_cost: int = 2  # passes
    argon2_memory_kib: int = 19 * 1024
    argon2_parallelism: int = 1  # lanes
    # A successful password login whose stored hash is not argon2id at the configured
    # cost (an older cost, or a scheme kept by `popbox user import passwd-file`) stores
    # a new argon2id hash while the plaintext is at hand.
    rehash_on_login: bool = True
    # OAUTHBEARER (RFC 7628) and XOAUTH2: JWT access tokens.
    oauth_issuer: str = ""  # the "iss" every token must carry
    oauth_audience: str = ""  # the "aud" every token must include
    oauth_jwks: str = ""  # JWKS file path, or https:// URL fetched and cached
    oauth_jwks_ttl: float = 3600.0  # seconds a fetched JWKS is reused
    oauth_jwks_ca_file: str = ""  # CA bundle for an https JWKS; empty: system CAs
    oauth_user_claims: tuple[str, ...] = ("email", "sub")  # first present names the user
    oauth_strip_domain: str = ""  # "example.com": "ann@example.com" logs in as "ann"
    oauth_algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    oauth_leeway: float = 30.0  # seconds of clock skew allowed on exp/nbf/iat
    # Brute-force protection; the first delay is pop3.auth_failure_delay, doubling per
    # recent failure of the same source IP or user, up to failure_delay_max.
    failure_delay_max: float = 15.0
    failure_half_life: float = 300.0  # seconds for a remembered failure to count half
    ip_lockout_failures: int = 10  # recent failures that lock out a source IP; 0: never
    user_lockout_failures: int = 10  # recent failures that lock out a user name; 0: never
    lockout_duration: float = 300.0  # seconds a lockout lasts ([LOGIN-DELAY] meanwhile)
    max_tracked: int = 100000  # source IPs and names remembered; the oldest are forgotten
    # When the failure scores or session counts every node shares cannot be reached:
    # "closed" refuses logins ([SYS/TEMP]), "open" counts in this process meanwhile.
    shared_state_unavailable: FailClosed = "closed"
    # NTLM ([MS-NLMP]): users need an NT hash, stored at password-set time while offered.
    ntlm_allow_v1: bool = False  # NTLMv1/LM responses (fetchmail, mpop send only those)
    ntlm_domain: str = "POPBOX"  # NetBIOS domain name the CHALLENGE announces
    ntlm_server_name: str = ""  # DNS name the CHALLENGE announces; empty: this host's name
    # GSSAPI (RFC 4752): Kerberos V5 with a service keytab.
    gssapi_keytab: str = ""  # empty: $KRB5_KTNAME, else the system keytab
    gssapi_service_name: str = ""  # "pop@mail.example.com"; empty: pop@<this host's name>
    gssapi_replay_cache: str = ""  # MIT rcache name; empty: "file2:<data_dir>/krb5.rcache"
    gssapi_strip_realm: bool = True  # alice@REALM logs in as alice (REALM: the service's)
    gssapi_principal_map: tuple[str, ...] = ()  # "principal=mailbox" pairs, looked up first


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Processes, load balancers, limits and observability (DESIGN.md section 4)."""

    workers: int = 0  # processes serving the listeners; 0: one per CPU core; 1: no supervisor
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose connections start with a PROXY header
    proxy_header_timeout: float = 5.0  # seconds a trusted proxy has to send its header
    max_connections: int = 0  # POP3 connections on this node at once; 0: no limit
    max_connections_per_ip: int = 0  # ... from one client address; 0: no limit
    max_sessions_per_user: int = 0  # logged-in sessions of one user on this node; 0: no limit
    metrics_listen: str = ""  # "host:port" for /metrics and /healthz; empty: off
    json_logs: bool = False  # one JSON object per log line instead of key=value text
    log_level: LogLevel = "info"  # debug adds a line per command (verb and outcome)
    protocol_log_users: tuple[str, ...] = ()  # users whose command lines and replies are logged
    # Octets of large message bodies (over 256 KiB) one process holds for sending at once;
    # a RETR/TOP beyond it waits up to 10 s, then gets -ERR [SYS/TEMP]; 0: no limit.
    memory_budget: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProtocolLogConfig:
    """Exchange's POP3 protocol log (Set-PopSettings ProtocolLogEnabled and its files)."""

    enabled: bool = False  # ProtocolLogEnabled ($false by default, as Exchange)
    directory: str = ""  # LogFileLocation; empty: data_dir/logs/pop3
    rollover: Rollover = "daily"  # LogFileRollOverSettings (Exchange 2010/2013: Daily)
    per_file_size: int = 0  # LogPerFileSizeQuota, octets; 0: roll by time only
    max_total_size: int = 0  # octets all files may take; the oldest go first; 0: no cap
    max_age_days: float = 0  # days a file is kept; 0: no cap


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin API and web console (``admin/``): off unless ``listen`` is set."""

    listen: tuple[str, ...] = ()  # "host:port"; a non-loopback address needs tls = true
    tls: bool = False  # HTTPS with the [tls] certificate
    console: bool = True  # the web console beside the API
    users: tuple[str, ...] = ()  # users whose password logs in to the console
    session_lifetime: float = 8 * 3600.0  # seconds a console login lasts


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path("./popbox-data")
    compat: Compat = DEFAULT_COMPAT
    pop3: Pop3Config = field(default_factory=Pop3Config)
    tls: TlsConfig = field(default_factory=TlsConfig)
    lmtp: LmtpConfig = field(default_factory=LmtpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    # [[directory]], in the order logins try them; none configured: the internal store.
    directories: tuple[DirectoryConfig, ...] = (
        DirectoryConfig("internal", "internal", InternalSettings()),
    )
    names: NamesConfig = field(default_factory=NamesConfig)
    protocol_log: ProtocolLogConfig = field(default_factory=ProtocolLogConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
