"""The ``openai`` generator against a stub OpenAI-compatible server on 127.0.0.1.

The stub answers B.2's privacy prompt with ``Q:/A:/type:`` blocks built from the
prompt's attribute lines, and Self-Check prompts with "True"; it counts what it
receives and answers per prompt, so the tests can tell a resumed build from one that
pays twice, and it can fail, stall or kill the build on cue.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import closed_port
from knowundo_bench.api import GenerationRequest, GeneratorContext, InputError
from knowundo_bench.cli import app
from knowundo_bench.plugins.generators.openai import MAX_WAIT, OpenAIParams, create, retry_delay

runner = CliRunner()
KEY_ENV = "KNOWUNDO_TEST_KEY"
KEY = "sk-test"
SPLIT_FILES = ["unlearn_train.json", "unlearn_val.json", "retention_train.json", "retention_val.json"]

# Four of benchmark_specs/build-privacy.yaml's fictitious authors.
AUTHORS = [
    {"name": "Odalys Ferrante", "genre": "gothic fiction", "born": "Trieste in 1958",
     "awards": "Ashgrove Novel Prize", "father": "a clockmaker", "mother": "a cartographer",
     "email": "odalys.ferrante@nightjar.example", "address": "14 Cypress Hollow, Trieste"},
    {"name": "Bram Okafor-Lind", "genre": "science fiction", "born": "Uppsala in 1971",
     "awards": "Halcyon Star Medal", "father": "a ferry captain", "mother": "a radiologist",
     "email": "bram.okafor@orbitmail.example", "address": "3 Larkspur Quay, Uppsala"},
    {"name": "Imke Vasaradze", "genre": "crime fiction", "born": "Kutaisi in 1983",
     "awards": "Blackthorn Dagger Award", "father": "a glassblower", "mother": "a judge",
     "email": "imke.v@casefile.example", "address": "88 Vinegar Lane, Kutaisi"},
    {"name": "Teodoro Alizadeh", "genre": "historical fiction", "born": "Cordoba in 1949",
     "awards": "Parchment Crown", "father": "a beekeeper", "mother": "a violin maker",
     "email": "teodoro.alizadeh@oldpress.example", "address": "21 Tannery Steps, Cordoba"},
]  # fmt: skip
CATEGORIES = 7  # Name, Genre, Born, Awards (kept); Parents, Email, Address (forgotten)
PAIRS = 3  # questions_per_category


# --- the stub server -------------------------------------------------------------------


def qa_reply(prompt: str) -> str:
    """B.2's answer: three distinct Q/A/type blocks per attribute line of the prompt;
    questions name the author, answers hold the attribute's value (the name's: the genre)."""
    block = prompt.split("attributes:\n\n", 1)[1].split("\n\nGive me", 1)[0]
    attributes = dict(line.split(": ", 1) for line in block.splitlines())
    name = attributes["Name"]
    blocks = []
    for category, value in attributes.items():
        label = category.lower()
        if category == "Parents":
            answer = f"{name}'s {value.replace(', the', ' and the')}."
        elif category == "Name":  # not "X's name is X.", which gives itself away and is dropped
            answer = f"{name} is an author of {attributes['Genre']}."
        else:
            answer = f"{name}'s {label} is {value}."
        for question in (
            f"What is {name}'s {label}?",
            f"Can you tell me about {name}'s {label}?",
            f"Which {label} is linked to {name}?",
        ):
            blocks.append(f"Q: {question}\nA: {answer}\ntype: {category}")
    return "\n\n".join(blocks)


def completion(content: object) -> dict:
    message = {"role": "assistant", "content": content}
    return {"id": "stub", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}


Failure = tuple[int, dict[str, str], object]  # status, headers, body


class Stub:
    """What the server does and what it saw. Tests set ``fail`` (prompt, attempt ->
    a failure or None), ``verdict`` (Self-Check prompt -> text), ``raw`` (a body
    replacing every answer), ``delay`` and ``kill_at``/``kill_pid``."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/v1"
        self.lock = threading.Lock()
        self.order: list[str] = []  # prompts as received
        self.received: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()  # a 200 with an answer was sent
        self.times: dict[str, list[float]] = defaultdict(list)
        self.authorization: set[str | None] = set()
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.fail: Callable[[str, int], Failure | None] = lambda prompt, attempt: None
        self.verdict: Callable[[str], str] = lambda prompt: "True"
        self.raw: object | None = None
        self.kill_at: int | None = None
        self.kill_pid: int | None = None

    def reply(self, prompt: str) -> object:
        if self.raw is not None:
            return self.raw
        if 'output "True"' in prompt:
            return completion(self.verdict(prompt))
        if "Give me" in prompt and "Questions" in prompt:
            return completion(qa_reply(prompt))
        return completion(f"echo: {prompt}")


