"""Coverage-guided fuzzing (atheris/libFuzzer) of the path from a broker delivery to a task.

Each target in ``fuzz_targets.py`` runs in a subprocess for a bounded number of inputs, from a
corpus of real messages (celeriac's and Celery's); the test fails if libFuzzer reports a crash (an
exception other than the decoder's documented refusals, a pickle unpickled, a broker parser that
raises) or an input that hangs. ``scripts/fuzz.py`` runs the same targets for as long as you like.

Inputs the fuzzer found that once broke a parser are kept below as regression tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from celeriac.brokers.base import Delivery
from celeriac.exceptions import ContentDisallowed, DecodeError, InvalidTaskError
from celeriac.protocol import decode
from tests.reliability import fuzz_targets

atheris = pytest.importorskip("atheris", reason="atheris has no wheel for this Python or platform")

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("CELERIAC_FUZZ_RUNS", "20000"))
SECONDS = int(os.environ.get("CELERIAC_FUZZ_SECONDS", "6"))
MALFORMED = "application/x-celeriac-malformed"


def fuzz(target: str, corpus: Path, artifacts: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    artifacts.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "tests.reliability.fuzz_targets", target, str(corpus),
               f"-artifact_prefix={artifacts}/", "-timeout=10", "-max_len=16384", *args]  # fmt: skip
    return _run(command, timeout=timeout)


def _run(command: list[str], *, timeout: float, canary: str = "") -> subprocess.CompletedProcess[str]:
    """libFuzzer's report and the Python traceback, in ``stdout`` (atheris prints to both streams)."""
    env = {**os.environ, "CELERIAC_FUZZ_CANARY": canary}
    return subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("target", fuzz_targets.TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    seeds = fuzz_targets.write_seeds(target, corpus)
    result = fuzz(target, corpus, tmp_path / "artifacts", f"-runs={RUNS}", f"-max_total_time={SECONDS}",
                  timeout=SECONDS + 60)  # fmt: skip
    found = sorted(p.name for p in (tmp_path / "artifacts").iterdir())
    assert result.returncode == 0 and not found, (
        f"libFuzzer found a failing input for {target!r}: {found}\n{result.stdout[-6000:]}"
    )
    done = re.search(r"Done (\d+) runs in (\d+) second", result.stdout)
    assert done, result.stdout[-3000:]
    runs, seconds = int(done[1]), int(done[2])
    assert runs >= min(RUNS, 1000), f"only {runs} runs in {seconds} s"
    print(f"{target}: {runs} runs in {seconds} s from {seeds} seeds")


def test_the_fuzzer_reports_a_crash(tmp_path: Path) -> None:
    """The harness is live: an input that breaks the property fails the run, with the input kept."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bad").write_bytes(b"canary")
    command = [sys.executable, "-m", "tests.reliability.fuzz_targets", "sqs", str(corpus), "-runs=1",
               f"-artifact_prefix={tmp_path}/"]  # fmt: skip
    result = _run(command, canary="canary", timeout=60)
    assert result.returncode != 0
    assert "canary input" in result.stdout
    assert list(tmp_path.glob("crash-*"))


@pytest.mark.parametrize("target", fuzz_targets.TARGETS)
def test_seeds_are_real_tasks(target: str) -> None:
    """The corpus starts from messages that decode: json ones into tasks.add, the others refused."""
    fuzz_targets.setup()
    tasks = 0
    for seed in fuzz_targets.seeds(target):
        fuzz_targets.TARGET_FUNCTIONS[target](seed)  # each seed passes the property
        envelope = _envelope(target, seed)
        try:
            message = decode(envelope, fuzz_targets.setup().accept_json)
        except ContentDisallowed:
            assert envelope.content_type != "application/json"
            continue
        except (DecodeError, InvalidTaskError):
            assert seed in fuzz_targets.REGRESSIONS
            continue
        assert message.task == "tasks.add"
        tasks += 1
    assert tasks >= 12  # celeriac's and Celery's, protocol 2 and 1


def _envelope(target: str, seed: bytes) -> object:
    from celeriac.brokers.base import Envelope

    if target == "redis":
        return fuzz_targets.setup().redis._delivery("celery", "t", seed).envelope
    if target == "sqs":
        from celeriac.brokers.sqs import _delivery

        return _delivery("celery", {"Body": seed.decode(), "ReceiptHandle": "r"}).envelope
    if target == "amqp":
        return _amqp_envelope(seed)
    headers, properties, content_type, body = seed.split(fuzz_targets.SEP, 3)
    return Envelope(body, json.loads(headers), json.loads(properties), content_type.decode(), "utf-8")


def _amqp_envelope(seed: bytes) -> object:
    import struct

    from aiormq.abc import DeliveredMessage
    from pamqp import commands, header

    from celeriac.brokers._amqp_wire import incoming_envelope

    (size,) = struct.unpack_from(">H", seed)
    props, body = seed[2 : 2 + size], seed[2 + size :]
    content = header.ContentHeader()
    content.unmarshal(struct.pack(">HHQ", commands.Basic.frame_id, 0, len(body)) + props)
    deliver = commands.Basic.Deliver("ctag", 1, False, "", "celery")
    return incoming_envelope(DeliveredMessage(deliver, content, body, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "seed", fuzz_targets.REGRESSIONS, ids=["retries-inf", "timelimit-huge", "nesting-inf", "v1-empty-id"]
)
def test_inputs_that_once_crashed_decode_are_refused(seed: bytes) -> None:
    envelope = _envelope("protocol", seed)
    with pytest.raises(InvalidTaskError):
        decode(envelope, fuzz_targets.setup().accept_json)  # type: ignore[arg-type]


# -- broker parsers: inputs that once raised -----------------------------------------------------------


def _redis_delivery(item: bytes) -> Delivery:
    return fuzz_targets.setup().redis._delivery("celery", "tag", item)


def test_redis_item_nested_990_deep_is_handed_on_as_malformed() -> None:
    """Redis' cjson reads the tag of JSON nested up to 1000 deep; Python's json gives up earlier."""
    item = b'{"body": "", "properties": {"delivery_tag": "t"}, "headers": {"x": ' + b"[" * 990 + b"]" * 990 + b"}}"
    assert fuzz_targets.json_depth(item) <= fuzz_targets.CJSON_MAX_DEPTH
    assert _redis_delivery(item).envelope.content_type == MALFORMED


def _sqs_delivery(body: str) -> Delivery:
    from celeriac.brokers.sqs import _delivery

    return _delivery("celery", {"Body": body, "ReceiptHandle": "r", "Attributes": {"ApproximateReceiveCount": "1"}})


SQS_BAD = {
    "delivery_info-string": '{"body": "", "properties": {"delivery_info": "x"}}',
    "delivery_info-int": '{"body": "", "properties": {"delivery_info": 5}}',
    "base64-body-null": '{"body": null, "properties": {"body_encoding": "base64"}}',
    "nested-5000": '{"body": "", "headers": ' + "[" * 5000 + "]" * 5000 + "}",
}


@pytest.mark.parametrize("body", list(SQS_BAD.values()), ids=list(SQS_BAD))
def test_sqs_malformed_bodies_are_handed_on_as_malformed(body: str) -> None:
    delivery = _sqs_delivery(body)
    assert delivery.tag == "r" and delivery.envelope.content_type == MALFORMED
