"""The first API token of a Hub, made at `pulumi up` and handed to the operator as a stack output.

Pulumi re-runs the program on every `pulumi up`, so a token drawn with `secrets.token_urlsafe` here
would change on every run (and roll a new settings file out each time). The token is instead derived
from a stack secret the operator sets once, `hub:apiTokenSeed` (`pulumi config set --secret`):
HMAC-SHA256 keyed by the seed over the hub's name, so every hub of a stack gets its own token and the
same seed always gives the same tokens. `pulumi_random` would keep a random value in the state instead,
but it is not in uv.lock and would add a second provider plugin for one string.

The token has the runtime's scheme (runtime/tokens.py), ``hub_<id>_<secret>``: the secret is 32
bytes in URL-safe base64 (43 characters), and the id is the first 16 hex digits of the secret's
SHA-256, so the settings file needs to carry one value only, that SHA-256, and the runtime derives the
id from it (TokenStore.ensure). The id is public anyway (it is sent with every request, shown by
`hubctl token list`); 64 bits of a hash of a 256-bit random secret say nothing usable about it.

Only the SHA-256 goes into the VM's user data: the token itself lives in the Pulumi state as a secret
and in the operator's hands, never on the Hub's disk (nor, therefore, on a clone's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

# The config key of the seed, and the least length it must have: it carries the token's entropy.
SEED_KEY = "apiTokenSeed"
MIN_SEED_LENGTH = 32
# The name the runtime stores the token under (`hubctl token list`, `hubctl token revoke bootstrap`).
BOOTSTRAP_TOKEN_NAME = "bootstrap"


@dataclass(frozen=True, slots=True)
class BootstrapToken:
    token: str  # hub_<id>_<secret>: the secret stack output
    token_id: str
    sha256: str  # SHA-256 (hex) of the secret part: the only value the VM receives


def secret_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id_for(sha256: str) -> str:
    """The token's public id, from the SHA-256 of its secret (the rule TokenStore.ensure applies)."""
    return sha256[:16]


def derive_api_token(seed: str, hub_name: str) -> BootstrapToken:
    mac = hmac.new(seed.encode(), f"hub-api-token/v1/{hub_name}".encode(), hashlib.sha256).digest()
    secret = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    digest = secret_sha256(secret)
    token_id = token_id_for(digest)
    return BootstrapToken(token=f"hub_{token_id}_{secret}", token_id=token_id, sha256=digest)


def check_seed(seed: str) -> str | None:
    """Why the seed is unusable, or None. The message never quotes the value."""
    if len(seed) < MIN_SEED_LENGTH:
        return (
            f"must be at least {MIN_SEED_LENGTH} characters (it is the bootstrap API token's entropy): "
            'pulumi config set --secret hub:apiTokenSeed "$(openssl rand -base64 33)"'
        )
    return None
