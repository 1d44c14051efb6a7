"""Sleep/resume detection from the wall and monotonic clocks."""

from __future__ import annotations

import pytest

from tray_agent.core.wakeup import ResumeDetector


def test_first_sample_is_never_a_jump():
    assert ResumeDetector().observe(1000.0, 5.0) is None


def test_clocks_moving_together_are_no_jump():
    detector = ResumeDetector(threshold=15)
    detector.observe(1000.0, 5.0)
    assert detector.observe(1010.0, 15.0) is None
    assert detector.observe(1020.5, 25.0) is None  # small drift (NTP slew) is ignored


def test_suspend_shows_as_wall_clock_gain():
    detector = ResumeDetector(threshold=15)
    detector.observe(1000.0, 5.0)
    # 10 s of monotonic time, but the machine slept an hour in between.
    assert detector.observe(1000.0 + 3610.0, 15.0) == pytest.approx(3600.0)
    assert detector.observe(4620.0, 25.0) is None  # and only once


def test_clock_set_backwards_is_a_jump_too():
    detector = ResumeDetector(threshold=15)
    detector.observe(1000.0, 5.0)
    assert detector.observe(900.0, 15.0) == pytest.approx(-110.0)
