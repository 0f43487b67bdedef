"""`starlette-ws` / `python -m starlette_ws`: `serve` (the default) serves the demos (`server`),
`token` prints a room token made with this environment's settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jwt

from starlette_ws import server, tokens
from starlette_ws.settings import Settings

COMMANDS = ("serve", "token")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The command line: `[serve] [options]` or `token [options]` (prog: argv[0]'s name by default)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] not in (*COMMANDS, "-h", "--help"):
        words.insert(0, "serve")  # serving is the default
    parser = argparse.ArgumentParser(
        prog=prog,
        description=server.DESCRIPTION,
        epilog="Serving is the default: `%(prog)s --port 8001` is `%(prog)s serve --port 8001`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the demos (the default)",
        description=server.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server.add_arguments(serve)
    token = commands.add_parser(
        "token",
        help="print a room token signed with ROOMS_TOKEN_SECRET (or --private-key)",
        description="Print a room token signed with ROOMS_TOKEN_SECRET, or with --private-key when the"
        " server checks tokens with ROOMS_TOKEN_PUBLIC_KEY; ROOMS_TOKEN_AUDIENCE and _ISSUER go in it.",
    )
    token.add_argument("--sub", required=True, help="the client id it is for (a decimal number)")
    token.add_argument("--rooms", action="append", default=[], help="a room pattern to join and send in (*: any run)")
    token.add_argument("--read", action="append", default=[], help="a room pattern it may join and only receive in")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires (default 3600)")
    token.add_argument("--private-key", type=Path, help="a PEM private key file (RS256 or ES256 servers)")
    token.add_argument("--algorithm", help="default: HS256 with a secret, RS256 with an RSA key, else ES256")
    args = parser.parse_args(words)
    if args.command == "serve":
        return server.serve(args, serve)
    return make_token(args, token)


def make_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from starlette_ws.rooms import parse_client_id  # not before `serve` empties the metrics directory

    settings = Settings.from_environ()
    try:
        sub = parse_client_id(args.sub)
    except ValueError as exc:
        parser.error(f"--sub: {exc}")
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    if not args.rooms and not args.read:
        parser.error("give the rooms it may enter: --rooms PATTERN (join and send) or --read PATTERN")
    if args.private_key is not None:
        try:
            key = args.private_key.read_text()
            algorithm = args.algorithm or ("RS256" if _is_rsa(key) else "ES256")
        except (OSError, ValueError) as exc:
            parser.error(f"--private-key: {exc}")
    elif settings.rooms_token_secret:
        key, algorithm = settings.rooms_token_secret, args.algorithm or "HS256"
    else:
        parser.error("set ROOMS_TOKEN_SECRET (the server's), or pass --private-key")
    try:
        made = tokens.make(
            key,
            sub,
            args.rooms,
            args.read,
            args.ttl,
            algorithm=algorithm,
            audience=settings.rooms_token_audience,
            issuer=settings.rooms_token_issuer,
        )
    except (ValueError, TypeError, NotImplementedError, jwt.PyJWTError) as exc:  # a key or algorithm that does not fit
        parser.error(f"cannot sign with this key and {algorithm}: {exc}")
    print(made)
    return 0


def _is_rsa(pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return isinstance(load_pem_private_key(pem.encode(), password=None), rsa.RSAPrivateKey)


if __name__ == "__main__":
    sys.exit(main(prog="python -m starlette_ws"))
