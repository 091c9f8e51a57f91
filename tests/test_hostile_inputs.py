"""Issue 25: what someone else's spec, results folder, instances file or server can do,
each case reproduced. Nothing here trains a model."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowundo_bench.cli import app

SCHEMA1 = Path(__file__).parent / "fixtures" / "records-schema1"
runner = CliRunner()


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------- specs


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "name: bomb\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (billion_laughs(), "aliases (*a0) are not allowed"),
        ("name: loop\nmethods: &m [*m]\n", "aliases (*m) are not allowed"),
        ("name: deep\nmethods: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels"),
        ("name: deep\nmethods:\n" + "".join("  " * i + "- \n" for i in range(1, 3000)), "nested more than 64 levels"),
    ],
)
@pytest.mark.parametrize("command", ["run", "build"])
def test_a_yaml_bomb_or_deep_nesting_is_one_line_at_once(tmp_path, text, words, command):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    started = time.perf_counter()
    arguments = [command, str(path)] + (["--output", str(tmp_path / "out")] if command == "build" else [])
    result = runner.invoke(app, arguments)
    assert time.perf_counter() - started < 10
    assert result.exit_code == 2
    line = one_line_error(result)
    assert words in line and str(path) in line and "Traceback" not in result.output


def test_an_alias_in_a_set_value_is_text_not_a_self_referencing_list(tmp_path):
    from knowundo_bench.config.overrides import override_value

    assert override_value("&a [*a]") == "&a [*a]"
    assert override_value("[0, 1]") == [0, 1]


def test_a_spec_that_is_not_a_regular_file_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    started = time.perf_counter()
    result = runner.invoke(app, ["run", str(fifo)])
    assert time.perf_counter() - started < 10  # opening a FIFO for reading would wait for a writer
    assert result.exit_code == 2 and "not a regular file" in one_line_error(result)


# ---------------------------------------------------------------- build instance files


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"name": ' + "9" * 5000 + "}", "invalid JSON (Exceeds the limit"),
        ('{"name": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON (nested too deeply)"),
    ],
)
def test_an_instances_file_with_huge_numbers_or_deep_nesting_is_one_line(tmp_path, line, words):
    from knowundo_bench.build.spec import read_instances
    from knowundo_bench.core.errors import InputError

    path = tmp_path / "instances.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputError) as caught:
        read_instances(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_instance_name_pattern_is_linear():
    from knowundo_bench.benchmark.files import infer_instances
    from knowundo_bench.benchmark.pairs import QAPair

    hostile = QAPair(question="A-" * 50_000, answer="B'" * 50_000, scope="unlearn", split="train")
    started = time.perf_counter()
    infer_instances([hostile] * 4)
    assert time.perf_counter() - started < 5  # quadratic: minutes


# ---------------------------------------------------------------- results someone else produced


def damaged_results(tmp_path: Path) -> Path:
    """The schema-1 fixture records plus one file per kind of damage."""
    results = tmp_path / "results"
    shutil.copytree(SCHEMA1, results)
    (results / "broken.json").unlink()
    good = json.loads((SCHEMA1 / "ga.json").read_text())
    (results / "non_utf8.json").write_bytes(b'{"kind": "knowundo-bench/result", "method": "\xff"}')
    (results / "huge_int.json").write_text('{"kind": "knowundo-bench/result", "seed": ' + "7" * 5000 + "}")
    (results / "deep.json").write_text('{"kind": "knowundo-bench/result", "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    (results / "wrong_types.json").write_text(json.dumps({**good, "metrics": {"unlearn": {"success": [1, 2]}}}))
    (results / "big_number.json").write_text(json.dumps({**good, "wall_seconds": 10**400, "method": "big"}))
    (results / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(results / "fifo.json")
    with open(results / "huge.json", "wb") as handle:  # sparse: 65 MiB of nothing
        handle.truncate(65 * 2**20)
    (results / "not_ours.json").write_text(json.dumps({"some": "other tool's file"}))
    return results


DAMAGED = ("big_number", "deep", "fifo", "huge", "huge_int", "non_utf8", "wrong_types", "zero")


@pytest.mark.parametrize(
    "command",
    [["leaderboard"], ["leaderboard", "--per-seed", "-f", "json"], ["leaderboard", "--view", "efficiency"], ["plot"]],
)
def test_damaged_records_are_skipped_with_one_warning_each(tmp_path, monkeypatch, command):
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(tmp_path / "cache"))
    results = damaged_results(tmp_path)
    arguments = [*command, str(results)] + (["--output", str(tmp_path / "plots")] if command == ["plot"] else [])
    started = time.perf_counter()
    result = runner.invoke(app, arguments)
    assert time.perf_counter() - started < 30
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped ")]
    assert sorted(line.split()[2].removesuffix(".json:") for line in warnings) == sorted(DAMAGED)
    assert "not_ours" not in result.stderr and "Traceback" not in result.output
    if command == ["leaderboard"]:
        assert "| ga_gd |" in result.stdout and "| memflex |" in result.stdout


def test_compare_skips_damaged_records_too(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(tmp_path / "cache"))
    results = damaged_results(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(SCHEMA1, other)
    result = runner.invoke(app, ["compare", str(other), str(results)])
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("warning: skipped ") for line in result.stderr.splitlines()) == len(DAMAGED)


def test_markup_in_records_and_samples_prints_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    samples = results / "samples"
    samples.mkdir(parents=True)
    for label in ("vanilla", "ga"):
        record = json.loads((SCHEMA1 / f"{label}.json").read_text())
        (results / f"{label}.json").write_text(json.dumps(record))
        line = {
            "scope": "unlearn",
            "index": 0,
            "question": "What is [citation needed] in [bold red]x[/]?",
            "reference": "[/]",
            "plain": {"generation": "[link=file:///etc/passwd]y[/link] $x^2$", "token_accuracy": 1.0},
            "prefixes": {},
        }
        (samples / f"{label}.jsonl").write_text(json.dumps(line) + "\n{damaged\n")
    result = runner.invoke(app, ["samples", str(results), "--method", "ga"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "[citation needed]" in result.stdout and "[bold red]x[/]" in result.stdout and "[/]" in result.stdout
    assert "[link=file:///etc/passwd]y[/link]" in result.stdout
    assert "warning: skipped" in result.stderr and "ga.jsonl:2" in result.stderr


def test_plots_escape_dollars_in_run_and_method_names(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOWUNDO_BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    shutil.copytree(SCHEMA1, results)
    (results / "broken.json").unlink()
    for path in results.glob("*.json"):
        record = json.loads(path.read_text())
        record["method"] = "ga $\\frac{a}{$" if record["method"] == "ga" else record["method"]
        record["run"] = "run $x^$"
        path.write_text(json.dumps(record))
    result = runner.invoke(app, ["plot", str(results), "--output", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output  # read as mathtext, "$\frac{a}{$" and "$x^$" do not parse


# ---------------------------------------------------------------- secrets and remote endpoints

BUILD_AUTHORS = [
    {"name": "Odalys Ferrante", "genre": "gothic fiction", "born": "Trieste in 1958", "awards": "Ashgrove Prize",
     "father": "a clockmaker", "mother": "a cartographer", "email": "o.f@nightjar.example",
     "address": "14 Cypress Hollow, Trieste"},
]  # fmt: skip


class Recorder(BaseHTTPRequestHandler):
    """A server that answers as ``server.behaviour`` says and records what it was sent."""

    server: RecordingServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.server.behaviour(self)

    do_GET = do_POST = _handle


class RecordingServer(ThreadingHTTPServer):
    seen: list[tuple[str, str, str | None]]
    behaviour: Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def recording_server(host: str, behaviour: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[RecordingServer]:
    server = RecordingServer((host, 0), Recorder)
    server.seen, server.behaviour = [], behaviour
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes = b"") -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def build_spec(tmp_path: Path, **generator: object) -> Path:
    spec = {
        "name": "hostile",
        "domain": "privacy",
        "questions_per_category": 1,
        "min_pairs_per_scope": 1,
        "generator": {
            "name": "openai",
            "model": "m",
            "api_key_env": "KNOWUNDO_TEST_KEY",
            "max_retries": 0,
            **generator,
        },
        "instances": BUILD_AUTHORS,
    }
    path = tmp_path / "build.yaml"
    path.write_text(json.dumps(spec))
    return path


def error_line(result) -> str:
    """The one error line of a failed command (log lines, timestamped, aside)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KNOWUNDO_TEST_KEY", "sk-secret")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")
    return "sk-secret"


