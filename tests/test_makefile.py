"""The Makefile's promises on a fresh machine: `make run` installs the runtime only, `make test`
adds the test tools and brings Debian's chromium or stops at once saying what to install."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
FAKE_APT_GET = """#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = install ]; then printf '#!/bin/sh\\n' > "{chromium}"; chmod +x "{chromium}"; fi
"""


def make(*args, env=None, as_nobody=False, directory=BASE_DIR):
    command = ["make", "--no-print-directory", "-C", str(directory), *args]
    if as_nobody and os.getuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fake_apt_get(tmp_path):
    """An `apt-get` first on PATH that records its calls and, asked to install, creates the
    chromium executable (so the real package manager is never touched)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    chromium, log = tmp_path / "chromium", tmp_path / "apt-get.log"
    script = bin_dir / "apt-get"
    script.write_text(FAKE_APT_GET.format(log=log, chromium=chromium))
    script.chmod(0o755)
    tmp_path.chmod(0o777)  # `nobody` may write the log
    log.touch(mode=0o666)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "chromium": chromium, "log": log}


def test_make_test_without_chromium_and_no_way_to_install_it_stops_at_once_with_one_line(fake_apt_get):
    # A copy of the Makefile where `nobody` may read it: the checkout (and pytest's tmp_path)
    # may sit in a directory only its owner can enter (a clone into `mktemp -d`).
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        Path(scratch).chmod(0o755)
        done = make_test_as_nobody(Path(scratch) / "checkout", fake_apt_get)

    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Debian's chromium" in lines[0] and "apt-get install chromium" in lines[0]
    assert fake_apt_get["log"].read_text() == ""  # not root: nothing was attempted


def make_test_as_nobody(copy, fake_apt_get):
    (copy / "clients" / "python").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "clients/python/pyproject.toml"):
        (copy / name).write_bytes((BASE_DIR / name).read_bytes())
    for path in (copy, copy / "clients", copy / "clients" / "python"):
        path.chmod(0o755)
    return make("test", f"CHROMIUM={fake_apt_get['chromium']}", env={"PATH": fake_apt_get["PATH"]}, as_nobody=True, directory=copy)


@pytest.mark.skipif(os.getuid() != 0, reason="the install branch runs as root only")
def test_make_test_as_root_installs_chromium_with_apt_get(fake_apt_get):
    done = make("chromium", f"CHROMIUM={fake_apt_get['chromium']}", env={"PATH": fake_apt_get["PATH"]})

    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing Debian's chromium" in done.stdout
    assert fake_apt_get["log"].read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


def test_make_run_installs_the_runtime_and_make_test_adds_the_test_extra(tmp_path):
    venv = tmp_path / "venv"
    runtime = make("-n", "install", f"VENV={venv}").stdout
    testing = make("-n", "install-test", f"VENV={venv}").stdout

    assert "pip install -q -e .\n" in runtime and "[test]" not in runtime
    assert "pip install -q -e .\n" in testing and 'pip install -q -e ".[test]"' in testing
    assert 'pip install -q -e ".[test]"' not in make("-n", "run", f"VENV={venv}").stdout


def test_the_stamps_skip_an_installed_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for stamp in (".installed-runtime", ".installed-test"):
        (venv / stamp).touch()

    assert "pip install" not in make("-n", "install-test", f"VENV={venv}").stdout
