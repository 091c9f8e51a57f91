"""Generator ``openai``: any OpenAI-compatible chat-completions endpoint.

OpenAI itself, or a local server speaking the same API (vLLM, llama.cpp's server,
Ollama): each prompt is one user message (after a demonstration's turns, with
``demonstrations: true``) POSTed to ``{base_url}/chat/completions``.
The standard library's HTTP client suffices, so the plugin needs no SDK.

The key is read from the environment variable that ``api_key_env`` names, never from
the spec, and is not part of ``settings`` (the datacard and the cache key). A shared spec
cannot send it where the user did not mean: the variable must look like an API key's
(or be allowed with ``--allow-key-env``), plain ``http://`` is for this machine only, the
host the key goes to is logged before the first request, and a redirect is never
followed (it would take the key, and the prompts, elsewhere). Answers are read up to a
size cap within an overall deadline, so a slow-drip or endless server times out. A busy
or flaky endpoint (HTTP 429, 5xx, a dropped connection, a timeout) is retried with
exponential backoff; one that cannot work at all (unreachable after the retries, a
refused key, an unknown model) stops the build with one line naming the field to fix.
A malformed answer is an empty text, which the pipeline drops and counts.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import math
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from pydantic import Field, field_validator, model_validator

from knowundo_bench.api import (
    GenerationRequest,
    GeneratorContext,
    GeneratorInfo,
    InputError,
    Params,
    __version__,
    check_key_variable,
    hookimpl,
)

MAX_WAIT = 60.0  # seconds: the longest pause between tries, whatever Retry-After asks
MAX_ANSWER_BYTES = 8 * 2**20  # a chat completion of max_tokens tokens is far smaller
MAX_ERROR_BYTES = 64 * 2**10  # of an error's body, only its message is read
CHUNK = 64 * 2**10
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx: the server is busy or failing, not refusing
# A 4xx about one prompt, not the set-up: its answer is empty (dropped and counted).
PROMPT_STATUSES = frozenset({400, 413, 422})
PROMPT_REFUSAL = re.compile(
    r"context.length|maximum context|too long|too many tokens|content.filter|content (management )?policy|was filtered",
    re.I,
)
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OpenAIParams(Params):
    base_url: str = Field(
        description="the API's root, up to /v1 (https://api.openai.com/v1, http://localhost:8000/v1)",
    )
    model: str = Field(min_length=1, description="the model the endpoint serves, as it names it")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="name of the environment variable holding the key (the key never goes in a spec); "
        "null for a local server that needs none",
    )
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_tokens: int = Field(1024, ge=1, le=131_072, description="longest answer, in tokens")
    seed: int | None = Field(None, description="asks the endpoint for reproducible sampling (where it supports it)")
    timeout: float = Field(60, gt=0, le=3600, description="seconds to wait for one whole answer")
    max_retries: int = Field(
        5, ge=0, le=20, description="tries after the first on HTTP 429/5xx, a lost connection, a timeout"
    )
    backoff: float = Field(
        1.0, ge=0, description="seconds before the first retry, doubled each retry (a Retry-After header wins)"
    )
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once")

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_spec(cls, values: Any) -> Any:
        if isinstance(values, dict) and "api_key" in values:
            raise ValueError(
                "api_key: never write the key in a spec (it would be shared with it); put it in an "
                "environment variable and name that in api_key_env"
            )
        return values

    @field_validator("base_url")
    @classmethod
    def _is_http(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must start with http:// or https:// and name a host (e.g. https://api.openai.com/v1)")
        if "@" in parts.netloc or parts.query or parts.fragment:  # never echoed: it may hold a key
            raise ValueError(
                "must not hold credentials or a query (user:key@host, ?api-key=...): base_url is written "
                "to the datacard; put the key in the environment variable api_key_env names"
            )
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise ValueError(
                "plain http:// reaches only this machine (localhost, 127.0.0.1, ::1): the key and the prompts "
                "would cross the network unencrypted; use https://, or an SSH tunnel to a local port"
            )
        return value.strip().rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _is_a_name(cls, value: str | None) -> str | None:
        # The message never repeats the value: it may be the key pasted in the wrong field.
        if value is not None and not _VARIABLE.match(value):
            raise ValueError("names an environment variable (letters, digits, _), not the key itself")
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (a loopback address, or localhost by name)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, never followed: urllib would resend the key to the new host
    (and turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)  # and the environment's proxies, as urlopen


def read_capped(response: Any, limit: int, deadline: float) -> bytes:
    """At most ``limit`` bytes of ``response`` before ``deadline`` (time.monotonic()); a
    larger or slower answer is an error (each read still waits at most the socket's
    timeout, so an answer ends by the deadline plus one timeout)."""
    chunks: list[bytes] = []
    size = 0
    read = getattr(response, "read1", response.read)  # what has arrived, not a full chunk's wait
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("the answer did not end in time")
        chunk = read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"an answer larger than {limit // 2**20} MiB")
        chunks.append(chunk)


class AnswerTooLarge(ValueError):
    """An answer past :data:`MAX_ANSWER_BYTES`."""


class Unusable(InputError):
    """The endpoint cannot answer: a one-line reason, the field to fix first."""


class _Stopped(Exception):
    """Another request failed for good: this one gives up without trying again."""


def retry_delay(retry: int, backoff: float, retry_after: str | None = None) -> float:
    """Seconds before retry number ``retry`` (0 for the first): the server's Retry-After
    (seconds or an HTTP date) when it sends a usable one (finite, not negative), else
    ``backoff`` doubled per retry; never more than :data:`MAX_WAIT`."""
    delay = backoff * 2 ** min(retry, 32)  # 2**32 s is past any cap, and a float still
    asked: float | None = None
    if retry_after:
        text = retry_after.strip()
        try:
            asked = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
            else:
                asked = max(when.timestamp() - time.time(), 0.0)  # a date already past: now
    if asked is not None and math.isfinite(asked) and asked >= 0:
        delay = asked
    return float(min(max(delay, 0.0), MAX_WAIT))


def answer_text(body: bytes) -> str:
    """``choices[0].message.content``, or "" for anything else (not JSON, no choices, a
    null content): the pipeline counts empty answers, a malformed one must not crash it."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _server_message(body: bytes) -> str:
    """The reason an error response gives (OpenAI's ``{"error": {"message": ...}}``), short."""
    try:
        data = json.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        text = message if isinstance(message, str) else ""
    except ValueError:
        text = body.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