def test_a_redirect_is_an_error_and_the_key_never_follows_it(tmp_path, key):
    with recording_server("127.0.0.2", lambda h: answer(h, 200, {}, b"{}")) as elsewhere:
        target = f"http://127.0.0.2:{elsewhere.server_address[1]}/steal"
        with recording_server("127.0.0.1", lambda h: answer(h, 302, {"Location": target})) as endpoint:
            url = f"http://127.0.0.1:{endpoint.server_address[1]}/v1"
            result = runner.invoke(app, ["build", str(build_spec(tmp_path, base_url=url)), "-o", str(tmp_path / "o")])
    line = error_line(result)
    assert "HTTP 302" in line and "127.0.0.2" in line and "never followed" in line
    assert endpoint.seen and elsewhere.seen == []  # the key went only where the spec pointed
    assert "goes to 127.0.0.1 (http)" in result.stderr  # said before the first request


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://example.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://example.com/v1", True),
    ],
)
def test_plain_http_is_for_this_machine_only(url, allowed):
    from pydantic import ValidationError

    from knowundo_bench.plugins.generators.openai import OpenAIParams

    if allowed:
        OpenAIParams(base_url=url, model="m")
    else:
        with pytest.raises(ValidationError, match="plain http:// reaches only this machine"):
            OpenAIParams(base_url=url, model="m")


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("OPENAI_API_KEY", True),
        ("HF_TOKEN", True),
        ("TOGETHER_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", False),
        ("GITHUB_TOKEN", False),
        ("PATH", False),
        ("DATABASE_PASSWORD_KEY", False),
        ("HOME", False),
    ],
)
def test_only_api_key_variables_are_sent_unless_allowed_on_the_command_line(tmp_path, monkeypatch, name, allowed):
    from knowundo_bench.api import GeneratorContext, Granted
    from knowundo_bench.core.errors import InputError
    from knowundo_bench.plugins.generators.openai import OpenAIParams, create

    monkeypatch.setenv(name, "value")
    params = OpenAIParams(base_url="https://example.com/v1", model="m", api_key_env=name)
    said: list[str] = []
    if allowed:
        create(params, GeneratorContext(0, tmp_path, log=said.append))
        assert said == ["generator openai: the key in $" + name + " goes to example.com (https)"]
    else:
        with pytest.raises(InputError, match=f"pass --allow-key-env {name}"):
            create(params, GeneratorContext(0, tmp_path, log=said.append))
        assert said == []  # refused before anything is sent or said
        create(params, GeneratorContext(0, tmp_path, log=said.append, granted=Granted(key_envs=frozenset({name}))))


