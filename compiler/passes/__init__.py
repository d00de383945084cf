"""Compiler passes: small functions IR -> report (checks, accounting)."""

from .accounting import Accounting, account
from .check import check_ir

__all__ = ["Accounting", "account", "check_ir"]
