"""One exception family for everything a user can get wrong.

Every message names the thing that is wrong, the value seen and the fix. The classes keep their
constructor arguments simple (a single message string) so that they survive pickling back from
Ray workers unchanged.
"""

from __future__ import annotations


class RayMLError(Exception):
    """Base class of every error ray_ml raises on purpose (bad config, data, request, file)."""

    exit_code = 1


class ConfigError(RayMLError, ValueError):
    """A config key is unknown, of the wrong type or out of range."""

    exit_code = 2


class SourceError(RayMLError):
    """A data source cannot be found, parsed or read."""


class ContractError(RayMLError, ValueError):
    """A data contract file is malformed or inconsistent with the data."""


class RejectRateExceeded(RayMLError):
    """Validation rejected more rows than the configured threshold allows."""

    exit_code = 2


class BundleError(RayMLError):
    """A model bundle is missing, incomplete, corrupt or was modified after export."""


class RegistryError(RayMLError):
    """A model, version or alias is missing from the registry, or a registry change failed."""
