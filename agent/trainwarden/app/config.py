"""The optional YAML configuration file (`--config.file`).

Every problem is collected and reported at once (ConfigError carries the list); the CLI turns it into exit 2.
Known keys today:

    watch: [PATH, ...]            # work dirs or folders of work dirs, added to those on the command line
    web:
      listen_address: 127.0.0.1:9841
    discovery:
      poll_interval_seconds: 0.5  # how often files are checked when no file event arrives
      rediscover_interval_seconds: 5.0  # default: 5, or 30 when file events work
      file_events: true           # false on network mounts that send no events
      exclude: ["*/archive/*"]    # globs of folders (and captures) left out entirely: a name or a whole path
    policy:                       # every threshold: see policy.py (the defaults are neutral)
      profile: guide              # the user's guide (trainwarden/profiles/guide.yaml), or the path of one's own YAML
      eval_key: pascal_voc/mAP
      goal: 0.63
    notify:
      mode: standalone              # or alertmanager: the stack's bridge notifies, the agent stays quiet
      host: gpu-box-1               # the name messages carry (default: this machine's name)
      state_dir: ~/.local/state/trainwarden   # outbox and alert state (default per platform)
      resolve_after_seconds: 120    # hold-down before a resolved notice (flapping)
      max_per_minute: 20            # per target; beyond, messages are combined
      targets:
        - url_env: PHONE_URL        # or url: ..., or url_file: /run/secrets/phone (secrets stay out of the file)
          severities: [critical]
        - url: json://127.0.0.1:8080/hook
          severities: [warning, info]
          resolved: false           # no resolved notices to this one
      apprise_config: /etc/trainwarden/apprise.yml   # apprise's own file; its tags: critical, warning, info
    runs:
      stage2_1_pure_detection:      # a run's name: its work dir's name
        pid: 12345                  # its training process, when finding it by itself is not wanted
        policy: {plan_label: Plan A}  # overrides for this run only (`profile:` here starts from that profile)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainwarden.app.profiles import load_profile, policy_with_profile
from trainwarden.judge.policy import DEFAULT_POLICY, Policy, PolicySet

if TYPE_CHECKING:
    from trainwarden.outputs.notify.targets import Target

DEFAULT_LISTEN = "127.0.0.1:9841"


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def default_state_dir() -> Path:
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "trainwarden"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "trainwarden"


@dataclass
class NotifyConfig:
    mode: str = "standalone"
    host: str | None = None
    state_dir: Path | None = None
    targets: list[Target] = field(default_factory=list)
    resolve_after_seconds: float = 120.0
    max_per_minute: int = 20


@dataclass
class Config:
    watch: list[Path] = field(default_factory=list)
    listen_address: str = DEFAULT_LISTEN
    poll_interval_seconds: float = 0.5
    rediscover_interval_seconds: float | None = None
    file_events: bool = True
    exclude: tuple[str, ...] = ()  # discovery.exclude: globs of folders left out
    policies: PolicySet = field(default_factory=PolicySet)
    runs: dict[str, dict] = field(default_factory=dict)  # run name -> {"pid": int}
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def pid_of(self, run: str) -> int | None:
        return self.runs.get(run, {}).get("pid")


def parse_listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[::1]:PORT`; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:9841)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _number(section: str, key: str, value, problems: list[str], minimum: float = 0.0) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{section}.{key}: expected a number, got {value!r}")
        return None
    if value < minimum:
        problems.append(f"{section}.{key}: must be at least {minimum}, got {value}")
        return None
    return float(value)


def _unknown(section: str, data: dict, known: set[str], problems: list[str]) -> None:
    for key in sorted(set(data) - known):
        problems.append(f"{section + '.' if section else ''}{key}: unknown setting")


def _section(data: dict, name: str, problems: list[str]) -> dict:
    value = data.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a mapping, got {type(value).__name__}")
        return {}
    return value


def load_config(path: Path | None, profile: str | None = None) -> Config:
    """The configuration file's settings (none: the defaults); `profile` (the `--profile` flag) replaces the file's
    `policy.profile` for every run that names none of its own."""
    if path is None:
        if profile is None:
            return Config()
        policy, problems = load_profile(profile, where="--profile")
        if problems:
            raise ConfigError(problems)
        return Config(policies=PolicySet(policy))
    import yaml  # only when a file is given

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    problems: list[str] = []
    cfg = Config()
    _unknown("", data, {"watch", "web", "discovery", "policy", "runs", "notify"}, problems)
    watch = data.get("watch", [])
    if isinstance(watch, str):
        watch = [watch]
    if not isinstance(watch, list) or not all(isinstance(p, str) for p in watch):
        problems.append("watch: expected a list of paths")
    else:
        cfg.watch = [Path(p).expanduser() for p in watch]
    web = _section(data, "web", problems)
    _unknown("web", web, {"listen_address"}, problems)
    if "listen_address" in web:
        try:
            parse_listen_address(str(web["listen_address"]))
            cfg.listen_address = str(web["listen_address"])
        except ValueError as exc:
            problems.append(f"web.listen_address: {exc}")
    disc = _section(data, "discovery", problems)
    _unknown("discovery", disc, {"poll_interval_seconds", "rediscover_interval_seconds", "file_events", "exclude"},
             problems)
    exclude = disc.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(g, str) and g for g in exclude):
        problems.append("discovery.exclude: expected a list of globs")
    else:
        cfg.exclude = tuple(exclude)
    for key in ("poll_interval_seconds", "rediscover_interval_seconds"):
        if key in disc:
            value = _number("discovery", key, disc[key], problems, minimum=0.05)
            if value is not None:
                setattr(cfg, key, value)
    if "file_events" in disc:
        if isinstance(disc["file_events"], bool):
            cfg.file_events = disc["file_events"]
        else:
            problems.append("discovery.file_events: expected true or false")
    policy_data = _section(data, "policy", problems)
    base = DEFAULT_POLICY
    if profile is not None:  # the flag's profile, in place of the file's
        base, found = load_profile(profile, where="--profile")
        problems.extend(found)
        policy_data = {k: v for k, v in policy_data.items() if k != "profile"}
    policy, found = policy_with_profile(policy_data, base)
    problems.extend(found)
    per_run: dict[str, Policy] = {}
    for name, settings in _section(data, "runs", problems).items():
        if not isinstance(settings, dict):
            problems.append(f"runs.{name}: expected a mapping")
            continue
        _unknown(f"runs.{name}", settings, {"pid", "policy"}, problems)
        pid = settings.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            problems.append(f"runs.{name}.pid: expected a process id, got {pid!r}")
            pid = None
        cfg.runs[str(name)] = {"pid": pid} if pid is not None else {}
        if settings.get("policy") is not None:
            if not isinstance(settings["policy"], dict):
                problems.append(f"runs.{name}.policy: expected a mapping")
                continue
            run_policy, found = policy_with_profile(settings["policy"], policy, where=f"runs.{name}.policy")
            problems.extend(found)
            per_run[str(name)] = run_policy
    cfg.policies = PolicySet(policy, per_run)
    cfg.notify = _notify(_section(data, "notify", problems), problems)
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return cfg


def _notify(data: dict, problems: list[str]) -> NotifyConfig:
    out = NotifyConfig()
    _unknown("notify", data, {"mode", "host", "state_dir", "targets", "apprise_config", "resolve_after_seconds",
                              "max_per_minute"}, problems)
    mode = data.get("mode", "standalone")
    if mode not in ("standalone", "alertmanager"):
        problems.append(f"notify.mode: expected standalone or alertmanager, got {mode!r}")
    out.mode = mode
    for key in ("host", "state_dir"):
        if data.get(key) is not None and not isinstance(data[key], str):
            problems.append(f"notify.{key}: expected text")
    out.host = data.get("host") if isinstance(data.get("host"), str) else None
    out.state_dir = Path(data["state_dir"]).expanduser() if isinstance(data.get("state_dir"), str) else None
    if "resolve_after_seconds" in data:
        value = _number("notify", "resolve_after_seconds", data["resolve_after_seconds"], problems)
        out.resolve_after_seconds = value if value is not None else out.resolve_after_seconds
    if "max_per_minute" in data:
        value = data["max_per_minute"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"notify.max_per_minute: expected a whole number of at least 1, got {value!r}")
        else:
            out.max_per_minute = value
    targets = data.get("targets") or []
    if not isinstance(targets, list):
        problems.append("notify.targets: expected a list")
        targets = []
    for i, entry in enumerate(targets):
        # imported here: the notification modules (and hashlib, and with it OpenSSL's libcrypto) only with a target
        from trainwarden.outputs.notify.targets import SEVERITIES, Target, resolve_url, unusable

        where = f"notify.targets[{i}]"  # never the URL: it is a secret
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping with url, url_env or url_file")
            continue
        _unknown(where, entry, {"url", "url_env", "url_file", "severities", "resolved"}, problems)
        url = resolve_url(entry, where, problems)
        severities = entry.get("severities", list(SEVERITIES))
        if isinstance(severities, str):
            severities = [severities]
        bad = [s for s in severities if s not in SEVERITIES] if isinstance(severities, list) else [severities]
        if bad:
            problems.append(f"{where}.severities: expected some of {', '.join(SEVERITIES)}, got {bad}")
            continue
        resolved = entry.get("resolved", True)
        if not isinstance(resolved, bool):
            problems.append(f"{where}.resolved: expected true or false")
            continue
        if url and (why := unusable(url)):
            problems.append(f"{where}: {why}")  # masked: only the scheme of a URL apprise cannot parse
        elif url:
            out.targets.append(Target(url, frozenset(severities), resolved))
    if data.get("apprise_config") is not None:
        from trainwarden.outputs.notify.targets import SEVERITIES, Target, unusable

        path = Path(str(data["apprise_config"])).expanduser()
        if not path.is_file():
            problems.append(f"notify.apprise_config: no such file {path}")
        elif why := unusable(f"config:{path}"):
            problems.append(f"notify.apprise_config: {why} ({path})")
        else:
            out.targets.append(Target(f"config:{path}", frozenset(SEVERITIES), True))
    return out
