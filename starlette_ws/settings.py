from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings

from starlette_ws.backends.base import MAX_CHANNEL_BYTES
from starlette_ws.history.base import MAX_PREFIX_BYTES
from starlette_ws.tokens import Verifier

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the app reads from its environment, read once and passed to `create_app`."""

    broadcast_url: str = "memory://"
    max_message_bytes: int = 64 * 1024
    send_queue_bytes: int = 1024 * 1024
    chat_rate_per_second: float = 50.0
    chat_rate_burst: int = 200
    allowed_origins: tuple[str, ...] = ()
    # The names this server answers to (the Host header, port aside); `*` allows any. The default
    # is this machine by name and address, plus `testserver` for Starlette's TestClient.
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]", "testserver")
    handshake_timeout: float = 10.0
    ws_drain_timeout: float = 20.0
    ws_max_fragments: int = 4096
    # Your own pages in place of the ones the package ships (None: the package's).
    templates_dir: Path | None = None
    metrics: bool = True  # GET /metrics, and the per-connection counts behind it
    # With several workers: the directory where each writes its metrics for the others' scrapes.
    # prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself when first imported, so the variable
    # must be set before then (the server command sets it, `share_metrics_dir`).
    metrics_dir: Path | None = None
    # Rooms: each keeps its last ROOM_HISTORY messages younger than ROOM_HISTORY_SECONDS; a member
    # whose process stops refreshing it is gone after PRESENCE_TTL seconds. CHANNEL_PREFIX keeps
    # deployments that share one engine apart.
    room_history: int = 100
    room_history_seconds: float = 300.0
    presence_ttl: float = 30.0
    # A connection without `since` is first sent the newest kept messages up to this many bytes.
    room_recent_bytes: int = 1024 * 1024
    # Every ROOM_CHECK_SECONDS each room with members is checked against its store (holes filled);
    # every ROOM_CLEAN_SECONDS the store deletes what is past retention and rooms left empty.
    room_check_seconds: float = 3.0
    room_clean_seconds: float = 30.0
    # Arrivals and departures a room announces per second (bursts of ROOM_PRESENCE_BURST); past
    # that they coalesce into one member list.
    room_presence_rate: float = 5.0
    room_presence_burst: int = 20
    # Room connections per second (bursts of ..._BURST) a client id, and a client address, may
    # open in one process; past that the handshake is refused with 429.
    room_connect_rate: float = 5.0
    room_connect_burst: int = 20
    room_address_rate: float = 50.0
    room_address_burst: int = 200
    # Room connections whose set-up (their calls to the store) runs at once in one process; past
    # that they wait ROOM_CONNECT_WAIT seconds for a place, then are refused with 1013.
    room_connects_at_once: int = 8
    room_connect_wait: float = 2.0
    channel_prefix: str = "starlette-ws:"
    # Seconds between two pings of the engine (its broadcast backend and room store), and the
    # longest each may wait for its answer: `/health` shows a stalled engine within twice this.
    engine_probe_seconds: float = 2.0
    # Room tokens (see `tokens`): with a secret (HMAC) or a PEM public key set, every room socket,
    # room listing and presence read needs a token; with neither, rooms are open to anyone.
    rooms_token_secret: str | None = field(default=None, repr=False)
    rooms_token_public_key: str | None = None  # the PEM text, or the path of a file holding it
    rooms_token_algorithms: tuple[str, ...] = ()  # () : HS256 with a secret, RS256 and ES256 with a public key
    rooms_token_audience: str | None = None
    rooms_token_issuer: str | None = None
    # The server API's bearer keys (several, so that one can be rotated); none: /api answers 404.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    debug: bool = False

    def __post_init__(self) -> None:
        if len(self.channel_prefix.encode()) > MAX_PREFIX_BYTES:
            raise ValueError(
                f"CHANNEL_PREFIX must be at most {MAX_PREFIX_BYTES} bytes (UTF-8), so that every room's"
                f" channel fits in the {MAX_CHANNEL_BYTES} bytes every engine takes: {self.channel_prefix!r}"
            )

    @property
    def verifier(self) -> Verifier | None:
        """How room tokens are checked, or None when rooms are open; ValueError when misconfigured."""
        secret, public = self.rooms_token_secret, self.rooms_token_public_key
        if secret and public:
            raise ValueError("Set ROOMS_TOKEN_SECRET or ROOMS_TOKEN_PUBLIC_KEY, not both")
        if secret:
            key, algorithms = secret, self.rooms_token_algorithms or ("HS256",)
        elif public:
            key, algorithms = _pem(public), self.rooms_token_algorithms or ("RS256", "ES256")
        else:
            return None
        return Verifier(key, algorithms, self.rooms_token_audience or None, self.rooms_token_issuer or None)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        config = Config(environ=os.environ if environ is None else environ)
        default = cls()
        return cls(
            broadcast_url=config("BROADCAST_URL", default=default.broadcast_url),
            max_message_bytes=config("MAX_MESSAGE_BYTES", cast=int, default=default.max_message_bytes),
            send_queue_bytes=config("SEND_QUEUE_BYTES", cast=int, default=default.send_queue_bytes),
            chat_rate_per_second=config("CHAT_RATE_PER_SECOND", cast=float, default=default.chat_rate_per_second),
            chat_rate_burst=config("CHAT_RATE_BURST", cast=int, default=default.chat_rate_burst),
            allowed_origins=tuple(config("ALLOWED_ORIGINS", cast=CommaSeparatedStrings, default="")),
            # empty counts as unset: a list that refuses every request is never what was meant
            allowed_hosts=tuple(config("ALLOWED_HOSTS", cast=CommaSeparatedStrings, default=""))
            or default.allowed_hosts,
            handshake_timeout=config("HANDSHAKE_TIMEOUT", cast=float, default=default.handshake_timeout),
            ws_drain_timeout=config("WS_DRAIN_TIMEOUT", cast=float, default=default.ws_drain_timeout),
            ws_max_fragments=config("WS_MAX_FRAGMENTS", cast=int, default=default.ws_max_fragments),
            templates_dir=_path_or_none(config("TEMPLATES_DIR", default="")),
            metrics=config("METRICS", cast=bool, default=default.metrics),
            metrics_dir=_path_or_none(config(METRICS_DIR_VARIABLE, default="")),
            room_history=config("ROOM_HISTORY", cast=int, default=default.room_history),
            room_history_seconds=config("ROOM_HISTORY_SECONDS", cast=float, default=default.room_history_seconds),
            presence_ttl=config("PRESENCE_TTL", cast=float, default=default.presence_ttl),
            room_recent_bytes=config("ROOM_RECENT_BYTES", cast=int, default=default.room_recent_bytes),
            room_check_seconds=config("ROOM_CHECK_SECONDS", cast=float, default=default.room_check_seconds),
            room_clean_seconds=config("ROOM_CLEAN_SECONDS", cast=float, default=default.room_clean_seconds),
            room_presence_rate=config("ROOM_PRESENCE_RATE", cast=float, default=default.room_presence_rate),
            room_presence_burst=config("ROOM_PRESENCE_BURST", cast=int, default=default.room_presence_burst),
            room_connect_rate=config("ROOM_CONNECT_RATE", cast=float, default=default.room_connect_rate),
            room_connect_burst=config("ROOM_CONNECT_BURST", cast=int, default=default.room_connect_burst),
            room_address_rate=config("ROOM_ADDRESS_RATE", cast=float, default=default.room_address_rate),
            room_address_burst=config("ROOM_ADDRESS_BURST", cast=int, default=default.room_address_burst),
            room_connects_at_once=config("ROOM_CONNECTS_AT_ONCE", cast=int, default=default.room_connects_at_once),
            room_connect_wait=config("ROOM_CONNECT_WAIT", cast=float, default=default.room_connect_wait),
            channel_prefix=config("CHANNEL_PREFIX", default=default.channel_prefix),
            engine_probe_seconds=config("ENGINE_PROBE_SECONDS", cast=float, default=default.engine_probe_seconds),
            rooms_token_secret=config("ROOMS_TOKEN_SECRET", default="") or None,
            rooms_token_public_key=config("ROOMS_TOKEN_PUBLIC_KEY", default="") or None,
            rooms_token_algorithms=tuple(config("ROOMS_TOKEN_ALGORITHMS", cast=CommaSeparatedStrings, default="")),
            rooms_token_audience=config("ROOMS_TOKEN_AUDIENCE", default="") or None,
            rooms_token_issuer=config("ROOMS_TOKEN_ISSUER", default="") or None,
            api_keys=tuple(key for key in config("API_KEYS", cast=CommaSeparatedStrings, default="") if key),
            debug=config("DEBUG", cast=bool, default=False),
        )


def share_metrics_dir(path: Path) -> None:
    """Put the multiprocess metrics directory in this process's environment, for the workers it
    starts (they inherit it, and their prometheus_client reads it when first imported)."""
    os.environ[METRICS_DIR_VARIABLE] = str(path)


def _pem(value: str) -> str:
    """A PEM key given as its text (newlines may be written `\\n`, as in a one-line variable) or a file path."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    return Path(value).read_text()


def _path_or_none(value: str) -> Path | None:
    return Path(value) if value else None
