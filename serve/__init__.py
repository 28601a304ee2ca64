"""Serving edge of the loop (`python -m serve`): a gateway over an existing engine.

    python -m serve gateway                 # engine + OpenAI-compatible gateway on 127.0.0.1
    python -m serve keys add support-app    # an API key for one app (printed once, stored hashed)
    python -m serve export RUN              # merged safetensors + int8/int4 variants, gated

The gateway resolves the registry's `production` (and optional `canary`) alias from the
pointer files the promote stage writes, proxies to the engine, and appends every
interaction and feedback event to the landing folder the nightly job ingests.
Imports stay light: the web stack and torch load inside the verbs.
"""


class ServeError(ValueError):
    """A serving problem a user can fix (bad config, missing model, engine that won't start)."""
