"""What the agent makes of the judged runs: the status document, metrics, notifications, views."""

from trainwarden.outputs.prometheus_core import load_core_only

load_core_only()  # before any output imports prometheus_client: its HTTP half stays unloaded until asked for
