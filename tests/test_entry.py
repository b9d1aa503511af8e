"""The entry module: what `engram` answers before Typer is imported (the top-level help,
--version, a cached recall's command line), and that it stays in step with the Typer app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from engram_cli import __version__
from engram_cli.cli import cached_recall, console
from engram_cli.cli.cached_recall import parse_recall_argv
from engram_cli.cli.main import app

_PROBE = """
import sys
from engram_cli.cli.entry import main
sys.argv = ["engram", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("TYPER=" + str("typer" in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def run_entry(*args: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.CompletedProcess, bool]:
    """`engram ARGS` through the entry module as a process: (result, whether it imported
    Typer)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("TYPER="), proc.stderr
    return proc, last == "TYPER=True"


def typer_group() -> Any:
    return typer.main.get_command(app)


def first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


# -- the top-level help and --version --------------------------------------------------------

def test_fast_help_lists_exactly_the_apps_commands_and_their_one_line_help() -> None:
    group = typer_group()
    assert [name for name, _ in console.COMMANDS] == list(group.commands)
    for name, line in console.COMMANDS:
        assert line == first_paragraph(group.commands[name].help), name


def test_fast_help_lists_exactly_the_apps_global_options() -> None:
    group = typer_group()
    ctx = group.context_class(group, help_option_names=["-h", "--help"])
    typer_options = []
    for param in group.get_params(ctx):
        names, _ = param.get_help_record(ctx)
        typer_options.append((names, param.help))
    fast = [(f"{names} {metavar}" if metavar else names, text)
            for names, metavar, text in console.GLOBAL_OPTIONS]
    assert fast == typer_options


def test_typer_prints_the_same_top_level_help(runner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert result.output == console.top_level_help()
    assert "130 interrupted" in result.output


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_top_level_help_needs_no_typer(args: list[str]) -> None:
    proc, imported_typer = run_entry(*args, env={"COLUMNS": "80"})
    assert proc.returncode == (0 if args else 2), proc.stderr  # no arguments: usage error
    assert not imported_typer
    assert proc.stdout == console.top_level_help()
    for name, _ in console.COMMANDS:
        assert f"\n  {name}  " in proc.stdout


def test_help_follows_the_terminal_width_as_typers_does(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    narrow = console.top_level_help()
    assert max(len(line) for line in narrow.splitlines()) <= 58
    monkeypatch.setenv("COLUMNS", "200")  # at most 80, as Typer's formatter
    assert max(len(line) for line in console.top_level_help().splitlines()) <= 78


def test_version_needs_no_typer() -> None:
    proc, imported_typer = run_entry("--version")
    assert (proc.returncode, proc.stdout) == (0, f"engram {__version__}\n")
    assert not imported_typer


def test_anything_else_goes_to_typer() -> None:
    proc, imported_typer = run_entry("--server", "h:1", "--help")
    assert proc.returncode == 0 and imported_typer
    assert proc.stdout == console.top_level_help()
    proc, imported_typer = run_entry("--bogus")
    assert proc.returncode == 2 and imported_typer
    assert "No such option: --bogus" in proc.stderr


# -- a cached recall's command line ----------------------------------------------------------

def recall_options() -> list[Any]:
    return [p for p in typer_group().commands["recall"].params if p.opts[0].startswith("-")]


def test_every_recall_option_is_read_by_the_fast_path_or_left_to_typer() -> None:
    fast = set(cached_recall.VALUE_OPTIONS) | set(cached_recall.FLAG_OPTIONS)
    typer_names = {name for p in recall_options() for name in (*p.opts, *p.secondary_opts)}
    typer_names |= {"-h", "--help"}
    assert fast | cached_recall.LEFT_TO_TYPER == typer_names, (
        "a recall option the fast path does not know: read it in cached_recall.py's tables, "
        "or list it in LEFT_TO_TYPER")
    assert not fast & cached_recall.LEFT_TO_TYPER


def test_the_fast_path_reads_each_option_as_typer_does() -> None:
    """Same key, kind, type, range, repeatability and default as the Typer command."""
    for p in recall_options():
        info = p.type_descriptor.parameter_info
        if p.is_flag:
            for names, value in ((p.opts, True), (p.secondary_opts, False)):
                for name in names:
                    if name in cached_recall.FLAG_OPTIONS:
                        assert cached_recall.FLAG_OPTIONS[name] == (p.name, value), name
        else:
            (name,) = p.opts
            if name not in cached_recall.VALUE_OPTIONS:
                continue
            key, kind, lowest, highest = cached_recall.VALUE_OPTIONS[name]
            annotation = p.type_descriptor.annotation
            assert key == p.name, name
            assert (name in cached_recall.REPEATABLE) == p.multiple, name
            assert kind == (typer.main.get_args(annotation)[0] if p.multiple else annotation)
            assert (lowest, highest) == (info.min, info.max), name
        if p.name in cached_recall.DEFAULTS:
            default = cached_recall.DEFAULTS[p.name]
            assert default == (p.default if not p.multiple else tuple(p.default or ())), p.name


def test_the_fast_path_reads_the_global_options_as_typer_does() -> None:
    group = typer_group()
    values = {p.opts[0] for p in group.params if not p.is_flag}
    flags = {p.opts[0] for p in group.params if p.is_flag}
    assert set(cached_recall.GLOBAL_VALUE_OPTIONS) == values
    # --version, help and completion answer instead of recalling, and --verbose/--quiet
    # set log levels a cache hit has no use for: Typer's, as any unknown option.
    assert set(cached_recall.GLOBAL_FLAG_OPTIONS) == flags - {
        "--version", "--verbose", "--quiet", "--install-completion", "--show-completion"}
    for name, key in cached_recall.GLOBAL_FLAG_OPTIONS.items():
        (param,) = [p for p in group.params if name in p.opts]
        assert (param.name, param.default) == (key, False)


def test_reads_a_plain_command_line() -> None:
    o = parse_recall_argv(["--server", "h:1", "--space=a1b", "--no-autostart", "--api-key",
                           "k", "recall", "--limit=5", "coffee beans", "--tag", "x",
                           "--tag=y", "--no-spread", "--max-hops", "2", "--threshold", "0.5",
                           "--format", "json", "--trace", "--space", "s2"])
    assert o is not None
    assert (o["server"], o["g_space"], o["api_key"], o["no_autostart"], o["cue"]) == (
        "h:1", "a1b", "k", True, "coffee beans")
    assert (o["limit"], o["tags"], o["spread"], o["max_hops"], o["threshold"], o["fmt"],
            o["trace"], o["space"]) == (5, ("x", "y"), False, 2, 0.5, "json", True, "s2")
    plain = parse_recall_argv(["recall", "tea"])
    assert plain == {"server": None, "g_space": None, "api_key": None, "no_autostart": False,
                     "tls": False, "ca_cert": None, "client_cert": None, "client_key": None,
                     "tls_server_name": None, **cached_recall.DEFAULTS, "cue": "tea"}
    tls = parse_recall_argv(["--server", "grpcs://h:1", "--tls", "--ca-cert", "ca.pem",
                             "recall", "tea"])
    assert tls is not None and (tls["tls"], tls["ca_cert"]) == (True, "ca.pem")
    assert parse_recall_argv(["recall", "--", "--not-an-option"])["cue"] == "--not-an-option"
    assert parse_recall_argv(["recall", "recall"])["cue"] == "recall"
    assert parse_recall_argv(["recall", "a", "--threshold", "1"])["threshold"] == 1.0
    assert parse_recall_argv(["recall", "a", "--limit", "10000"])["limit"] == 10_000


@pytest.mark.parametrize("argv", [
    [], ["recall"], ["recall", "-"], ["recall", "a", "b"], ["recall", " "], ["recall", ""],
    ["recall", "a", "--no-cache"], ["recall", "a", "--refresh"], ["recall", "a", "-h"],
    ["recall", "a", "--help"], ["recall", "a", "--lim", "3"], ["recall", "a", "--limit", "0"],
    ["recall", "a", "--limit", "10001"], ["recall", "a", "--limit", "1.5"],
    ["recall", "a", "--limit", "+5"], ["recall", "a", "--limit", " 5"],
    ["recall", "a", "--limit", "٣"], ["recall", "a", "--limit"], ["recall", "a", "--limit="],
    ["recall", "a", "--max-hops", "11"], ["recall", "a", "--threshold", "nan"],
    ["recall", "a", "--threshold", "1e-1"], ["recall", "a", "--threshold", ".5"],
    ["recall", "a", "--threshold", "1.5"], ["recall", "a", "--threshold", "-0.1"],
    ["recall", "a", "--format", "yaml"], ["recall", "a", "--trace=1"],
    ["recall", "a", "--tag", "-x"], ["recall", "a", "--server", "h:1"],
    ["--version", "recall", "a"], ["import", "recall"], ["--server", "recall", "stats"],
    ["--no-autostart=1", "recall", "a"], ["--server", "-x", "recall", "a"],
])
def test_leaves_anything_doubtful_to_typer(argv: list[str]) -> None:
    assert parse_recall_argv(argv) is None


# -- the user dirs, without platformdirs ----------------------------------------------------

@pytest.mark.parametrize(("xdg", "home"), [
    (None, "/home/someone"),  # the usual case: ~/.cache/engram and the like
    ("/srv/xdg", "/home/someone"),
    ("/srv/xdg/", "/home/someone/"),
    ("", "/home/someone"),  # set but empty: as unset
    ("relative/xdg", "/home/someone"),  # platformdirs' call (versions differ)
    (None, "relative-home"),  # platformdirs' call too
])
@pytest.mark.parametrize("kind", ["data", "config", "cache"])
def test_user_dirs_are_platformdirs_own(monkeypatch, kind: str, xdg: str | None,
                                        home: str) -> None:
    import platformdirs

    from engram_cli.config import user_dir

    variable = f"XDG_{kind.upper()}_HOME"
    if xdg is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, xdg)
    monkeypatch.setenv("HOME", home)
    assert user_dir(kind) == getattr(platformdirs, f"user_{kind}_dir")("engram")


def test_the_engram_dir_variables_win_over_the_user_dirs(monkeypatch, tmp_path) -> None:
    from engram_cli import config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == Path(os.environ["ENGRAM_CACHE_DIR"])  # set by conftest
    monkeypatch.delenv("ENGRAM_CACHE_DIR")
    assert config.cache_dir() == tmp_path / "xdg" / "engram"
    assert config.client_config_file() == str(config.client_config_path())
