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
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:  # the client gave up: what the test wants
                return
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


# ---------------------------------------------------------------- output folders

TINY_RUN = """\
name: locktest
data: {source: synthetic, n_authors: 3}
model: {source: tiny, device: cpu, hidden_size: 32, num_layers: 1, num_heads: 2, vocab_size: 400}
vanilla: {epochs: 3, lr: 3.0e-3, batch_size: 16, grad_accum: 1}
eval: {batch_size: 32, max_new_tokens: 8, rouge: false, prompt_prefixes: {}}
methods:
  - {name: ga, epochs: 1, batch_size: 4, grad_accum: 1, lr: 1.0e-3}
"""


@pytest.mark.parametrize("command", ["run", "build", "plot"])
def test_a_second_command_on_a_locked_folder_stops_at_once_naming_the_holder(tmp_path, command):
    from knowundo_bench.records.lock import locked

    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_RUN)
    folder = tmp_path / "out"
    results = tmp_path / "results"
    shutil.copytree(SCHEMA1, results)
    arguments = {
        "run": ["run", str(spec), "--output", str(folder)],
        "build": ["build", str(spec), "--output", str(folder)],
        "plot": ["plot", str(results), "--output", str(folder)],
    }[command]
    with locked(folder, "run"):
        started = time.perf_counter()
        result = runner.invoke(app, arguments)
        assert time.perf_counter() - started < 5
    line = one_line_error(result)
    assert result.exit_code == 2 and f"pid {os.getpid()}" in line and "`knowundo-bench run`" in line
    assert sorted(entry.name for entry in folder.iterdir()) == [".lock"]  # no work started


def test_a_lock_file_planted_as_a_link_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".lock").symlink_to(victim)
    result = runner.invoke(app, ["plot", str(SCHEMA1), "--output", str(folder)])
    assert result.exit_code == 2 and "not writable" in one_line_error(result)
    assert victim.read_text() == "precious"


def test_a_failed_command_leaves_no_folder_it_created(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nmethods: [no_such_method]\n")
    result = runner.invoke(app, ["run", str(spec), "--output", str(tmp_path / "out" / "deeper")])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()


def test_only_temporaries_older_than_the_lock_are_cleaned(tmp_path):
    from knowundo_bench.records.atomic import remove_stale_temporaries
    from knowundo_bench.records.lock import locked, taken_at

    old, live = tmp_path / ".ga.json.abcd1234", tmp_path / ".ga_gd.json.efgh5678"
    old.write_text("{")
    os.utime(old, (time.time() - 60, time.time() - 60))
    with locked(tmp_path, "run") as since:
        live.write_text("{")  # another writer of this command (a Ray worker) at work
        assert taken_at(tmp_path) == pytest.approx(since, abs=2)
        removed = remove_stale_temporaries(tmp_path, "*.json", taken_at(tmp_path) - 1)
    assert removed == [old] and live.exists()


def test_a_json_file_that_is_not_a_record_is_never_replaced(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_RUN)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "ga.json").write_text('{"my": "notes"}')
    result = runner.invoke(app, ["run", str(spec), "--output", str(folder)])
    line = error_line(result)
    assert "ga.json is not a knowundo-bench record" in line
    assert (folder / "ga.json").read_text() == '{"my": "notes"}' and not (folder / "vanilla.json").exists()


def test_the_write_probe_never_follows_a_planted_link(tmp_path):
    from knowundo_bench.run.resolution import parse_spec
    from knowundo_bench.run.reuse import output_directory
    from knowundo_bench.testing import plugins_with, tiny_spec

    victim = tmp_path / "victim"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    for pid in (os.getpid(), os.getpid() + 1):
        (folder / f".write-test-{pid}").symlink_to(victim)
    output_directory(parse_spec(tiny_spec(), plugins_with()), folder)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(("code", "exit_code"), [("ENOSPC", 1), ("EDQUOT", 1), ("EACCES", 2), ("EROFS", 2)])
def test_a_write_error_is_one_line_naming_the_file(tmp_path, monkeypatch, code, exit_code):
    import errno

    from knowundo_bench.records import atomic

    def fail(descriptor: int) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(atomic.os, "fsync", fail)
    result = runner.invoke(app, ["plot", str(SCHEMA1), "--output", str(tmp_path / "plots")])
    line = one_line_error(result)
    assert result.exit_code == exit_code and "internal error" not in line
    assert line.startswith("error: cannot write ") and str(tmp_path / "plots") in line
    assert os.strerror(getattr(errno, code)) in line
    plots = tmp_path / "plots"
    assert not plots.exists() or not [p for p in plots.iterdir() if p.name != ".lock"]  # no half-written image


def test_a_cached_vanilla_folder_is_on_disk_before_it_is_published(tmp_path, monkeypatch):
    from knowundo_bench.records import atomic

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    def replace(source: object, target: object) -> None:
        events.append(f"replace {source}")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with atomic.atomic_directory(tmp_path / "vanilla" / "key") as staging:
        (staging / "model.safetensors").write_bytes(b"weights")
        (staging / "vanilla.json").write_text("{}")
    published = events.index(next(e for e in events if e.startswith("replace")))
    before = " ".join(events[:published])
    assert "model.safetensors" in before and "vanilla.json" in before and f"fsync {staging}" in before
    assert events[published + 1 :] == [f"fsync {tmp_path / 'vanilla'}"]  # the rename itself, on disk


@pytest.mark.slow
def test_two_runs_started_together_on_one_folder_one_runs_the_other_stops_within_a_second(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_RUN)
    folder = tmp_path / "out"
    command = [sys.executable, "-m", "knowundo_bench", "run", str(spec), "--output", str(folder), "--no-progress"]
    environment = {**os.environ, "KNOWUNDO_BENCH_CACHE": str(tmp_path / "cache")}
    started = time.monotonic()
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    processes = [subprocess.Popen(command, env=environment, **pipes)]
    time.sleep(0.05)
    processes.append(subprocess.Popen(command, env=environment, **pipes))
    ends: dict[int, float] = {}
    while len(ends) < 2:
        for index, process in enumerate(processes):
            if index not in ends and process.poll() is not None:
                ends[index] = time.monotonic() - started
        time.sleep(0.01)
    outputs = [process.communicate() for process in processes]
    codes = sorted(process.returncode for process in processes)
    assert codes == [0, 2], outputs
    loser = next(index for index, process in enumerate(processes) if process.returncode == 2)
    assert ends[loser] < 1.5  # the time to start Python and read the spec, then the lock
    assert "in use by `knowundo-bench run`" in outputs[loser][1]
    records = {json.loads(path.read_text())["run"] for path in folder.glob("*.json")}
    assert records == {"locktest"} and {path.stem for path in folder.glob("*.json")} == {"vanilla", "ga"}


def test_a_resumed_run_skips_a_damaged_record_with_a_warning_and_recomputes_it(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_RUN)
    folder = tmp_path / "out"
    assert runner.invoke(app, ["run", str(spec), "--output", str(folder), "--no-progress"]).exit_code == 0
    record = json.loads((folder / "ga.json").read_text())
    (folder / "ga.json").write_text(json.dumps({**record, "metrics": {"unlearn": {"success": {"deep": [1]}}}}))
    result = runner.invoke(app, ["run", str(spec), "--output", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "warning: skipped ga.json: metrics.unlearn.success" in result.stderr
    assert json.loads((folder / "ga.json").read_text())["metrics"] == record["metrics"]  # recomputed, same numbers
