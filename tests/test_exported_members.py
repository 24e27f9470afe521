"""The public API cannot drift silently: `__all__` is sorted, complete and holds the contract's names."""

from __future__ import annotations

import celery_heartbeat

CONTRACT_NAMES = {
    "ConfigurationError",
    "Heartbeat",
    "heartbeat_signature",
    "install",
    "install_beat_liveness",
    "with_heartbeat",
}


def test_all_is_sorted_and_every_name_exists() -> None:
    """Every name in __all__ is importable, and the list is sorted."""
    assert sorted(celery_heartbeat.__all__) == celery_heartbeat.__all__
    assert [] == [name for name in celery_heartbeat.__all__ if not hasattr(celery_heartbeat, name)]


def test_contract_names_are_exported() -> None:
    """The names users, the README and the examples depend on are all public."""
    assert set() == CONTRACT_NAMES - set(celery_heartbeat.__all__)


def test_no_public_name_is_left_out_of_all() -> None:
    """Everything public at the top level is in __all__ (modules and private names aside)."""
    public = {
        name
        for name, value in vars(celery_heartbeat).items()
        if not name.startswith("_") and not isinstance(value, type(celery_heartbeat))
    }
    assert set() == public - set(celery_heartbeat.__all__)
