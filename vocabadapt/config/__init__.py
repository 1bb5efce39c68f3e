"""The validated YAML config: schema (the only place a default lives), loading, reference docs."""

from . import schema
from .docs import schema_reference
from .loading import load_config, package_file, parse_override, validate_dict
from .schema import *  # noqa: F403  (the section models, listed once in schema.__all__)

__all__ = [
    *schema.__all__,
    "load_config",
    "package_file",
    "parse_override",
    "schema_reference",
    "validate_dict",
]
