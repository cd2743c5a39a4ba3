"""Kubernetes credentials for a command, found the way ``KubeClient.connect`` finds them, with
one-line errors that say what to do (the client library raises its own exceptions, which would
reach a user of ``klaxon status`` as a 50-line traceback).

Order: ``--kubeconfig FILE``; else the pod's service account (in a cluster); else
``$KUBECONFIG`` (paths joined by ``:``) or ``~/.kube/config``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

#: Where the client library looks when neither --kubeconfig nor a service account is there.
_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"


class CredentialsError(Exception):
    """No usable credentials: the message names the file or source, the problem and the fix."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_file(path: Path, source: str) -> None:
    """Readable, YAML, a mapping: what the library assumes before it fails with a type error."""
    if not path.exists():
        raise CredentialsError(f"{source} {path}: no such file (pass an existing kubeconfig file)")
    if path.is_dir():
        raise CredentialsError(f"{source} {path}: is a directory (pass a kubeconfig file)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CredentialsError(f"{source} {path}: cannot be read ({e.strerror or _one_line(e)})") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{source} {path}: not a kubeconfig (not UTF-8 text)") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CredentialsError(f"{source} {path}: not valid YAML ({_one_line(e)})") from None
    if not isinstance(doc, dict):
        raise CredentialsError(
            f"{source} {path}: not a kubeconfig (expected a YAML mapping with clusters, contexts and users)"
        )


async def _load_file(config_file: str | None, shown: str, context: str | None, cfg: k8s.Configuration) -> None:
    try:
        await k8s_config.load_kube_config(config_file=config_file, context=context, client_configuration=cfg)
    except Exception as e:  # ConfigException, YAML errors, a file of the wrong shape: all "not usable"
        hint = " or pick another with --context" if context else ""
        raise CredentialsError(f"kubeconfig {shown} is not usable: {_one_line(e)} (fix the file{hint})") from None


async def configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s.Configuration:
    """The client configuration for ``kubeconfig`` / ``context``, or ``CredentialsError``."""
    cfg = k8s.Configuration()
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        _check_file(path, "--kubeconfig")
        await _load_file(str(path), str(path), context, cfg)
        return cfg
    if os.environ.get(_SERVICE_HOST):
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return cfg
        except k8s_config.ConfigException:
            pass  # not a pod after all (the variable alone): fall back to a kubeconfig as the client does
    env = os.environ.get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p] or [Path("~/.kube/config").expanduser()]
    found = [p for p in candidates if p.is_file()]
    if not found:
        where = f"$KUBECONFIG ({env}) names no existing file" if env else "~/.kube/config does not exist"
        raise CredentialsError(
            f"no Kubernetes credentials: {where} and this is not a pod in a cluster "
            "(pass --kubeconfig FILE or set KUBECONFIG)"
        )
    for p in found:
        _check_file(p, "$KUBECONFIG" if env else "kubeconfig")
    await _load_file(env or None, env or str(candidates[0]), context, cfg)
    return cfg
