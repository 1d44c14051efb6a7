"""Unit tests for sound playback: player choice, volume mapping, failures, and the shipped WAVs."""

from __future__ import annotations

import array
import logging
import sys
import wave
from collections.abc import Sequence
from importlib.resources import as_file
from pathlib import Path

import pytest

from tray_agent.core.effects import SoundName
from tray_agent.core.ports import Sound
from tray_agent.platform.sound import (
    NullSound,
    Player,
    PlayerKind,
    SystemSound,
    select_players,
    sound_path,
)


def which_of(*names: str):
    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in names else None

    return which


class FakeProcess:
    def __init__(self, argv: Sequence[str], returncode: int | None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.terminated = False

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True
        self.returncode = -15

    def error_text(self) -> str:
        return "Connection failure: Connection refused" if self.returncode not in (0, None, -15) else ""


class FakeSpawn:
    """Starts FakeProcesses that exit with ``returncode`` (None: still playing)."""

    def __init__(self, returncode: int | None = 0) -> None:
        self.returncode = returncode
        self.started: list[FakeProcess] = []

    def __call__(self, argv: Sequence[str]) -> FakeProcess:
        process = FakeProcess(argv, self.returncode)
        self.started.append(process)
        return process


@pytest.fixture
def spawn() -> FakeSpawn:
    return FakeSpawn()


def linux_sound(spawn: FakeSpawn, *players: str) -> SystemSound:
    return SystemSound(platform="linux", which=which_of(*players), spawn=spawn)


# --------------------------------------------------------------------------- selection


def test_select_players_linux_prefers_paplay_then_pw_play_then_aplay() -> None:
    found = select_players("linux", which_of("aplay", "pw-play", "paplay"))
    assert [p.kind for p in found] == [PlayerKind.PAPLAY, PlayerKind.PW_PLAY, PlayerKind.APLAY]
    assert found[0].executable == "/usr/bin/paplay"
    assert [p.kind for p in select_players("linux", which_of("aplay"))] == [PlayerKind.APLAY]


def test_select_players_macos_and_windows() -> None:
    assert select_players("darwin", which_of("afplay", "paplay")) == [
        Player(PlayerKind.AFPLAY, "/usr/bin/afplay")
    ]
    assert select_players("win32", which_of()) == [Player(PlayerKind.WINSOUND)]


def test_sound_without_player_is_unavailable_and_says_why(spawn: FakeSpawn) -> None:
    sound = linux_sound(spawn)
    assert not sound.available
    assert sound.problem == "No audio player found (paplay, pw-play, aplay)"
    sound.play(SoundName.ESCALATION, 1.0)
    assert spawn.started == []
    assert SystemSound(platform="darwin", which=which_of()).problem == "No audio player found (afplay)"


def test_system_sound_and_null_sound_implement_the_port() -> None:
    ports: list[Sound] = [SystemSound(platform="linux", which=which_of()), NullSound()]
    assert all(not port.available for port in ports)


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("kind", "volume", "expected"),
    [
        (PlayerKind.PAPLAY, 1.0, ["--volume=65536"]),
        (PlayerKind.PAPLAY, 0.5, ["--volume=32768"]),
        (PlayerKind.PAPLAY, 7.0, ["--volume=65536"]),
        (PlayerKind.PAPLAY, -1.0, ["--volume=0"]),
        (PlayerKind.PW_PLAY, 0.8, ["--volume=0.800"]),
        (PlayerKind.AFPLAY, 0.25, ["-v", "0.250"]),
        (PlayerKind.APLAY, 0.5, ["-q"]),
    ],
)
def test_player_command_maps_volume(kind: PlayerKind, volume: float, expected: list[str]) -> None:
    wav = Path("/x/message.wav")
    assert Player(kind, "/bin/p").command(wav, volume) == ["/bin/p", *expected, str(wav)]


def test_player_command_winsound_is_not_a_program() -> None:
    with pytest.raises(ValueError, match="winsound"):
        Player(PlayerKind.WINSOUND).command(Path("x.wav"), 1.0)


