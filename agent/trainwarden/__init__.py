"""trainwarden: watch MMEngine / MMDetection training runs and alert when they go wrong."""

__version__ = "0.1.0"
