"""Targets and the standalone notifier from the config file and `--notify` flags."""

from __future__ import annotations

import logging
from pathlib import Path

from trainwarden.app.config import default_state_dir

# the notification modules (and hashlib, and with it OpenSSL's libcrypto) are imported only with a target

log = logging.getLogger("trainwarden.notify")


def notify_targets(cfg, urls: list[str] | None):
    """The `--notify` URLs and the config's targets; a URL apprise cannot use is a usage error at start (exit 2,
    the URL masked), never a target that logs errors and is retried for ever."""
    if not urls:
        return list(cfg.notify.targets)
    from trainwarden.errors import UsageError
    from trainwarden.outputs.notify.targets import Target, unusable

    problems = [f"--notify: {why}" for u in urls if (why := unusable(u))]
    if problems:
        raise UsageError("; ".join(problems))
    return [*(Target(u) for u in urls), *cfg.notify.targets]


def build_notifier(cfg, urls: list[str] | None, roots: list[Path]):
    """The standalone notifier, or None: no target, or alerts go through Alertmanager and its bridge."""
    targets = notify_targets(cfg, urls)
    if not targets:
        log.info("no notification target (--notify URL or notify.targets): conditions are shown, not sent")
        return None
    if cfg.notify.mode == "alertmanager":
        log.info("notify.mode is alertmanager: the agent sends no notification itself")
        return None
    import hashlib

    from trainwarden.outputs.notify.service import Notifier

    # one state folder per set of watched folders: two agents never share an outbox
    scope = hashlib.sha256("|".join(sorted(str(r.absolute()) for r in roots)).encode()).hexdigest()[:12]
    state = (cfg.notify.state_dir or default_state_dir()) / scope
    log.info("notifying %s; outbox in %s", ", ".join(t.name for t in targets), state)
    return Notifier(targets, state, cfg.notify.host, cfg.notify.resolve_after_seconds, cfg.notify.max_per_minute,
                    log_lines=cfg.policies.default.log_lines_red)
