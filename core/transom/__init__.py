"""Transom: a pluggable single-sign-on and SCIM provisioning host."""

__version__ = "0.1.0"
