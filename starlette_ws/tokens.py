"""Who a room connection is: a signed token in, a typed `Identity` or a list of errors out.

A token is a JWT whose signature, `exp`, `aud` and `iss` PyJWT checks against the configured
key and algorithms; what the claims mean here is this module's: `sub` is the client id (a
decimal string, the URL's), `rooms` the room-name patterns it may join and send in, `read` those
it may join and only receive in. A pattern is a room name in which `*` stands for any run of
characters. No error ever carries the token: it is a credential.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from starlette_ws.params import Error, error

HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: a key at least as long as the hash
MAX_PATTERNS = 64
MAX_PATTERN_LENGTH = 64  # a room name's longest
MAX_TOKEN = 4096  # characters: a URL over 8 KiB never reaches the app, and a longer token costs more to refuse
LATEST_EXP = 253_402_300_799  # 9999-12-31T23:59:59Z: a bound on exp, so that it is a time
TOKEN_LOC = ["query", "token"]


@dataclass(frozen=True, slots=True)
class Verifier:
    """How tokens are checked: the key (an HMAC secret, or a PEM public key) and what it accepts."""

    key: str
    algorithms: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None

    def __post_init__(self) -> None:
        if not self.algorithms or any(name.lower() == "none" for name in self.algorithms):
            raise ValueError("ROOMS_TOKEN_ALGORITHMS must name signing algorithms ('none' is never accepted)")
        unknown = set(self.algorithms) - jwt.algorithms.get_default_algorithms().keys()
        if unknown:
            raise ValueError(
                f"ROOMS_TOKEN_ALGORITHMS: {', '.join(sorted(unknown))} not available"
                " (RS256 and ES256 need the 'crypto' extra: pip install 'starlette-ws[crypto]')"
            )
        shortest = max((HMAC_BYTES.get(name, 0) for name in self.algorithms), default=0)
        if len(self.key.encode()) < shortest:
            raise ValueError(
                f"ROOMS_TOKEN_SECRET must be at least {shortest} bytes for {', '.join(self.algorithms)}"
                " (RFC 7518, section 3.2); make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified token: the client it names, until when, and the rooms it may send or read in."""

    client_id: int
    expires: float  # seconds since the epoch
    rooms: tuple[str, ...]
    read: tuple[str, ...] = ()

    def may_send(self, room: str) -> bool:
        return any(matches(pattern, room) for pattern in self.rooms)

    def may_read(self, room: str) -> bool:
        return self.may_send(room) or any(matches(pattern, room) for pattern in self.read)


class Tokens:
    """The process's token check: `identify`, remembering for each token it verified (by digest,
    at most `size` of them, the least recently used going first) the identity it proved until its
    `exp`. A token seen before (a reconnect, a second tab, a page and its socket) is not decoded
    again: PyJWT's decode is most of a connect's cost. Refusals are not remembered."""

    def __init__(self, verifier: Verifier, size: int = 10_000) -> None:
        self.verifier = verifier
        self.size = size
        self._known: OrderedDict[bytes, Identity] = OrderedDict()
        self._lock = threading.Lock()  # TestClient serves each connection on a thread of its own

    def identify(self, token: str | None) -> tuple[Identity | None, list[Error]]:
        if not token:
            return identify(token, self.verifier)
        digest = hashlib.blake2b(token.encode(errors="surrogatepass"), digest_size=16).digest()
        now = time.time()
        with self._lock:
            known = self._known.get(digest)
            if known is not None:
                if known.expires > now:
                    self._known.move_to_end(digest)
                    return known, []
                del self._known[digest]
        identity, errors = identify(token, self.verifier, now=now)
        if identity is not None:
            with self._lock:
                self._known[digest] = identity
                if len(self._known) > self.size:
                    self._known.popitem(last=False)
        return identity, errors

    def __len__(self) -> int:
        return len(self._known)


def matches(pattern: str, room: str) -> bool:
    """Whether `room` is one of the names `pattern` stands for (`*`: any run of characters)."""
    if "*" not in pattern:
        return pattern == room
    first, *middle, last = pattern.split("*")
    if len(room) < len(first) + len(last) or not room.startswith(first) or not room.endswith(last):
        return False
    at, end = len(first), len(room) - len(last)
    for part in middle:
        at = room.find(part, at, end)
        if at < 0:
            return False
        at += len(part)
    return True


def refusal(kind: str, msg: str, loc: list[str] | None = None) -> Error:
    return error(kind, loc or TOKEN_LOC, msg)


