"""The command line a person meets: batches of files, explain at 80 columns, through a real gateway."""
# ruff: noqa: F811  (pytest injects the imported fixtures as same-named arguments)

from __future__ import annotations

import json
import re
import time
import wave
from pathlib import Path

import pytest

# The module-scoped in-process gateway with fake providers, and its per-test reset, from the CLI tests.
from test_cli import Gateway, _reset_fakes, gateway, run  # noqa: F401  (fixtures)

from gateway.cli import main as cli
from providers.testing import FAKE_TRANSCRIPT, sine_pcm16


def wav(path: Path, seconds: float, hz: float = 440.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(sine_pcm16(seconds, hz=hz).tobytes())
    return path


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    # Different lengths: different audio, so neither the cache nor single-flight folds them into one call.
    return [wav(tmp_path / f"clip{n}.wav", 0.5 + 0.25 * n) for n in range(4)]


# -- transcribe: a batch of files ----------------------------------------------------------------


def test_a_batch_prints_each_file_labelled_in_the_order_given(gateway: Gateway, clips, capsys):
    assert run(gateway, "transcribe", *map(str, clips)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    positions = [out.index(f"{clip.name}  ·  ") for clip in clips]
    assert positions == sorted(positions)
    assert out.count(FAKE_TRANSCRIPT) == len(clips)
    assert out.count("request_id") == len(clips)
    assert gateway.stt.calls == len(clips)


def test_a_batch_runs_a_bounded_number_of_files_at_once(gateway: Gateway, clips, capsys):
    gateway.stt.delay_s = 0.4
    started = time.monotonic()
    assert run(gateway, "transcribe", "--jobs", "2", *map(str, clips)) == 0
    elapsed = time.monotonic() - started
    # Four files, two at a time: two rounds, not one (all at once) and not four (one by one).
    assert 0.8 <= elapsed < 1.5, elapsed
    assert capsys.readouterr().out.count(FAKE_TRANSCRIPT) == 4


def test_one_failing_file_loses_none_of_the_others(gateway: Gateway, clips, tmp_path, capsys):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are minutes, not a recording")
    missing = tmp_path / "gone.wav"
    files = [clips[0], not_audio, missing, clips[1]]
    assert run(gateway, "transcribe", *map(str, files)) == 2
    out, err = capsys.readouterr()
    assert out.count(FAKE_TRANSCRIPT) == 2 and clips[0].name in out and clips[1].name in out
    assert f"error: {not_audio}: INVALID_ARGUMENT:" in err
    assert f"error: {missing}: input file not found: {missing}" in err
    assert "error: 2 of 4 files failed" in err
    assert gateway.stt.calls == 2


def test_a_batch_as_json_prints_one_object_per_file(gateway: Gateway, clips, tmp_path, capsys):
    missing = tmp_path / "gone.wav"
    assert run(gateway, "transcribe", "--json", str(clips[0]), str(missing), str(clips[1])) == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == [str(clips[0]), str(missing), str(clips[1])]
    assert lines[0]["response"]["text"] == FAKE_TRANSCRIPT
    assert lines[0]["response"]["duration_s"] == pytest.approx(0.5)
    assert lines[1]["error"] == f"input file not found: {missing}"
    assert lines[2]["response"]["duration_s"] == pytest.approx(0.75)


def test_a_batch_with_a_format_writes_one_document_per_file(gateway: Gateway, clips, tmp_path, capsys):
    out_dir = tmp_path / "subs"
    out_dir.mkdir()
    assert (
        run(gateway, "transcribe", "--words", "--format", "srt", "-o", str(out_dir), *map(str, clips[:2]))
        == 0
    )
    out, err = capsys.readouterr()
    assert out == ""
    for clip in clips[:2]:
        document = (out_dir / f"{clip.stem}.srt").read_text()
        assert document.startswith("1\n00:00:00,000 --> ")
        assert f"wrote {out_dir / f'{clip.stem}.srt'}" in err


def test_a_batch_with_a_format_and_no_directory_heads_each_document(gateway: Gateway, clips, capsys):
    assert run(gateway, "transcribe", "--format", "text", *map(str, clips[:2])) == 0
    out = capsys.readouterr().out
    assert out == "".join(f"==> {clip} <==\n{FAKE_TRANSCRIPT}\n" for clip in clips[:2])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "{tmp}"], "-o DIR writes one document per file: choose which with --format"),
        (["--format", "srt", "-o", "{tmp}/nowhere"], "it is not a directory"),
        (["--jobs", "0"], "0 is not between 1 and 32"),
    ],
)
def test_batch_command_line_mistakes_are_refused_before_any_call(
    gateway: Gateway, clips, tmp_path, capsys, extra, message
):
    argv = [part.replace("{tmp}", str(tmp_path)) for part in extra]
    assert run(gateway, "transcribe", *argv, *map(str, clips[:2])) == 2
    assert message in capsys.readouterr().err
    assert gateway.stt.calls == 0


