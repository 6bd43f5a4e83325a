"""The release artifacts: built, checked, licensed, and working when installed somewhere clean.

``python -m build`` makes the sdist and, from it, the wheel (``--no-isolation``: the test extra
installs the build backend, so no network is needed for the build itself); ``twine check`` reads
their metadata as PyPI would; both must carry LICENSE. The wheel is then installed into a new
virtual environment that cannot see the source tree, and the emulator and ``check`` are run from
that environment's own console script.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest

from marketplace_entitlement._version import __version__
from tests.loopback import get

ROOT = Path(__file__).resolve().parent.parent
LICENSE_TEXT = (ROOT / "LICENSE").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built once for this module."""
    outdir = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = outdir.glob("*.whl")
    (sdist,) = outdir.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_build_makes_a_wheel_and_an_sdist_of_this_version(artifacts: dict[str, Path]) -> None:
    """The artifacts are named for the package's version; the wheel is pure Python."""
    assert artifacts["wheel"].name == f"marketplace_entitlement-{__version__}-py3-none-any.whl"
    assert artifacts["sdist"].name == f"marketplace_entitlement-{__version__}.tar.gz"


def test_twine_check_passes(artifacts: dict[str, Path]) -> None:
    """``twine check`` accepts both artifacts (metadata and README rendering)."""
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, artifacts.values())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_both_artifacts_carry_the_license(artifacts: dict[str, Path]) -> None:
    """LICENSE, the Apache-2.0 text, is in the wheel's dist-info and at the sdist's top."""
    with zipfile.ZipFile(artifacts["wheel"]) as wheel:
        names = wheel.namelist()
        (license_name,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(license_name).decode() == LICENSE_TEXT
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = wheel.read(metadata_name).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    with tarfile.open(artifacts["sdist"]) as sdist:
        member = sdist.extractfile(f"marketplace_entitlement-{__version__}/LICENSE")
        assert member is not None
        assert member.read().decode() == LICENSE_TEXT


def test_wheel_holds_the_package_and_nothing_of_the_repository(artifacts: dict[str, Path]) -> None:
    """The wheel has the package (with py.typed) and no tests, docs or examples."""
    with zipfile.ZipFile(artifacts["wheel"]) as wheel:
        top = {name.split("/", 1)[0] for name in wheel.namelist()}
        assert "marketplace_entitlement/py.typed" in wheel.namelist()
    assert top == {"marketplace_entitlement", f"marketplace_entitlement-{__version__}.dist-info"}


def clean_environment(home: Path) -> dict[str, str]:
    """A minimal environment: no PYTHONPATH, no AWS or MARKETPLACE variables of this run."""
    keep = ("PATH", "LANG", "LC_ALL", "PIP_CERT", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["HOME"] = os.environ.get("HOME", str(home))  # pip's cache of downloaded dependencies
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with only the wheel and its runtime dependencies installed."""
    place = tmp_path_factory.mktemp("clean")
    environment = place / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(environment)
    result = subprocess.run(
        [
            str(environment / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            str(artifacts["wheel"]),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=place,
        env=clean_environment(place),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return environment


def test_installed_wheel_is_used_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    """The clean environment imports the package from its own site-packages."""
    result = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import marketplace_entitlement as m; print(m.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
        env=clean_environment(tmp_path),
    )
    location = Path(result.stdout.strip())
    assert location.is_relative_to(installed)
    assert not location.is_relative_to(ROOT)


def test_installed_wheel_checks_against_its_own_emulator(installed: Path, tmp_path: Path) -> None:
    """From the clean environment: start the emulator, then ``check`` is entitled and verified."""
    env = clean_environment(tmp_path)
    command = str(installed / "bin" / "marketplace-entitlement")
    emulator = subprocess.Popen(
        [command, "emulator", "--port", "0", "--product-code", "prod-release"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert emulator.stdout is not None
        ready = json.loads(emulator.stdout.readline())
        env.update(
            {
                "AWS_ENDPOINT_URL_MARKETPLACE_METERING": ready["endpoint"],
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "MARKETPLACE_PRODUCT_CODE": "prod-release",
                "MARKETPLACE_PUBLIC_KEY_FILE": ready["public_key_file"],
            }
        )
        result = subprocess.run(
            [command, "check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env=env,
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    entitlement = json.loads(result.stdout)
    assert entitlement["entitled"] is True
    assert entitlement["verified"] is True
    assert entitlement["product_code"] == "prod-release"


def test_dockerfile_steps_in_a_clean_environment(installed: Path, tmp_path: Path) -> None:
    """Dockerfile.example's steps without Docker work on a seller's project, pinned.

    On top of the wheel, the seller's project (examples/multi-worker, copied elsewhere) is installed
    as a package of its own; the Dockerfile's ``marketplace-entitlement pin`` step pins the product
    code and the emulator's key into the clean environment's package; then the image's CMD runs
    through entrypoint/entrypoint.sh (installed as the ENTRYPOINT is, mode 0755) with that
    environment's bin/ first on PATH, against the emulator, with no product code or key in the
    environment (``check`` needs nothing more either). The pin file is removed afterwards: the
    clean environment is shared by this module.
    """
    project = tmp_path / "seller-project"
    shutil.copytree(ROOT / "examples" / "multi-worker", project)
    env = clean_environment(tmp_path)
    python = str(installed / "bin" / "python")
    result = subprocess.run(
        [python, "-m", "pip", "install", "-q", "."],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=project,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    command = str(installed / "bin" / "marketplace-entitlement")
    entrypoint = tmp_path / "bin" / "marketplace-entrypoint"  # COPY --chmod=0755 entrypoint.sh ...
    entrypoint.parent.mkdir()
    shutil.copyfile(ROOT / "entrypoint" / "entrypoint.sh", entrypoint)
    entrypoint.chmod(0o755)
    emulator = subprocess.Popen(
        [command, "emulator", "--port", "0", "--product-code", "prod-seller"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    server: subprocess.Popen[str] | None = None
    try:
        assert emulator.stdout is not None
        ready = json.loads(emulator.stdout.readline())
        key_copy = tmp_path / "public-key.pem"  # COPY public-key.pem /tmp/public-key.pem
        shutil.copyfile(ready["public_key_file"], key_copy)
        pinned = subprocess.run(
            image_pin_command("prod-seller", key_copy),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env={**env, "PATH": f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}"},
        )
        assert pinned.returncode == 0, pinned.stdout + pinned.stderr
        (pin_file,) = installed.glob("lib/python*/site-packages/marketplace_entitlement/pin.json")
        assert json.loads(pin_file.read_text(encoding="utf-8"))["product_code"] == "prod-seller"
        key_copy.unlink()  # ... && rm /tmp/public-key.pem: the image keeps only the pin
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env.update(
            {
                "AWS_ENDPOINT_URL_MARKETPLACE_METERING": ready["endpoint"],
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "MARKETPLACE_STATUS_FILE": str(tmp_path / "status.json"),
                "BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": "2",
            }
        )
        assert not [name for name in env if name.startswith("MARKETPLACE_PUBLIC_KEY")]
        assert "MARKETPLACE_PRODUCT_CODE" not in env
        # The image's ENTRYPOINT and CMD, with the clean environment's bin/ standing for the image.
        env["PATH"] = f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        checked = subprocess.run(
            [command, "check"], capture_output=True, text=True, timeout=60, check=False, env=env
        )
        assert checked.returncode == 0, checked.stderr  # `check` too needs nothing but the pin
        assert json.loads(checked.stdout)["product_code"] == "prod-seller"
        server = subprocess.Popen(
            [str(entrypoint), *image_cmd()],
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        assert answer(f"http://127.0.0.1:{port}/").startswith("hello from worker ")
        health = subprocess.run(
            [command, "probe"], capture_output=True, text=True, timeout=60, check=False, env=env
        )
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=30)
        emulator.terminate()
        emulator.wait(timeout=30)
        for leftover in installed.glob(
            "lib/python*/site-packages/marketplace_entitlement/pin.json"
        ):
            leftover.unlink()
    assert server.returncode == 0


def image_pin_command(product_code: str, key_file: Path) -> list[str]:
    """Dockerfile.example's ``marketplace-entitlement pin`` step, for this product code and key.

    The words up to ``&&`` of the RUN step that pins, with the product code placeholder and the
    temporary key path replaced.
    """
    instructions = " ".join(
        (ROOT / "Dockerfile.example").read_text(encoding="utf-8").replace("\\\n", " ").split()
    )
    start = instructions.index("RUN marketplace-entitlement pin ")
    words = shlex.split(instructions[start + len("RUN ") :].partition("&&")[0])
    temporary = words[words.index("--public-key-file") + 1]
    replaced = {"<PRODUCT_CODE>": product_code, temporary: str(key_file)}
    return [replaced.get(word, word) for word in words]


def image_cmd() -> list[str]:
    """The CMD of Dockerfile.example (a JSON array on one line)."""
    (line,) = [
        line
        for line in (ROOT / "Dockerfile.example").read_text(encoding="utf-8").splitlines()
        if line.startswith("CMD ")
    ]
    command = json.loads(line.removeprefix("CMD "))
    assert isinstance(command, list)
    return [str(word) for word in command]


def answer(url: str, timeout: float = 60.0) -> str:
    """The body of the first successful GET of ``url`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        body = get(url)
        if body is not None:
            return body
        assert time.monotonic() < deadline, f"nothing answered at {url}"
        time.sleep(0.1)
