"""The profile section's reading of py-spy's collapsed stacks, and its flame graph."""

from __future__ import annotations

import struct
from pathlib import Path

from bench import plots
from bench.profile import below_entry, flame_file, summarize

PROCESS = 'process 10:"python -m celeriac"'
RUN = "run (celeriac/worker/consumer.py:10)"
EXECUTE = "execute (celeriac/worker/execute.py:7)"
COLLAPSED = f"""\
{PROCESS};{RUN};get (celeriac/brokers/redis.py:5) 30
{PROCESS};{RUN};{EXECUTE} 60
{PROCESS};{RUN};{EXECUTE};pack (/v/site-packages/redis/connection.py:126) 10
"""


def test_summarize_counts_stacks_frames_and_packages() -> None:
    p = summarize("worker -P solo", COLLAPSED)
    assert p.samples == 100
    inclusive = dict(p.inclusive)
    assert inclusive["celeriac/worker/consumer.py:run"] == 100
    assert inclusive["celeriac/worker/execute.py:execute"] == 70
    assert dict(p.own) == {
        "celeriac/worker/execute.py:execute": 60,
        "celeriac/brokers/redis.py:get": 30,
        "redis/connection.py:pack": 10,
    }
    assert dict(p.packages) == {"celeriac": 90, "redis": 10}
    # the process line (py-spy --subprocesses) is not a frame
    assert sorted(p.stacks) == [
        (["celeriac/worker/consumer.py:run", "celeriac/brokers/redis.py:get"], 30),
        (["celeriac/worker/consumer.py:run", "celeriac/worker/execute.py:execute"], 60),
        (["celeriac/worker/consumer.py:run", "celeriac/worker/execute.py:execute", "redis/connection.py:pack"], 10),
    ]


def test_flame_graph_is_a_png_as_tall_as_the_deepest_stack(tmp_path: Path) -> None:
    p = summarize("worker -P solo", COLLAPSED)
    assert flame_file(p) == "bench-flame-solo.png"
    shallow = plots.flame_graph(tmp_path / "shallow.png", [(["a"], 5)], "one frame")
    deep = plots.flame_graph(tmp_path / "deep.png", p.stacks, "three frames")
    sizes = []
    for path in (shallow, deep):
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.append(struct.unpack(">II", head[16:24]))  # IHDR: width, height
    assert sizes[0][0] == sizes[1][0] and sizes[1][1] > sizes[0][1]


def test_flame_graph_stacks_start_below_the_command_line() -> None:
    frames = ["<frozen runpy>:_run_code", "celeriac/__main__.py:<module>", "click/core.py:Context.invoke",
              "celeriac/cli/worker.py:worker", "celeriac/worker/main.py:WorkController.start",
              "celeriac/worker/consumer.py:Consumer.run", "celeriac/worker/execute.py:execute"]  # fmt: skip
    assert below_entry(frames) == frames[-2:]
    assert below_entry(frames[-2:]) == frames[-2:]  # a thread of the worker's own (the result writer)
