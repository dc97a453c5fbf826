"""Every code block in docs/ runs as shown (see tests/docs/snippets.py for the rules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs.snippets import Page, SnippetError, page_env, pages, parse, runnable

PAGES = [p for p in pages() if any(runnable(b) for b in parse(p))]


@pytest.fixture
def page_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    workdir = tmp_path / "project"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    for name in ("CELERIAC_BROKER_URL", "CELERIAC_RESULT_BACKEND", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    yield workdir


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT / "docs")) for p in PAGES])
def test_page(path: Path, page_dir: Path, request: pytest.FixtureRequest) -> None:
    blocks = [b for b in parse(path) if runnable(b)]
    page = Page(path, page_dir, page_env(page_dir))
    kinds = {b.arg.split()[0] for b in blocks if b.marker == "variant"}
    if "redis" in kinds or any(b.marker == "variant" and "redis://" in b.code for b in blocks):
        page.redis_url, page.redis_prefix = request.getfixturevalue("docs_redis")
        page.variant_urls["redis"] = page.redis_url
    if "amqp" in kinds:
        page.variant_urls["amqp"] = f"amqp://guest:guest@127.0.0.1:5672/{request.getfixturevalue('vhost')}"
    try:
        for block in blocks:
            page.run(block)
    finally:
        page.close()


def test_a_broken_snippet_is_reported_with_its_line(tmp_path: Path, page_dir: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text("# Page\n\n```python\nx = 1\n```\n\nText.\n\n```python\nassert x == 2\n```\n")
    page = Page(doc, page_dir, page_env(page_dir))
    blocks = parse(doc)
    page.run(blocks[0])
    with pytest.raises(SnippetError, match=r"page\.md:9: the python block failed"):
        page.run(blocks[1])
    page.close()


def test_console_output_and_markers(tmp_path: Path, page_dir: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text(
        "<!-- snippet: file hello.py -->\n```python\nprint('hello')\nprint('world')\n```\n\n"
        "```console\n$ python hello.py\nworld\n```\n\n"
        "<!-- snippet: skip needs a server -->\n```console\n$ false\n```\n\n"
        "```console\n$ python hello.py\nbye\n```\n"
    )
    page = Page(doc, page_dir, page_env(page_dir))
    blocks = parse(doc)
    assert [b.marker for b in blocks] == ["file", "", "skip", ""]
    for block in blocks[:3]:
        page.run(block)
    with pytest.raises(SnippetError, match=r"page\.md:17: `python hello.py` did not print 'bye'"):
        page.run(blocks[3])
    page.close()
