"""Fail fast, in one line, when something must come from the Hugging Face hub and cannot.

Without a network, ``from_pretrained`` of a name that is not cached retries for about a
minute and ends in a page-long traceback. These checks run first: the local cache, then
the offline switches, then one TCP connection to the hub endpoint (a few seconds at
most). Behind an HTTP(S) proxy the probe is skipped: the libraries reach the hub through
the proxy, which a direct connection cannot test.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

from knowundo_bench.core.errors import InputError

PROBE_SECONDS = 3.0
_TRUE = {"1", "on", "yes", "true"}


def hub_offline(*also: str) -> bool:
    """``HF_HUB_OFFLINE`` (or one of ``also``, e.g. ``TRANSFORMERS_OFFLINE``) is set: the
    libraries then never call the network."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", *also))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_cache() -> Path:
    """The hub's file cache, the one huggingface_hub and transformers use."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """None when the hub endpoint accepts a TCP connection within ``timeout`` seconds,
    else why not (name resolution runs in a thread, so a hanging resolver cannot block)."""
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    if url.scheme in getproxies() and not proxy_bypass(host):
        return None  # through a proxy: let the libraries try
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error.strerror or str(error))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if not outcome:
        return f"no answer from {host} within {timeout:g} s"
    reason = outcome[0]
    return None if reason is None else f"{host}:{port}: {reason}"


def model_cached(repo_id: str, revision: str | None = None) -> bool:
    """Whether the hub cache holds ``repo_id``'s config (a model downloaded before)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache(), revision=revision)
    return isinstance(found, str)


def require_model(repo_id: str, field: str, revision: str | None = None) -> dict[str, Any]:
    """Check that ``repo_id`` can be loaded from the cache or the hub, and return the
    ``from_pretrained`` options that load it (from the cache only when the hub is offline
    or unreachable). Otherwise one line naming ``field`` says why not and how to
    pre-download it."""
    cached = model_cached(repo_id, revision)
    offline = hub_offline("TRANSFORMERS_OFFLINE")
    unreachable = None if offline else hub_unreachable()
    options: dict[str, Any] = {"cache_dir": str(hub_cache())}  # the cache just checked, whatever the env says now
    if cached:
        return {**options, "local_files_only": offline or unreachable is not None}
    if unreachable is None and not offline:
        return {**options, "local_files_only": False}  # from_pretrained downloads it (and reports a wrong name)
    why = (
        "offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)"
        if offline
        else f"the hub is not reachable ({unreachable})"
    )
    raise InputError(
        f"{field}: {repo_id!r} is neither in the Hugging Face cache ({hub_cache()}) nor reachable: {why}; "
        f"pre-download it where the hub is reachable (hf download {repo_id}) into this cache, "
        "or set the field to a local folder"
    )


def require_hub(field: str) -> None:
    """For datasets read through the hub: one line when the hub cannot be reached and
    ``HF_HUB_OFFLINE`` is not set (with it, the datasets cache is used)."""
    if hub_offline("HF_DATASETS_OFFLINE"):
        return
    unreachable = hub_unreachable()
    if unreachable is not None:
        raise InputError(
            f"{field}: the Hugging Face hub is not reachable ({unreachable}); set HF_HUB_OFFLINE=1 to read "
            "what the datasets cache holds, or use a local source"
        )
