"""Alert-sound playback per OS without QtMultimedia (paplay / pw-play / aplay, afplay, winsound).

:class:`SystemSound` implements :class:`tray_agent.core.ports.Sound`:

* Linux and other Unixes: ``paplay`` (PulseAudio, PipeWire's pulse server; honours
  ``PULSE_SERVER``), then ``pw-play`` (PipeWire), then ``aplay`` (ALSA; it has no volume option,
  so the samples are pre-scaled once per volume step into a temporary WAV).
* macOS: ``afplay -v``.
* Windows: ``winsound.PlaySound(SND_FILENAME | SND_ASYNC)``. Volume is not supported there: the
  system's per-app mixer applies.

``play`` never blocks and never raises. Players run as child processes: under a running asyncio
loop (qasync in the app) through :func:`asyncio.create_subprocess_exec`, whose child watcher
reaps them; otherwise through :class:`subprocess.Popen`, reaped on the next call. At most one
sound plays at a time: an escalation cuts a message sound; a message never cuts an escalation
and is skipped while one plays, and a sound is skipped while the same sound still plays.

A player exiting non-zero (no server, no device) is logged once at info; after
``failure_limit`` failures in a row the next player of the chain is tried, and when none is
left the sound is unavailable and :attr:`SystemSound.problem` says why (shown by diagnostics;
never a dialog).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import enum
import importlib.resources
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Protocol

from tray_agent.core.effects import SoundName

logger = logging.getLogger(__name__)

__all__ = [
    "LINUX_PLAYERS",
    "NullSound",
    "Player",
    "PlayerKind",
    "ProcessHandle",
    "SystemSound",
    "select_players",
    "sound_path",
]

_PRIORITY = {SoundName.MESSAGE: 1, SoundName.ESCALATION: 2}
_VOLUME_STEP = 20  # aplay: pre-scaled copies in 5 % steps
_SND_FILENAME = 0x20000  # winsound constants, so the flags are testable off Windows
_SND_ASYNC = 0x0001
_SND_NODEFAULT = 0x0002


class PlayerKind(enum.StrEnum):
    """The playback programs (or APIs) we know how to drive."""

    PAPLAY = "paplay"
    PW_PLAY = "pw-play"
    APLAY = "aplay"
    AFPLAY = "afplay"
    WINSOUND = "winsound"


LINUX_PLAYERS = (PlayerKind.PAPLAY, PlayerKind.PW_PLAY, PlayerKind.APLAY)
"""Preference order on Linux and other Unixes."""


@dataclass(frozen=True, slots=True)
class Player:
    """A playback program found on this machine.

    Attributes:
        kind: which program.
        executable: its resolved path ("" for winsound).
    """

    kind: PlayerKind
    executable: str = ""

    def command(self, wav: Path, volume: float) -> list[str]:
        """The argument vector that plays ``wav`` at ``volume`` (0..1).

        Raises:
            ValueError: for winsound, which is not a program.
        """
        volume = min(1.0, max(0.0, volume))
        if self.kind is PlayerKind.PAPLAY:
            return [self.executable, f"--volume={round(volume * 65536)}", str(wav)]
        if self.kind is PlayerKind.PW_PLAY:
            return [self.executable, f"--volume={volume:.3f}", str(wav)]
        if self.kind is PlayerKind.AFPLAY:
            return [self.executable, "-v", f"{volume:.3f}", str(wav)]
        if self.kind is PlayerKind.APLAY:
            return [self.executable, "-q", str(wav)]
        raise ValueError("winsound is not a program")


def select_players(platform: str, which: Callable[[str], str | None]) -> list[Player]:
    """The usable players for ``platform`` (a ``sys.platform`` value), best first.

    Args:
        platform: ``sys.platform`` ("linux", "darwin", "win32" ...).
        which: ``shutil.which``-like lookup (injected in tests).
    """
    if platform == "win32":
        return [Player(PlayerKind.WINSOUND)]
    kinds = (PlayerKind.AFPLAY,) if platform == "darwin" else LINUX_PLAYERS
    players: list[Player] = []
    for kind in kinds:
        found = which(kind.value)
        if found:
            players.append(Player(kind, found))
    return players


def sound_path(sound: SoundName) -> Traversable:
    """Where the shipped WAV of ``sound`` lives (inside the package ``tray_agent.resources``)."""
    return importlib.resources.files("tray_agent.resources") / "sounds" / f"{sound.value}.wav"


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


def _write_scaled(source: Path, target: Path, volume: float) -> None:
    """Copy a 16-bit WAV with its samples scaled by ``volume`` (for players without volume)."""
    with wave.open(str(source), "rb") as wav:
        params = wav.getparams()
        frames = wav.readframes(wav.getnframes())
    if params.sampwidth != 2:
        raise ValueError("only 16-bit WAV can be scaled")
    samples = array.array("h", frames)
    if sys.byteorder == "big":
        samples.byteswap()
    scaled = array.array("h", (int(s * volume) for s in samples))
    if sys.byteorder == "big":
        scaled.byteswap()
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(scaled.tobytes())


# ---------------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------------


class ProcessHandle(Protocol):
    """A started player process, as :class:`SystemSound` tracks it."""

    def poll(self) -> int | None:
        """The exit status once finished (reaping it), else None. Never blocks."""
        ...

    def terminate(self) -> None:
        """Stop playing now (the sound is being cut). Never raises."""
        ...

    def error_text(self) -> str:
        """What the player said on failure ("" if unknown)."""
        ...


SpawnFn = Callable[[Sequence[str]], ProcessHandle]


class _PopenProcess:
    """A player started with :class:`subprocess.Popen` (no event loop running)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._error = ""
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            # stderr is not captured: reading it could block; the exit status is enough here.
            self._proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as exc:
            self._error = str(exc)

    def poll(self) -> int | None:
        if self._proc is None:
            return 127
        return self._proc.poll()

    def terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.terminate()

    def error_text(self) -> str:
        return self._error


