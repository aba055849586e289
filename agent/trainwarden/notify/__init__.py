"""Standalone notifications: conditions -> events (tracker) -> messages -> on-disk outbox -> apprise targets."""