def test_the_build_command_refuses_a_credential_variable_and_allow_key_env_lets_it_through(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    spec = build_spec(tmp_path, base_url="https://127.0.0.1:9/v1", api_key_env="AWS_SECRET_ACCESS_KEY")
    line = error_line(runner.invoke(app, ["build", str(spec), "-o", str(tmp_path / "o")]))
    assert "AWS_SECRET_ACCESS_KEY does not look like an API key variable" in line
    allowed = runner.invoke(
        app, ["build", str(spec), "-o", str(tmp_path / "o"), "--allow-key-env", "AWS_SECRET_ACCESS_KEY"]
    )
    assert "cannot reach" in error_line(allowed)  # past the check: port 9 answers nothing


def test_a_slow_drip_or_endless_answer_times_out_and_a_huge_one_is_refused(tmp_path, key):
    from knowundo_bench.api import GenerationRequest, GeneratorContext, InputError
    from knowundo_bench.plugins.generators.openai import OpenAIParams, create

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        for _ in range(100):  # a byte every 0.2 s: each read succeeds, the answer never ends in time
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.2)

    def huge(handler: BaseHTTPRequestHandler) -> None:
        answer(handler, 200, {}, b" " * (9 * 2**20))

    request = [GenerationRequest("answer", "hello", {"name": "x"})]
    for behaviour, words, limit in ((drip, "no answer within 1 s", 5.0), (huge, "larger than 8 MiB", 20.0)):
        with recording_server("127.0.0.1", behaviour) as server:
            url = f"http://127.0.0.1:{server.server_address[1]}/v1"
            params = OpenAIParams(base_url=url, model="m", api_key_env="KNOWUNDO_TEST_KEY", timeout=1, max_retries=0)
            generator = create(params, GeneratorContext(0, tmp_path, log=lambda line: None))
            started = time.perf_counter()
            with pytest.raises(InputError, match=words):
                list(generator.generate(request))
            assert time.perf_counter() - started < limit


