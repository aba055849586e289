"""Notification targets: apprise URLs with the severities they receive. A URL is a secret: only its masked form
(`json://user:****@host/path`) is ever logged, shown or stored; the outbox names a target by a hash."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from trainwarden.model import Severity

log = logging.getLogger("trainwarden.notify")

SEVERITIES = tuple(s.value for s in Severity)
_SECRETISH = re.compile(r"(://[^/@:]*:)[^@/]*@|([?&][^=&]*(?:token|key|secret|pass|password|pw|auth)[^=&]*=)[^&]*",
                        re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL as apprise prints it with privacy on, without its query; a plain mask when apprise cannot parse it."""
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(url)
        if plugin:
            return plugin.url(privacy=True).split("?", 1)[0]
    except Exception as exc:  # a URL apprise rejects is still masked below
        log.debug("apprise cannot parse a notification URL (%s): masked by hand", type(exc).__name__)
    scheme, sep, _ = url.partition("://")
    # apprise could not parse it, so nothing says which part is the secret (a bot token can sit where a host
    # would): only the scheme is shown
    return f"{scheme}://****" if sep and scheme.isalnum() else "****"


def unusable(url: str) -> str | None:
    """Why apprise cannot use `url` (None when it can): a URL it cannot parse would only log errors and be
    retried for ever, so it is refused at start. `config:FILE` is apprise's own config file: it must hold a URL."""
    import apprise

    if url.startswith("config:"):
        conf, services = apprise.AppriseConfig(), apprise.Apprise()
        if not conf.add(url[len("config:"):]) or not services.add(conf) or len(services) == 0:
            return "apprise finds no usable URL in this config file"
        return None
    try:
        if apprise.Apprise.instantiate(url):
            return None
    except Exception as exc:  # a plugin that raises on odd input is as unusable as one that returns None
        log.debug("apprise cannot parse a notification URL (%s)", type(exc).__name__)
    return (f"apprise cannot use {mask_url(url)}: not an apprise URL, or one with placeholders "
            "(each service's form: https://github.com/caronc/apprise/wiki)")


def mask_text(text: str, urls: list[str]) -> str:
    """Any of `urls`, or anything shaped like a credential, replaced by its mask (for error messages)."""
    for url in urls:
        if url and url in text:
            text = text.replace(url, mask_url(url))
    return _SECRETISH.sub(lambda m: (m.group(1) + "****@") if m.group(1) else (m.group(2) + "****"), text)


@dataclass(frozen=True)
class Target:
    url: str = field(repr=False)
    severities: frozenset[str] = frozenset(SEVERITIES)
    resolved: bool = True  # also send resolved notices

    @property
    def id(self) -> str:
        return hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]

    @property
    def name(self) -> str:
        return mask_url(self.url)

    def wants(self, severity: str) -> bool:
        return severity in self.severities


def resolve_url(entry: dict, where: str, problems: list[str]) -> str | None:
    """A target's URL from `url`, `url_env` (an environment variable) or `url_file` (a secrets file)."""
    given = [k for k in ("url", "url_env", "url_file") if entry.get(k) is not None]
    if len(given) != 1:
        problems.append(f"{where}: give exactly one of url, url_env, url_file")
        return None
    key = given[0]
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key}: expected text")
        return None
    if key == "url":
        return value.strip()
    if key == "url_env":
        url = (os.environ.get(value) or "").strip()
        if not url:  # an empty slot of an env file: this target is simply off (said, not an error)
            logging.getLogger("trainwarden.app.config").warning("%s: %s is empty or not set: this target is off",
                                                            where, value)
        return url or None
    try:
        return Path(value).expanduser().read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        problems.append(f"{where}.url_file: cannot read {value} ({exc.strerror or exc})")
        return None