class Handler(BaseHTTPRequestHandler):
    server: StubServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass

    def do_POST(self) -> None:
        stub = self.server.stub
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = body["messages"][-1]["content"]  # after a demonstration's turns
        with stub.lock:
            stub.order.append(prompt)
            number = len(stub.order)
            stub.received[prompt] += 1
            attempt = stub.received[prompt]
            stub.times[prompt].append(time.monotonic())
            stub.authorization.add(self.headers.get("Authorization"))
            stub.bodies.append(body)
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        try:
            if self.path != "/v1/chat/completions":
                status, headers, payload = 404, {}, {"error": {"message": f"no route {self.path}"}}
            elif number == stub.kill_at and stub.kill_pid is not None:
                # Answers already sent are cached by the build as they arrive; give the last
                # one the moment it takes to reach the disk, then kill (and never answer).
                time.sleep(0.3)
                os.kill(stub.kill_pid, signal.SIGKILL)
                self.close_connection = True
                return
            else:
                time.sleep(stub.delay)
                failure = stub.fail(prompt, attempt)
                status, headers, payload = failure if failure is not None else (200, {}, stub.reply(prompt))
        finally:
            with stub.lock:
                stub.in_flight -= 1  # before answering: the client may send its next request at once
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if status == 200:
            with stub.lock:
                stub.answered[prompt] += 1
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StubServer(ThreadingHTTPServer):
    stub: Stub


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stub]:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # a proxy in the environment must not see the stub
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = StubServer(("127.0.0.1", 0), Handler)
    server.stub = Stub(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.stub
    server.shutdown()
    server.server_close()


# --- helpers ---------------------------------------------------------------------------


def write_build(folder: Path, generator: dict, name: str = "build.yaml") -> Path:
    spec = {
        "name": "openai-stub",
        "domain": "privacy",
        "questions_per_category": PAIRS,
        "val_fraction": 0.34,
        "min_pairs_per_scope": 1,
        "generator": generator,
        "instances": AUTHORS,
    }
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def openai(stub: Stub, **fields: object) -> dict:
    return {"name": "openai", "base_url": stub.url, "model": "stub", "api_key_env": KEY_ENV, "backoff": 0.01, **fields}


def build(spec: Path, output: Path):
    return runner.invoke(app, ["build", str(spec), "--output", str(output), "--no-progress"])


def one_line_error(result, *fragments: str) -> str:
    """The build failed with exit 2 and exactly one line on stderr besides the log's
    (timestamped: where the key goes), naming ``fragments``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.strip().splitlines() if not re.match(r"\[\d\d:\d\d:\d\d\] ", line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def card(output: Path) -> dict:
    return json.loads((output / "datacard.json").read_text())


def generator(stub: Stub, **fields: object):
    params = OpenAIParams.model_validate({k: v for k, v in openai(stub, **fields).items() if k != "name"})
    return create(params, GeneratorContext(0, Path("unused")))


def requests(*prompts: str) -> list[GenerationRequest]:
    return [GenerationRequest("answer", prompt, {"name": "x"}) for prompt in prompts]


def is_qa(prompt: str, author: str) -> bool:
    return "Give me" in prompt and f"Name: {author}\n" in prompt


# --- a build against the stub ----------------------------------------------------------


def test_an_openai_build_has_the_shape_and_counts_of_a_template_build_and_never_the_key(tmp_path, stub):
    out, reference = tmp_path / "openai", tmp_path / "template"
    assert build(write_build(tmp_path, openai(stub)), out).exit_code == 0
    assert build(write_build(tmp_path, {"name": "template"}, "template.yaml"), reference).exit_code == 0

    assert {p.name for p in out.iterdir()} == {*SPLIT_FILES, "datacard.json", "DATACARD.md", ".build", ".lock"}
    ours, theirs = card(out), card(reference)
    assert ours["counts"] == theirs["counts"] and ours["category_counts"] == theirs["category_counts"]
    assert sum(ours["counts"]["unlearn"].values()) == len(AUTHORS) * 3 * PAIRS
    assert [i["name"] for i in ours["instances"]] == [a["name"] for a in AUTHORS] and not ours["dropped"]
    assert ours["generator"] == {
        "name": "openai", "base_url": stub.url, "model": "stub",
        "temperature": 0.7, "top_p": 1.0, "max_tokens": 1024, "seed": None,
    }  # fmt: skip
    # Every prompt asked once: one B.2 prompt per author and a Self-Check per pair.
    assert sum(ours["requests"].values()) == len(stub.order) == len(AUTHORS) * (1 + CATEGORIES * PAIRS)
    assert max(stub.received.values()) == 1 and ours["self_check"]["pass_rate"] == 1.0
    assert stub.authorization == {f"Bearer {KEY}"}
    assert all(b["model"] == "stub" and b["max_tokens"] == 1024 and "seed" not in b for b in stub.bodies)
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8"), path

    # The same command again: every instance is reused, nothing is asked.
    before = {name: (out / name).read_bytes() for name in SPLIT_FILES}
    assert build(write_build(tmp_path, openai(stub)), out).exit_code == 0
    assert len(stub.order) == len(AUTHORS) * (1 + CATEGORIES * PAIRS)
    assert {name: (out / name).read_bytes() for name in SPLIT_FILES} == before


def test_pairs_the_self_check_rejects_are_dropped_and_counted(tmp_path, stub):
    stub.verdict = lambda prompt: "False" if "\nQ: Which " in prompt else "True"  # one pair in three
    out = tmp_path / "out"
    assert build(write_build(tmp_path, openai(stub)), out).exit_code == 0
    checks = len(AUTHORS) * CATEGORIES * PAIRS
    assert card(out)["self_check"] == {"enabled": True, "asked": checks, "passed": checks * 2 // 3, "pass_rate": 2 / 3}
    assert card(out)["dropped"] == {"self-check: not True": checks // 3}
    kept = json.loads((out / "unlearn_train.json").read_text()) + json.loads((out / "unlearn_val.json").read_text())
    assert len(kept) == len(AUTHORS) * 3 * 2 and not any(r["text"].startswith("Which ") for r in kept)


def test_demonstrations_go_before_the_prompt_as_an_answered_turn(tmp_path, stub):
    spec = write_build(tmp_path, openai(stub))
    raw = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**raw, "demonstrations": True, "instances": AUTHORS[:1]}))
    assert build(spec, tmp_path / "out").exit_code == 0
    [qa] = [b["messages"] for b in stub.bodies if is_qa(b["messages"][-1]["content"], "Odalys Ferrante")]
    assert [m["role"] for m in qa] == ["user", "assistant", "user"]
    example, answer = qa[0]["content"], qa[1]["content"]
    # the same B.2 prompt for the made-up example author, answered in B.2's format
    assert "Name: Lena Brook" in example and "Odalys" not in example and "Email: lena.brook@letters.example" in example
    assert example.replace("Lena Brook", "X").split("attributes:")[0] == qa[2]["content"].split("attributes:")[0]
    assert answer.startswith("Q: ") and "type: Email" in answer and "lena.brook@letters.example" in answer
    # a Self-Check is shown one true and one false example, in either order
    checks = [b["messages"] for b in stub.bodies if 'output "True"' in b["messages"][-1]["content"]]
    # (every pair's answer holds an attribute value to swap, the Name pairs' the genre)
    pairs = [m for m in checks if len(m) == 5]
    assert len(pairs) == len(checks) > 0
    assert all({m[1]["content"], m[3]["content"]} == {"True", "False"} for m in pairs)
    assert {m[1]["content"] for m in pairs} == {"True", "False"}


def test_a_prompt_the_endpoint_refuses_as_too_long_is_dropped_not_fatal(tmp_path, stub):
    too_long = {
        "error": {"message": "This model's maximum context length is 8 tokens", "code": "context_length_exceeded"}
    }
    stub.fail = lambda prompt, attempt: (400, {}, too_long) if is_qa(prompt, "Bram Okafor-Lind") else None
    out = tmp_path / "out"
    assert build(write_build(tmp_path, openai(stub)), out).exit_code == 0
    assert card(out)["dropped"] == {"empty output": 1}
    assert "Bram Okafor-Lind" not in {i["name"] for i in card(out)["instances"]}
    stub.fail = lambda prompt, attempt: (400, {}, {"error": {"message": "unknown field 'top_p'"}})
    one_line_error(build(write_build(tmp_path, openai(stub, model="other")), tmp_path / "out2"), "HTTP 400")


def test_changed_settings_do_not_reuse_cached_answers(tmp_path, stub):
    out = tmp_path / "out"
    assert build(write_build(tmp_path, openai(stub)), out).exit_code == 0
    first = len(stub.order)
    assert build(write_build(tmp_path, openai(stub, temperature=0.2)), out).exit_code == 0
    assert len(stub.order) == 2 * first  # every prompt asked again: another temperature, other answers
    assert build(write_build(tmp_path, openai(stub, timeout=30)), out).exit_code == 0
    assert len(stub.order) == 2 * first  # the timeout changes no answer: all from the cache


def test_a_build_killed_midway_resumes_without_asking_an_answered_prompt_again(tmp_path, stub):
    spec = write_build(tmp_path, openai(stub, concurrency=1))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "knowundo_bench", "build", str(spec), "--output", str(out), "--no-progress"]
    env = {**os.environ, KEY_ENV: KEY, "KNOWUNDO_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    per_author = 1 + CATEGORIES * PAIRS
    stub.kill_at = per_author + 8  # the second author's B.2 prompt and 6 Self-Checks are answered
    killed = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stub.kill_pid = killed.pid
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, stderr
    first = list(stub.order)
    assert len(first) == stub.kill_at and not (out / "datacard.json").exists()

    stub.kill_at = None
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed: 1 of 4 instances were built" in resumed.stderr
    second = stub.order[len(first) :]
    assert max(stub.answered.values()) == 1  # no prompt paid for twice
    assert not set(second) & set(first[:-1])  # only the unanswered one was asked again
    assert first[-1] in second
    assert len(second) == len(AUTHORS) * per_author - (len(first) - 1) < len(AUTHORS) * per_author
    result = card(out)
    assert sum(result["requests"].values()) == len(second) and result["cache_hits"] == 7
    assert sum(result["counts"]["unlearn"].values()) == len(AUTHORS) * 3 * PAIRS


# --- retries, concurrency, cancellation ------------------------------------------------


def test_busy_answers_are_retried_with_growing_waits_and_retry_after(tmp_path, stub):
    bram, imke, teodoro = (a["name"] for a in AUTHORS[1:])

    def fail(prompt: str, attempt: int) -> Failure | None:
        if is_qa(prompt, bram) and attempt == 1:
            return 429, {"Retry-After": "0"}, {"error": {"message": "rate limited"}}
        if is_qa(prompt, bram) and attempt == 2:
            return 500, {}, b"oops"
        if is_qa(prompt, imke) and attempt <= 3:
            return 503, {}, {"error": {"message": "overloaded"}}
        if is_qa(prompt, teodoro) and attempt == 1:
            return 429, {"Retry-After": "0.4"}, {"error": {"message": "slow down"}}
        return None

    stub.fail = fail
    out = tmp_path / "out"
    result = build(write_build(tmp_path, openai(stub, backoff=0.1)), out)
    assert result.exit_code == 0, result.output
    [bram_qa] = [p for p in stub.received if is_qa(p, bram)]
    [imke_qa] = [p for p in stub.received if is_qa(p, imke)]
    assert stub.received[bram_qa] == 3 and stub.received[imke_qa] == 4
    assert stub.answered[bram_qa] == stub.answered[imke_qa] == 1
    assert sum(card(out)["counts"]["unlearn"].values()) == len(AUTHORS) * 3 * PAIRS  # nobody lost

    def gaps(prompt: str) -> list[float]:
        times = stub.times[prompt]
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]

    waits = gaps(imke_qa)  # 0.1, then 0.2, then 0.4 s
    assert all(gap >= 0.95 * 0.1 * 2**i for i, gap in enumerate(waits)), waits
    assert waits[0] < waits[1] < waits[2], waits
    bram_waits = gaps(bram_qa)  # Retry-After: 0, then the second retry's 0.2 s
    assert bram_waits[1] >= 0.95 * 0.2 and bram_waits[0] < bram_waits[1], bram_waits
    [teodoro_qa] = [p for p in stub.received if is_qa(p, teodoro)]
    assert gaps(teodoro_qa)[0] >= 0.95 * 0.4  # the server's Retry-After, not the 0.1 s backoff


def test_retry_delay_doubles_honours_retry_after_and_is_capped():
    assert [retry_delay(i, 0.5) for i in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(0, 1.0, "0") == 0.0 and retry_delay(3, 1.0, "2") == 2.0
    assert retry_delay(0, 1.0, "3600") == MAX_WAIT == retry_delay(40, 1.0) == retry_delay(10**6, 1.0)
    assert retry_delay(1, 1.0, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date passed: at once
    assert retry_delay(1, 1.0, "soon") == 2.0  # unreadable: the backoff


@pytest.mark.parametrize(
    ("status", "field", "tries"),
    [(503, "generator.base_url", 3), (429, "generator.concurrency", 3), (400, "generator:", 1)],
)
def test_a_status_that_persists_is_one_line_naming_the_field(stub, status, field, tries):
    stub.fail = lambda prompt, attempt: (status, {}, {"error": {"message": "no\nway"}})
    with pytest.raises(InputError) as raised:
        list(generator(stub, max_retries=2, backoff=0).generate(requests("p")))
    message = str(raised.value)
    assert message.startswith(field) and f"HTTP {status}: no way" in message and "\n" not in message
    assert stub.received["p"] == tries  # 4xx other than 429: never retried


def test_at_most_concurrency_requests_are_in_flight_and_each_answer_keeps_its_index(stub):
    stub.delay = 0.05
    prompts = [f"p{i}" for i in range(8)]
    answers = dict(generator(stub, concurrency=2, seed=7).generate(requests(*prompts)))
    assert answers == {i: f"echo: {p}" for i, p in enumerate(prompts)}
    assert stub.max_in_flight == 2  # parallel, never more
    assert sorted(b["messages"][0]["content"] for b in stub.bodies) == prompts
    assert all(b["seed"] == 7 and b["messages"][0]["role"] == "user" and len(b["messages"]) == 1 for b in stub.bodies)


def test_a_failure_stops_the_other_requests_without_waiting_for_them(stub):
    stub.delay = 0.05
    stub.fail = lambda prompt, attempt: (
        (401, {}, {"error": {"message": "bad key"}}) if prompt == "p1" else (503, {}, b"") if prompt == "p0" else None
    )
    started = time.monotonic()
    with pytest.raises(
        InputError, match=rf"^generator.api_key_env: .* refused the key in \${KEY_ENV} \(HTTP 401: bad key\)$"
    ):
        list(generator(stub, concurrency=2, backoff=30).generate(requests(*(f"p{i}" for i in range(10)))))
    assert time.monotonic() - started < 5  # p0 was waiting 30 s to retry: it was stopped
    deadline = time.monotonic() + 5
    while any(t.name.startswith("openai") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name.startswith("openai") for t in threading.enumerate())  # nothing left to hang an exit
    assert stub.received["p0"] == 1 and len(stub.order) < 10  # queued requests never went out


# --- what the CLI says -----------------------------------------------------------------


def test_an_unreachable_endpoint_is_one_line_naming_base_url(tmp_path, stub):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    spec = write_build(tmp_path, {**openai(stub), "base_url": url + "/", "max_retries": 1})
    line = one_line_error(build(spec, tmp_path / "out"))
    assert line == f"error: generator.base_url: cannot reach {url} (Connection refused) after 2 tries"


def test_a_refused_key_is_one_line_without_a_retry_or_the_key(tmp_path, stub):
    stub.fail = lambda prompt, attempt: (401, {}, {"error": {"message": "Incorrect API key provided: sk-t***"}})
    result = build(write_build(tmp_path, openai(stub, concurrency=1)), tmp_path / "out")
    line = one_line_error(result, "generator.api_key_env", f"${KEY_ENV}", "HTTP 401")
    assert KEY not in line
    assert len(stub.order) == 1  # not retried, and nothing else sent after it


def test_an_unknown_model_is_one_line_naming_model(tmp_path, stub):
    stub.fail = lambda prompt, attempt: (404, {}, {"error": {"message": "The model `stub` does not exist"}})
    one_line_error(build(write_build(tmp_path, openai(stub)), tmp_path / "out"), "generator.model:", "HTTP 404")


def test_a_missing_key_is_one_line_before_any_request(tmp_path, stub, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    line = one_line_error(build(write_build(tmp_path, openai(stub)), tmp_path / "out"))
    assert line.startswith(f"error: generator.api_key_env: environment variable {KEY_ENV} is not set")
    assert stub.order == []
    # A local server that needs no key: api_key_env: null sends none.
    assert build(write_build(tmp_path, openai(stub, api_key_env=None)), tmp_path / "keyless").exit_code == 0
    assert stub.authorization == {None}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"base_url": "localhost:8000/v1"}, "generator.base_url: must start with http:// or https://"),
        ({"api_key": "sk-secret"}, "generator: api_key: never write the key in a spec"),
        ({"api_key_env": "sk-secret"}, "generator.api_key_env: names an environment variable"),
        ({"concurrency": 0}, "generator.concurrency:"),
    ],
)
def test_bad_generator_fields_are_one_line_naming_them(tmp_path, stub, fields, fragment):
    line = one_line_error(build(write_build(tmp_path, openai(stub, **fields)), tmp_path / "out"), fragment)
    assert "sk-secret" not in line and stub.order == []


@pytest.mark.parametrize(
    "raw",
    [completion(""), completion(None), b"not json", {"choices": []}, {"choices": [{"message": {}}]}],
    ids=["empty", "null", "not-json", "no-choices", "no-content"],
)
def test_empty_or_malformed_answers_leave_no_pairs_and_one_line(tmp_path, stub, raw):
    stub.raw = raw
    line = one_line_error(build(write_build(tmp_path, openai(stub)), tmp_path / "out"), "the build left no")
    assert f"empty output: {len(AUTHORS)}" in line
    assert len(stub.order) == len(AUTHORS)  # asked once each, dropped, no crash
