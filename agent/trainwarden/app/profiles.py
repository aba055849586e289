"""Named policy profiles: YAML files of `Policy` settings that a run or a folder opts into (`policy.profile:
guide`). A name is a file shipped in `trainwarden/profiles/` (`guide`: the user's guide); anything else is a
path to one's own YAML. Without a profile every run is judged by the neutral defaults of judge/policy.py."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from trainwarden.judge.policy import DEFAULT_POLICY, Policy, policy_from_mapping

PROFILE_SUFFIX = ".yaml"


def shipped_profiles() -> tuple[str, ...]:
    """The names of the profiles that ship with trainwarden."""
    folder = resources.files("trainwarden") / "profiles"
    return tuple(sorted(p.name[: -len(PROFILE_SUFFIX)] for p in folder.iterdir() if p.name.endswith(PROFILE_SUFFIX)))


def _profile_text(name: str) -> tuple[str | None, str]:
    """(the profile's YAML text, or None; what it was read from, or why not)."""
    if name in shipped_profiles():
        shipped = resources.files("trainwarden") / "profiles" / f"{name}{PROFILE_SUFFIX}"
        return shipped.read_text(encoding="utf-8"), f"profile {name}"
    path = Path(name).expanduser()
    if not path.suffix:
        return None, f"unknown profile {name!r} (shipped: {', '.join(shipped_profiles())}; or the path of a YAML file)"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        return None, f"profile {name}: cannot read ({exc.strerror or exc})"


def load_profile(name: object, where: str = "policy.profile") -> tuple[Policy, list[str]]:
    """The neutral defaults with the profile's settings on top, and every problem found (prefixed with `where`)."""
    import yaml  # only when a profile is asked for

    if not isinstance(name, str) or not name.strip():
        return DEFAULT_POLICY, [f"{where}: expected a profile name or the path of a YAML file, got {name!r}"]
    text, source = _profile_text(name.strip())
    if text is None:
        return DEFAULT_POLICY, [f"{where}: {source}"]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return DEFAULT_POLICY, [f"{where}: {source} is not valid YAML ({exc})"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return DEFAULT_POLICY, [f"{where}: {source} must be a mapping of policy settings"]
    return policy_from_mapping(data, DEFAULT_POLICY, where=f"{where} ({source})")


def policy_with_profile(data: dict, base: Policy = DEFAULT_POLICY, where: str = "policy") -> tuple[Policy, list[str]]:
    """A `policy:` section: its `profile` (when given) replaces `base`, then its other settings override."""
    settings = dict(data)
    problems: list[str] = []
    if "profile" in settings:
        base, problems = load_profile(settings.pop("profile"), where=f"{where}.profile")
    policy, found = policy_from_mapping(settings, base, where=where)
    return policy, problems + found


def guide_policy() -> Policy:
    """The user's guide (the profile `demo` and the README's walk-through use)."""
    policy, problems = load_profile("guide")
    if problems:
        raise ValueError("; ".join(problems))  # the shipped file is held valid by the tests
    return policy
