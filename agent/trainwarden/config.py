"""The optional YAML configuration file (`--config.file`).

Every problem is collected and reported at once (ConfigError carries the list); the CLI turns it into exit 2.
Known keys today:

    watch: [PATH, ...]            # work dirs or folders of work dirs, added to those on the command line
    web:
      listen_address: 127.0.0.1:9841
    discovery:
      poll_interval_seconds: 0.5  # how often files are checked when no file event arrives
      rediscover_interval_seconds: 5.0
      file_events: true           # false on network mounts that send no events
    policy:                       # every threshold: see policy.py (the defaults are the user's guide)
      eval_key: pascal_voc/mAP
      goal: 0.63
    runs:
      stage2_1_pure_detection:      # a run's name: its work dir's name
        pid: 12345                  # its training process, when finding it by itself is not wanted
        policy: {plan_label: Plan A}  # overrides for this run only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .policy import Policy, PolicySet, policy_from_mapping

DEFAULT_LISTEN = "127.0.0.1:9841"


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Config:
    watch: list[Path] = field(default_factory=list)
    listen_address: str = DEFAULT_LISTEN
    poll_interval_seconds: float = 0.5
    rediscover_interval_seconds: float = 5.0
    file_events: bool = True
    policies: PolicySet = field(default_factory=PolicySet)
    runs: dict[str, dict] = field(default_factory=dict)  # run name -> {"pid": int}

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


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
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
        return Config()
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    problems: list[str] = []
    cfg = Config()
    _unknown("", data, {"watch", "web", "discovery", "policy", "runs"}, problems)
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
    _unknown("discovery", disc, {"poll_interval_seconds", "rediscover_interval_seconds", "file_events"}, problems)
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
    policy, found = policy_from_mapping(_section(data, "policy", problems))
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
            run_policy, found = policy_from_mapping(settings["policy"], policy, where=f"runs.{name}.policy")
            problems.extend(found)
            per_run[str(name)] = run_policy
    cfg.policies = PolicySet(policy, per_run)
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return cfg
