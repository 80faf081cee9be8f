"""Exceptions whose message is a sentence a student can act on (the CLI and app show it as is)."""


class NSTError(Exception):
    """Base class for every error the library raises on purpose."""

    exit_code = 1


class ImageError(NSTError):
    """The input is not a usable image (missing, not an image, truncated, too big, too small)."""

    exit_code = 2


class LayerError(NSTError):
    """A layer name is not known for the chosen backbone."""

    exit_code = 2


class ConfigError(NSTError):
    """A parameter value is out of range or inconsistent."""

    exit_code = 2


class WeightsError(NSTError):
    """Pretrained weights are missing, unreachable, corrupt or do not fit the network."""

    exit_code = 3


class Cancelled(NSTError):
    """A run was stopped through its CancelToken."""

    exit_code = 130