class OpenAIGenerator:
    """Sends each prompt as one chat completion, ``concurrency`` at a time."""

    def __init__(self, params: OpenAIParams, key: str | None) -> None:
        self.params = params
        self.parallel = params.concurrency
        self.url = f"{params.base_url}/chat/completions"
        self._headers = {"Content-Type": "application/json", "User-Agent": f"knowundo-bench/{__version__}"}
        if key is not None:
            self._headers["Authorization"] = f"Bearer {key}"

    @property
    def settings(self) -> Mapping[str, object]:
        """What changes the answers: never the key, the timeouts or the retries."""
        p = self.params
        return {
            "base_url": p.base_url,
            "model": p.model,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "seed": p.seed,
        }

    def body(self, messages: list[dict[str, str]]) -> bytes:
        p = self.params
        payload: dict[str, object] = {
            "model": p.model,
            "messages": messages,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
        }
        if p.seed is not None:
            payload["seed"] = p.seed
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, str]]:
        """Yields ``(index, text)`` as each answer arrives. The first request that fails
        for good stops the rest (queued ones never start, running ones do not retry)
        and is raised."""
        if not requests:
            return
        stop = threading.Event()
        executor = ThreadPoolExecutor(max_workers=min(self.parallel, len(requests)), thread_name_prefix="openai")
        try:
            pending: dict[Future[str], int] = {
                executor.submit(self.complete, request.messages(), stop): index
                for index, request in enumerate(requests)
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                # answers first: one that arrived beside a failure is paid for, so it is cached
                for future in sorted(done, key=lambda f: f.exception() is not None):
                    index = pending.pop(future)
                    yield index, future.result()
        finally:  # an error, or the caller stopped reading (Ctrl-C): nothing more is sent
            stop.set()
            executor.shutdown(wait=False, cancel_futures=True)

    def complete(self, messages: list[dict[str, str]], stop: threading.Event) -> str:
        """One prompt's answer, retried while the endpoint is busy, slow or unreachable."""
        request = urllib.request.Request(self.url, data=self.body(messages), headers=self._headers, method="POST")
        tries = self.params.max_retries + 1
        failure = Unusable(f"generator.base_url: no answer from {self.params.base_url}")
        for attempt in range(tries):
            if stop.is_set():
                raise _Stopped
            retry_after: str | None = None
            deadline = time.monotonic() + self.params.timeout
            try:
                with _OPENER.open(request, timeout=self.params.timeout) as response:
                    return answer_text(read_capped(response, MAX_ANSWER_BYTES, deadline))
            except AnswerTooLarge as error:
                raise Unusable(f"generator.base_url: {self.params.base_url} sent {error}") from None
            except urllib.error.HTTPError as error:
                try:
                    message = _server_message(read_capped(error, MAX_ERROR_BYTES, deadline))
                except (OSError, ValueError, http.client.HTTPException):
                    message = ""
                finally:
                    error.close()
                if 300 <= error.code < 400:
                    raise self._redirected(error) from None
                if error.code in PROMPT_STATUSES and PROMPT_REFUSAL.search(message):
                    return ""  # this prompt only (too long, filtered): dropped and counted, the build goes on
                if error.code not in RETRY_STATUSES and error.code < 500:
                    raise self._refused(error.code, message) from None
                failure = self._busy(error.code, message, tries)
                retry_after = error.headers.get("Retry-After") if error.headers is not None else None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                reason = error.reason if isinstance(error, urllib.error.URLError) else error
                if isinstance(reason, ssl.SSLError):  # a certificate does not fix itself
                    raise Unusable(f"generator.base_url: cannot reach {self.params.base_url} ({reason})") from None
                failure = self._unreachable(reason, tries)
            if attempt + 1 < tries and stop.wait(retry_delay(attempt, self.params.backoff, retry_after)):
                raise _Stopped
        raise failure

    def _redirected(self, error: urllib.error.HTTPError) -> Unusable:
        location = error.headers.get("Location", "") if error.headers is not None else ""
        host = urllib.parse.urlsplit(location).hostname or "(no Location)"
        return Unusable(
            f"generator.base_url: {self.params.base_url} answered HTTP {error.code}, a redirect to {host}; "
            "redirects are never followed (the key would go with it): set base_url to where it points"
        )

    def _refused(self, status: int, message: str) -> Unusable:
        """A 4xx that retrying will not change: say which field to fix."""
        said = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        if status in {401, 403}:
            variable = self.params.api_key_env
            return Unusable(
                f"generator.api_key_env: {self.params.base_url} refused the key in ${variable} ({said})"
                if variable
                else f"generator.api_key_env: {self.params.base_url} wants a key ({said}); name the "
                "environment variable holding it in api_key_env"
            )
        if status == 404:
            field = "model" if self.params.model in message else "base_url"
            return Unusable(
                f"generator.{field}: {self.url} not found ({said}); check base_url (it usually ends in /v1) "
                f"and model {self.params.model!r}"
            )
        return Unusable(f"generator: {self.url} rejected the request ({said})")

    def _busy(self, status: int, message: str, tries: int) -> Unusable:
        said = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        if status == 429:
            return Unusable(
                f"generator.concurrency: {self.params.base_url} kept refusing requests ({said}) after {tries} "
                "tries; lower concurrency or raise max_retries and backoff"
            )
        return Unusable(f"generator.base_url: {self.params.base_url} kept failing ({said}) after {tries} tries")

    def _unreachable(self, reason: object, tries: int) -> Unusable:
        if isinstance(reason, TimeoutError):
            why = f"no answer within {self.params.timeout:g} s"
            hint = "; raise generator.timeout if the server is slow"
        else:
            why = (reason.strerror if isinstance(reason, OSError) else None) or str(reason) or type(reason).__name__
            hint = ""
        return Unusable(f"generator.base_url: cannot reach {self.params.base_url} ({why}) after {tries} tries{hint}")


def create(params: OpenAIParams, context: GeneratorContext) -> OpenAIGenerator:
    """The generator, once its key is known to be there (before any request is sent)."""
    key = None
    if params.api_key_env is not None:
        check_key_variable(params.api_key_env, "generator.api_key_env", context.granted)
        key = os.environ.get(params.api_key_env, "").strip()
        if not key:
            raise InputError(
                f"generator.api_key_env: environment variable {params.api_key_env} is not set (export the "
                "endpoint's key in it, or set api_key_env: null for a server that needs no key)"
            )
        if not all(" " < c < "\x7f" for c in key):  # a header must be printable ASCII; never echo it
            raise InputError(
                f"generator.api_key_env: the value of {params.api_key_env} is not a key (it holds spaces, "
                "line breaks or non-ASCII characters)"
            )
        parts = urllib.parse.urlsplit(params.base_url)
        context.log(f"generator openai: the key in ${params.api_key_env} goes to {parts.hostname} ({parts.scheme})")
    return OpenAIGenerator(params, key)


@hookimpl
def register_generators() -> list[GeneratorInfo]:
    return [
        GeneratorInfo(
            name="openai",
            description="An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, Ollama); "
            "the key is read from the environment variable api_key_env names.",
            params=OpenAIParams,
            create=create,
        )
    ]