def test_play_spawns_player_with_shipped_wav(spawn: FakeSpawn) -> None:
    sound = linux_sound(spawn, "paplay", "aplay")
    assert sound.available
    assert sound.problem == ""
    sound.play(SoundName.MESSAGE, 0.5)
    [process] = spawn.started
    assert process.argv[:2] == ["/usr/bin/paplay", "--volume=32768"]
    played = Path(process.argv[-1])
    assert played.name == "message.wav"
    assert played.is_file()
    sound.close()


def test_play_at_zero_volume_plays_nothing(spawn: FakeSpawn) -> None:
    linux_sound(spawn, "paplay").play(SoundName.MESSAGE, 0.0)
    assert spawn.started == []


def test_aplay_gets_prescaled_copy(spawn: FakeSpawn) -> None:
    sound = linux_sound(spawn, "aplay")
    sound.play(SoundName.MESSAGE, 0.5)
    scaled = Path(spawn.started[0].argv[-1])
    assert spawn.started[0].argv[:2] == ["/usr/bin/aplay", "-q"]
    with as_file(sound_path(SoundName.MESSAGE)) as original:
        full = read_samples(original)
    half = read_samples(scaled)
    assert len(half) == len(full)
    assert max(map(abs, half)) == pytest.approx(max(map(abs, full)) / 2, abs=1)
    sound.close()
    assert not scaled.exists()


def test_aplay_at_full_volume_uses_the_original(spawn: FakeSpawn) -> None:
    linux_sound(spawn, "aplay").play(SoundName.MESSAGE, 1.0)
    assert Path(spawn.started[0].argv[-1]).name == "message.wav"


# --------------------------------------------------------------------------- one at a time


def test_escalation_cuts_a_playing_message() -> None:
    spawn = FakeSpawn(returncode=None)  # still playing
    sound = linux_sound(spawn, "paplay")
    sound.play(SoundName.MESSAGE)
    sound.play(SoundName.MESSAGE)  # same sound still playing: skipped
    sound.play(SoundName.ESCALATION)
    sound.play(SoundName.MESSAGE)  # never cuts an escalation
    assert [Path(p.argv[-1]).stem for p in spawn.started] == ["message", "escalation"]
    assert spawn.started[0].terminated
    assert sound.available  # being cut is not a failure
    assert sound.problem == ""


def test_next_sound_plays_once_previous_finished(spawn: FakeSpawn) -> None:
    sound = linux_sound(spawn, "paplay")
    sound.play(SoundName.ESCALATION)
    sound.play(SoundName.MESSAGE)
    assert len(spawn.started) == 2


# --------------------------------------------------------------------------- failures


def test_failing_player_falls_back_then_becomes_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    spawn = FakeSpawn(returncode=1)
    sound = SystemSound(platform="linux", which=which_of("paplay", "aplay"), spawn=spawn, failure_limit=2)
    with caplog.at_level(logging.INFO, logger="tray_agent.platform.sound"):
        for _ in range(6):
            sound.play(SoundName.MESSAGE)
        assert not sound.available
    players = [Path(p.argv[0]).name for p in spawn.started]
    assert players == ["paplay", "paplay", "aplay", "aplay"]
    assert sound.problem.startswith("no audio device (aplay: Connection failure")
    failed_lines = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed_lines) == 1
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_success_resets_failure_count() -> None:
    spawn = FakeSpawn(returncode=1)
    sound = SystemSound(platform="linux", which=which_of("paplay"), spawn=spawn, failure_limit=2)
    sound.play(SoundName.MESSAGE)  # will fail
    spawn.returncode = 0
    sound.play(SoundName.MESSAGE)  # reaps the failure (1 of 2); this one succeeds
    spawn.returncode = 1
    sound.play(SoundName.MESSAGE)  # reaps the success (back to 0); this one fails
    assert sound.available  # reaps the failure: 1 of 2 again, not 2 in a row
    assert sound.problem.startswith("no audio device")


