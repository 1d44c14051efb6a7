"""Command-line parsing: flags before or after the subcommand, and defaults."""

from __future__ import annotations

import pytest

from tray_agent.cli import build_parser, parse_args


@pytest.mark.parametrize(
    "argv",
    [
        ["--server", "https://a.example", "--demo", "listen"],
        ["listen", "--server", "https://a.example", "--demo"],
    ],
)
def test_flags_before_or_after_subcommand_are_kept(argv):
    args = parse_args(argv)
    assert args.command == "listen"
    assert args.server == "https://a.example"
    assert args.demo is True


def test_defaults_without_flags():
    args = parse_args(["listen"])
    assert args.server is None
    assert args.demo is False
    assert args.set == []


def test_set_is_repeatable_on_both_sides():
    args = parse_args(["--set", "a.b=1", "listen", "--set", "c.d=2"])
    assert args.set == ["a.b=1", "c.d=2"]


def test_demo_server_flags():
    args = build_parser().parse_args(["demo-server", "--dialect", "org", "--simulate", "6", "--seed", "3"])
    assert (args.command, args.dialect, args.simulate, args.seed, args.port) == (
        "demo-server",
        "org",
        6.0,
        3,
        0,
    )


def test_bare_link_means_open():
    args = parse_args(["tray-agent://open/1001%2F77"])
    assert args.command == "open"
    assert args.target == "tray-agent://open/1001%2F77"


def test_open_with_explicit_subcommand_is_kept():
    args = parse_args(["open", "tray-agent://open/c1"])
    assert args.command == "open"
    assert args.target == "tray-agent://open/c1"


def test_secret_helper_is_a_hidden_subcommand():
    assert parse_args(["secret-helper"]).command == "secret-helper"
    assert "secret-helper" not in build_parser().format_help()