def identify(token: str | None, verifier: Verifier, *, now: float | None = None) -> tuple[Identity | None, list[Error]]:
    """The identity `token` proves, or why it proves none."""
    if token is None or token == "":
        return None, [refusal("token_missing", "A token is required: ?token=<JWT> (these rooms need one)")]
    if len(token) > MAX_TOKEN:
        return None, [refusal("token_malformed", f"The token is longer than {MAX_TOKEN} characters")]
    try:
        claims = jwt.decode(
            token,
            verifier.key,
            algorithms=list(verifier.algorithms),
            audience=verifier.audience,
            issuer=verifier.issuer,
            options={"require": ["exp", "sub"], "verify_sub": False, "verify_jti": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        return None, [refusal("token_expired", "The token has expired: ask for a new one")]
    except jwt.InvalidSignatureError:
        return None, [refusal("token_signature", "The token's signature does not verify")]
    except jwt.InvalidAlgorithmError:
        allowed = ", ".join(verifier.algorithms)
        return None, [refusal("token_algorithm", f"The token's algorithm is not accepted (accepted: {allowed})")]
    except jwt.InvalidAudienceError:
        if verifier.audience is None:
            return None, [refusal("token_audience", "The token names an audience and this server expects none")]
        return None, [refusal("token_audience", f"The token is not for this audience ({verifier.audience})")]
    except jwt.InvalidIssuerError:
        return None, [refusal("token_issuer", f"The token is not from the expected issuer ({verifier.issuer})")]
    except jwt.MissingRequiredClaimError as exc:
        return None, [refusal("token_claims", f"The token has no {exc.claim!r} claim")]
    except jwt.ImmatureSignatureError:
        return None, [refusal("token_not_yet_valid", "The token is not valid yet (nbf or iat in the future)")]
    except jwt.InvalidTokenError as exc:  # not three base64url parts of JSON, a bad header, a claim of the wrong type
        return None, [refusal("token_malformed", f"The token is not a valid JWT: {_short(exc)}")]
    return _identity(claims, now)


def _identity(claims: dict[str, Any], now: float | None) -> tuple[Identity | None, list[Error]]:
    errors: list[Error] = []
    sub = claims["sub"]
    client_id = None
    if not isinstance(sub, str) or not (sub == "0" or (sub.isdigit() and sub.isascii() and sub[0] != "0")):
        errors.append(refusal("token_claims", "The token's 'sub' must be a client id: a decimal string"))
    elif len(sub) > 19:
        errors.append(refusal("token_claims", "The token's 'sub' is longer than a client id (19 digits)"))
    else:
        client_id = int(sub)
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp <= LATEST_EXP:
        errors.append(refusal("token_claims", "The token's 'exp' must be a time: seconds since 1970, before 10000"))
    rooms = _patterns(claims.get("rooms", []), "rooms", errors)
    read = _patterns(claims.get("read", []), "read", errors)
    if errors or client_id is None:
        return None, errors
    if float(exp) <= (time.time() if now is None else now):
        return None, [refusal("token_expired", "The token has expired: ask for a new one")]
    return Identity(client_id, float(exp), rooms, read), []


def _patterns(value: object, name: str, errors: list[Error]) -> tuple[str, ...]:
    if (
        isinstance(value, list)
        and len(value) <= MAX_PATTERNS
        and all(isinstance(item, str) and 0 < len(item) <= MAX_PATTERN_LENGTH for item in value)
    ):
        return tuple(value)
    errors.append(
        refusal(
            "token_claims",
            f"The token's {name!r} must be a list of at most {MAX_PATTERNS} room patterns"
            f" of 1-{MAX_PATTERN_LENGTH} characters",
        )
    )
    return ()


def _short(exc: Exception) -> str:
    return str(exc)[:200] or type(exc).__name__


def for_room(identity: Identity, client_id: int, room: str) -> list[Error]:
    """Why `identity` may not join `room` as `client_id` (nothing when it may)."""
    if identity.client_id != client_id:
        return [refusal("token_subject", "The token's 'sub' is not this client id", ["path", "client_id"])]
    if not identity.may_read(room):
        return [refusal("room_not_permitted", f"The token does not permit room {room!r}", ["path", "room"])]
    return []


def make(
    key: str,
    sub: int,
    rooms: Sequence[str],
    read: Sequence[str] = (),
    ttl: float = 3600.0,
    *,
    algorithm: str = "HS256",
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """A token for client `sub`: what `python -m starlette_ws token` prints."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": str(sub), "iat": issued, "exp": issued + int(ttl), "rooms": list(rooms)}
    if read:
        claims["read"] = list(read)
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)