def test_play_never_raises_when_spawn_explodes() -> None:
    calls: list[Sequence[str]] = []

    def explode(argv: Sequence[str]) -> FakeProcess:
        calls.append(argv)
        raise RuntimeError("boom")

    sound = SystemSound(platform="linux", which=which_of("paplay"), spawn=explode)
    sound.play(SoundName.ESCALATION, 1.0)
    assert calls  # the failing path really ran
    assert calls[0][0].endswith("paplay")


# --------------------------------------------------------------------------- Windows


class FakeWinsound:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.error: Exception | None = None

    def __call__(self, path: str, flags: int) -> None:
        if self.error is not None:
            raise self.error
        self.calls.append((path, flags))


def test_winsound_plays_async_from_file_and_tracks_duration() -> None:
    fake = FakeWinsound()
    clock = [100.0]
    sound = SystemSound(platform="win32", which=which_of(), winsound_play=fake, monotonic=lambda: clock[0])
    sound.play(SoundName.ESCALATION, 0.3)  # volume unsupported on Windows
    sound.play(SoundName.MESSAGE)  # escalation (0.6 s) still playing: skipped
    clock[0] += 1.0
    sound.play(SoundName.MESSAGE)
    assert [Path(path).stem for path, _ in fake.calls] == ["escalation", "message"]
    flags = fake.calls[0][1]
    assert flags == 0x20000 | 0x0001 | 0x0002  # SND_FILENAME | SND_ASYNC | SND_NODEFAULT


def test_winsound_errors_make_it_unavailable() -> None:
    fake = FakeWinsound()
    fake.error = RuntimeError("Failed to play sound")
    sound = SystemSound(platform="win32", which=which_of(), winsound_play=fake, failure_limit=2)
    sound.play(SoundName.MESSAGE)
    assert sound.available
    sound.play(SoundName.MESSAGE)
    assert not sound.available
    assert "Failed to play sound" in sound.problem


def test_default_winsound_off_windows_fails_softly() -> None:
    if sys.platform == "win32":
        pytest.skip("real winsound here")
    sound = SystemSound(platform="win32", which=which_of(), failure_limit=1)
    sound.play(SoundName.MESSAGE)
    assert not sound.available


# --------------------------------------------------------------------------- NullSound


def test_null_sound() -> None:
    null = NullSound()
    assert not null.available
    assert null.problem
    null.play(SoundName.ESCALATION, 1.0)
    null.close()
    assert NullSound("muted by policy").problem == "muted by policy"


# --------------------------------------------------------------------------- shipped WAVs


def read_samples(path: Path) -> list[int]:
    with wave.open(str(path), "rb") as wav:
        samples = array.array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tolist()


@pytest.mark.parametrize(("sound", "seconds"), [(SoundName.MESSAGE, 0.25), (SoundName.ESCALATION, 0.6)])
def test_shipped_wav_is_valid_small_16bit_mono(sound: SoundName, seconds: float) -> None:
    with as_file(sound_path(sound)) as path:
        assert path.stat().st_size < 100_000
        with wave.open(str(path), "rb") as wav:
            assert wav.getnchannels() == 1
            assert wav.getsampwidth() == 2
            assert wav.getframerate() == 44_100
            assert wav.getnframes() / 44_100 == pytest.approx(seconds, abs=0.05)
        samples = read_samples(path)
    # Gentle fade in and out: no click at either end, and never clipping.
    assert abs(samples[0]) < 50
    assert abs(samples[-1]) < 50
    assert 3000 < max(map(abs, samples)) < 30_000


def test_shipped_sounds_differ() -> None:
    with as_file(sound_path(SoundName.MESSAGE)) as message, as_file(sound_path(SoundName.ESCALATION)) as esc:
        assert message.read_bytes() != esc.read_bytes()
        assert len(read_samples(esc)) > len(read_samples(message))