def test_two_files_that_would_write_the_same_document_are_refused(gateway: Gateway, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = wav(tmp_path / "a" / "take.wav", 0.5), wav(tmp_path / "b" / "take.wav", 0.6)
    code = run(gateway, "transcribe", "--format", "vtt", "-o", str(tmp_path), str(first), str(second))
    assert code == 2
    assert f"would both be written to {tmp_path / 'take.vtt'}" in capsys.readouterr().err
    assert gateway.stt.calls == 0


# -- explain at 80 columns -------------------------------------------------------------------------


def _explain_at(width: int, gateway: Gateway, monkeypatch, capsys, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    assert cli.main(["explain", *argv, "--target", gateway.target]) == 0
    return capsys.readouterr().out


def test_explain_at_80_columns_keeps_every_column_and_whole_names(gateway: Gateway, monkeypatch, capsys):
    out = _explain_at(80, gateway, monkeypatch, capsys, "transcribe", "--seconds", "1800")
    lines = out.splitlines()
    # The summary line above the table is plain text: a terminal wraps it, a pipe keeps it whole.
    assert max(len(line) for line in lines[1:]) <= 80
    header = next(line for line in lines if "provider" in line)
    for column in ("#", "provider", "est. cost $", "est. ms", "why not"):
        assert column in header
    words = set(re.split(r"\s+", out))
    for name in ("fake-stt", "fake-tts", "fake-llm", "fake-stt-1"):
        assert name in words, f"{name} cut: {out}"
    # The reason wraps inside its column instead of being dropped.
    assert "does not" in out and "transcribe" in out


def test_explain_footnotes_the_learned_latency_marker(gateway: Gateway, clips, monkeypatch, capsys):
    # Nothing has synthesized yet: no marker, and the footnote says the numbers are declared ones.
    before = _explain_at(80, gateway, monkeypatch, capsys, "synthesize", "--chars", "100")
    assert not re.search(r"\d\*", before)
    assert max(len(line) for line in before.splitlines()[1:]) <= 80
    # The footnote wraps with the table: compare its words.
    assert "est. ms: as each provider declares (nothing learned from calls yet)" in " ".join(before.split())
    for clip in (wav(clips[0].with_name("one.wav"), 1.0), wav(clips[0].with_name("four.wav"), 4.0)):
        assert run(gateway, "transcribe", str(clip)) == 0
    assert run(gateway, "transcribe", *map(str, clips)) == 0
    capsys.readouterr()
    after = _explain_at(80, gateway, monkeypatch, capsys, "transcribe", "--seconds", "10")
    assert max(len(line) for line in after.splitlines()[1:]) <= 80
    assert re.search(r"\d\*", after), after
    flat = " ".join(after.split())
    assert "* est. ms learned from observed calls; unmarked: as the provider declares" in flat
    assert re.search(r"fake-stt: [\d,]+ ms \+ [\d.e-]+ s/audio s \((fitted to|\d+ calls of similar)", flat), (
        after
    )
    reply = json.loads(
        _explain_at(200, gateway, monkeypatch, capsys, "transcribe", "--seconds", "10", "--json")
    )
    stt = next(c for c in reply["candidates"] if c["provider"] == "fake-stt")
    assert stt["latency_learned"] is True
    assert stt["latency_source"] in ("fit", "level")
    assert stt["latency_observations"] >= 6