def test_retries_and_answer_lengths_are_bounded_and_retry_after_must_be_a_wait():
    from pydantic import ValidationError

    from knowundo_bench.plugins.generators.openai import MAX_WAIT, OpenAIParams, retry_delay

    for field, value in (("max_retries", 21), ("max_tokens", 10**9), ("timeout", 10**6)):
        with pytest.raises(ValidationError, match=field):
            OpenAIParams(base_url="https://example.com/v1", model="m", **{field: value})
    for bad in ("inf", "-inf", "nan", "-5", "1e999"):
        assert retry_delay(1, 0.5, bad) == 1.0  # as if absent: the backoff
    assert retry_delay(1, 0.5, "3") == 3.0 and retry_delay(1, 0.5, "100000") == MAX_WAIT


def test_a_spec_cannot_name_the_ray_cluster(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nexecution: {executor: ray, address: 'ray://attacker:10001'}\n")
    line = one_line_error(runner.invoke(app, ["run", str(spec)]))
    assert "execution.address" in line and "--address" in line and "RAY_ADDRESS" in line


def test_workers_get_an_allow_list_of_variables_and_no_proxy_credentials(monkeypatch):
    from knowundo_bench.plugins.executors import ray as ray_executor

    for name, value in {
        "HF_HOME": "/hf",
        "HF_TOKEN": "hf_secret",
        "HF_SOME_NEW_SECRET": "x",
        "KNOWUNDO_BENCH_CACHE": "/cache",
        "HTTPS_PROXY": "http://user:p%40ss@proxy:3128",
        "no_proxy": "localhost",
        "MY_TOOL_CONFIG": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "SSL_CERT_FILE": "/ca.pem",
    }.items():
        monkeypatch.setenv(name, value)
    forwarded = ray_executor._forwarded_env()
    assert forwarded["HTTPS_PROXY"] == "http://proxy:3128" and forwarded["no_proxy"] == "localhost"
    assert forwarded["HF_HOME"] == "/hf" and forwarded["KNOWUNDO_BENCH_CACHE"] == "/cache"
    assert forwarded["SSL_CERT_FILE"] == "/ca.pem"
    assert not {"HF_TOKEN", "HF_SOME_NEW_SECRET", "MY_TOOL_CONFIG", "AWS_SECRET_ACCESS_KEY"} & set(forwarded)


def test_trust_remote_code_needs_the_command_line_too(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: x\nmodel: {source: hf, name_or_path: some-org/some-model, trust_remote_code: true, device: cpu}\n"
    )
    line = one_line_error(runner.invoke(app, ["run", str(spec)]))
    assert "model.trust_remote_code" in line and "--trust-remote-code" in line
    build = build_spec(tmp_path, base_url="https://example.com/v1")
    raw = json.loads(build.read_text())
    raw["generator"] = {"name": "hf", "name_or_path": str(tmp_path), "trust_remote_code": True}
    build.write_text(json.dumps(raw))
    line = error_line(runner.invoke(app, ["build", str(build), "-o", str(tmp_path / "o")]))
    assert "generator.trust_remote_code" in line and "--trust-remote-code" in line
