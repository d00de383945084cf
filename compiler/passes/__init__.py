"""Compiler passes: small functions IR -> report (checks, accounting, kernel selection)."""

from .accounting import Accounting, account
from .check import check_ir
from .kernels import BackendChoice, choose_backend, select_kernels
from .sharding import ShardingPlan, plan_sharding

__all__ = ["Accounting", "BackendChoice", "account", "check_ir", "choose_backend", "select_kernels", "ShardingPlan",
           "plan_sharding"]
