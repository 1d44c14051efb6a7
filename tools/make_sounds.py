"""Generate the alert sounds in resources/sounds (deterministic; stdlib wave + math only).

    python tools/make_sounds.py [OUTPUT_DIR]

message.wav: a short, soft two-tone chime (~0.25 s). escalation.wav: three rising, brighter
tones (~0.6 s), clearly more urgent. Both 16-bit mono 44.1 kHz with gentle attack and release
envelopes (no clicks), peak well below full scale. Running the script twice gives byte-identical
files, so regenerating never shows up as a change.
"""

from __future__ import annotations

import math
import struct
import sys
import wave
from pathlib import Path

RATE = 44_100
ATTACK = 0.006  # s: rise time of every note (no click at the start)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "sounds"


def note(
    freq: float, length: float, *, amp: float, decay: float, harmonics: tuple[float, ...] = ()
) -> list[float]:
    """One note: a sine (plus weaker harmonics) with a short attack and an exponential decay.

    The last 25 % of the note also fades linearly to exactly zero so that it ends silently.
    """
    count = int(RATE * length)
    attack = int(RATE * ATTACK)
    tail_start = int(count * 0.75)
    out: list[float] = []
    for i in range(count):
        t = i / RATE
        value = math.sin(2 * math.pi * freq * t)
        for n, weight in enumerate(harmonics, start=2):
            value += weight * math.sin(2 * math.pi * freq * n * t)
        envelope = math.exp(-t / decay)
        if i < attack:
            envelope *= 0.5 - 0.5 * math.cos(math.pi * i / attack)  # raised-cosine attack
        if i >= tail_start:
            envelope *= (count - i) / (count - tail_start)
        out.append(amp * envelope * value / (1 + sum(harmonics)))
    return out


def mix(length: float, parts: list[tuple[float, list[float]]]) -> list[float]:
    """Place notes at offsets (s) into one track of ``length`` seconds."""
    track = [0.0] * int(RATE * length)
    for offset, samples in parts:
        start = int(RATE * offset)
        for i, value in enumerate(samples):
            if start + i < len(track):
                track[start + i] += value
    return track


def message() -> list[float]:
    """Soft two-tone chime: A5 then E6, pure sines, quiet."""
    return mix(
        0.25,
        [
            (0.0, note(880.0, 0.14, amp=0.30, decay=0.07)),
            (0.09, note(1318.5, 0.16, amp=0.26, decay=0.06)),
        ],
    )


def escalation() -> list[float]:
    """Three rising, brighter tones (G5, B5, E6) with harmonics: attention, not alarm."""
    return mix(
        0.6,
        [
            (0.0, note(784.0, 0.17, amp=0.45, decay=0.12, harmonics=(0.35, 0.15))),
            (0.18, note(987.8, 0.17, amp=0.45, decay=0.12, harmonics=(0.35, 0.15))),
            (0.36, note(1318.5, 0.24, amp=0.50, decay=0.14, harmonics=(0.35, 0.15))),
        ],
    )


def write_wav(path: Path, samples: list[float]) -> None:
    """Write 16-bit mono PCM at RATE (little-endian, as RIFF requires)."""
    clipped = (max(-1.0, min(1.0, s)) for s in samples)
    frames = b"".join(struct.pack("<h", round(s * 32767)) for s in clipped)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(frames)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, samples in (("message", message()), ("escalation", escalation())):
        target = out_dir / f"{name}.wav"
        write_wav(target, samples)
        print(f"{target} {target.stat().st_size} bytes {len(samples) / RATE:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