class _AsyncProcess:
    """A player started with :func:`asyncio.create_subprocess_exec` in a task of the running loop.

    The task awaits the child (so the loop's child watcher reaps it) and keeps its stderr for the
    diagnostics line. Cancelling the task (loop shutdown) terminates the child.
    """

    def __init__(self, argv: Sequence[str], loop: asyncio.AbstractEventLoop) -> None:
        self._argv = list(argv)
        self._proc: asyncio.subprocess.Process | None = None
        self._returncode: int | None = None
        self._error = ""
        self._cut = False
        self._task = loop.create_task(self._run())  # referenced here: never collected early

    async def _run(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except (OSError, NotImplementedError, RuntimeError) as exc:
            self._error = str(exc)
            self._returncode = 127
            return
        self._proc = proc
        if self._cut:
            self.terminate()
        try:
            _, err = await proc.communicate()
        except asyncio.CancelledError:
            self.terminate()
            raise
        self._error = err.decode("utf-8", "replace").strip()[:300]
        self._returncode = proc.returncode

    def poll(self) -> int | None:
        return self._returncode

    def terminate(self) -> None:
        self._cut = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                self._proc.terminate()

    def error_text(self) -> str:
        return self._error


def _default_spawn(argv: Sequence[str]) -> ProcessHandle:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _PopenProcess(argv)
    return _AsyncProcess(argv, loop)


def _default_winsound(path: str, flags: int) -> None:
    if sys.platform != "win32":
        raise RuntimeError("winsound exists on Windows only")
    import winsound

    winsound.PlaySound(path, flags)


# ---------------------------------------------------------------------------------------------
# The port implementations
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Playing:
    sound: SoundName
    handle: ProcessHandle | None  # None for winsound (tracked by expected end time)
    ends_at: float = 0.0
    cut: bool = False


class SystemSound:
    """Plays the shipped WAVs with the best player available here (see the module docstring).

    Args:
        platform: ``sys.platform`` value (injected in tests).
        which: executable lookup, ``shutil.which`` by default.
        spawn: starts a player process; by default asyncio under a running loop, else Popen.
        winsound_play: ``winsound.PlaySound`` stand-in (Windows).
        monotonic: clock for winsound's "still playing" estimate.
        failure_limit: failures in a row before the next player (or none) is used.
    """

    def __init__(
        self,
        *,
        platform: str = sys.platform,
        which: Callable[[str], str | None] = shutil.which,
        spawn: SpawnFn | None = None,
        winsound_play: Callable[[str, int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        failure_limit: int = 3,
    ) -> None:
        self._platform = platform
        self._players = select_players(platform, which)
        self._spawn = spawn or _default_spawn
        self._winsound_play = winsound_play or _default_winsound
        self._monotonic = monotonic
        self._failure_limit = max(1, failure_limit)
        self._failures = 0
        self._logged_failure = False
        self._problem = "" if self._players else self._no_player_text()
        self._playing: _Playing | None = None
        self._files = contextlib.ExitStack()
        self._paths: dict[SoundName, Path] = {}
        self._scaled: dict[tuple[SoundName, int], Path] = {}
        self._tempdir: Path | None = None

    # -------------------------------------------------------------- Sound port

    @property
    def available(self) -> bool:
        """False when nothing can play here (no player, or every player kept failing)."""
        self._reap()
        return bool(self._players)

    @property
    def problem(self) -> str:
        """Why sound is unavailable or failing, for diagnostics ("" when fine)."""
        self._reap()
        return self._problem

    @property
    def player(self) -> Player | None:
        """The player in use, or None."""
        return self._players[0] if self._players else None

    def play(self, sound: SoundName, volume: float = 1.0) -> None:
        """Start playing ``sound`` at ``volume`` (0..1) without blocking. Never raises."""
        try:
            self._play(sound, volume)
        except Exception:  # the port promises never to raise into the event loop
            logger.exception("Playing sound %s failed", sound)

    def close(self) -> None:
        """Stop any sound and delete temporary files (call at shutdown). Never raises."""
        if self._playing is not None and self._playing.handle is not None:
            self._playing.handle.terminate()
        self._playing = None
        with contextlib.suppress(OSError):
            self._files.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        self._scaled.clear()
        self._paths.clear()

    # -------------------------------------------------------------- internals

    def _no_player_text(self) -> str:
        if self._platform == "darwin":
            return "No audio player found (afplay)"
        return "No audio player found ({})".format(", ".join(k.value for k in LINUX_PLAYERS))

    def _play(self, sound: SoundName, volume: float) -> None:
        self._reap()
        if not self._players:
            return
        volume = min(1.0, max(0.0, float(volume)))
        if volume <= 0.0:
            return
        current = self._playing
        if current is not None:
            if _PRIORITY[sound] <= _PRIORITY[current.sound]:
                return  # the same or a more urgent sound is still playing
            current.cut = True
            if current.handle is not None:
                current.handle.terminate()
            self._playing = None
        path = self._path(sound)
        if path is None:
            return
        player = self._players[0]
        if player.kind is PlayerKind.WINSOUND:
            self._play_winsound(sound, path)
            return
        if player.kind is PlayerKind.APLAY and volume < 1.0:
            path = self._scaled_path(sound, path, volume)
        handle = self._spawn(player.command(path, volume))
        self._playing = _Playing(sound, handle)

    def _play_winsound(self, sound: SoundName, path: Path) -> None:
        # Volume is not supported by winsound; a new PlaySound stops the previous one.
        try:
            self._winsound_play(str(path), _SND_FILENAME | _SND_ASYNC | _SND_NODEFAULT)
        except (RuntimeError, OSError) as exc:
            self._failed(str(exc))
            return
        self._succeeded()
        self._playing = _Playing(sound, None, self._monotonic() + self._seconds(path))

    def _seconds(self, path: Path) -> float:
        try:
            return _wav_seconds(path)
        except (OSError, wave.Error, EOFError):
            return 0.0

    def _reap(self) -> None:
        playing = self._playing
        if playing is None:
            return
        if playing.handle is None:
            if self._monotonic() >= playing.ends_at:
                self._playing = None
            return
        code = playing.handle.poll()
        if code is None:
            return
        self._playing = None
        if playing.cut:
            return  # we stopped it ourselves
        if code == 0:
            self._succeeded()
        else:
            self._failed(playing.handle.error_text() or f"exit status {code}")

    def _succeeded(self) -> None:
        self._failures = 0
        self._problem = ""

    def _failed(self, detail: str) -> None:
        player = self._players[0]
        self._failures += 1
        self._problem = f"no audio device ({player.kind.value}: {detail})"
        if not self._logged_failure:
            self._logged_failure = True
            logger.info("Sound player %s failed: %s", player.kind.value, detail)
        if self._failures >= self._failure_limit:
            self._players.pop(0)
            self._failures = 0
            if self._players:
                logger.info("Sound: switching to %s", self._players[0].kind.value)
            else:
                logger.info("Sound disabled: %s", self._problem)

    def _path(self, sound: SoundName) -> Path | None:
        known = self._paths.get(sound)
        if known is not None:
            return known
        try:
            path = self._files.enter_context(importlib.resources.as_file(sound_path(sound)))
        except (OSError, ModuleNotFoundError) as exc:
            self._missing(sound, str(exc))
            return None
        if not path.is_file():
            self._missing(sound, str(path))
            return None
        self._paths[sound] = path
        return path

    def _missing(self, sound: SoundName, detail: str) -> None:
        self._problem = f"sound file missing: {sound.value}.wav"
        logger.warning("Sound file %s.wav is missing (%s)", sound.value, detail)

    def _scaled_path(self, sound: SoundName, path: Path, volume: float) -> Path:
        step = max(1, round(volume * _VOLUME_STEP))
        if step >= _VOLUME_STEP:
            return path
        known = self._scaled.get((sound, step))
        if known is not None:
            return known
        try:
            if self._tempdir is None:
                self._tempdir = Path(tempfile.mkdtemp(prefix="tray-agent-sounds-"))
            target = self._tempdir / f"{sound.value}-{step}.wav"
            # Small (<100 KB) and done once per sound and volume step.
            _write_scaled(path, target, step / _VOLUME_STEP)
        except (OSError, ValueError, wave.Error, EOFError) as exc:
            logger.info("Could not scale %s for aplay (%s); playing at full volume", sound.value, exc)
            return path
        self._scaled[(sound, step)] = target
        return target


class NullSound:
    """Plays nothing (sound disabled, or no backend on this system)."""

    def __init__(self, problem: str = "Sound playback is disabled") -> None:
        self._problem = problem

    @property
    def available(self) -> bool:
        """Always False."""
        return False

    @property
    def problem(self) -> str:
        """Why there is no sound."""
        return self._problem

    def play(self, sound: SoundName, volume: float = 1.0) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""
