"""Snakemake's own test harness for executor plugins (the simple and groups workflows)."""

from __future__ import annotations

import pytest
from snakemake.common.tests import TestWorkflowsLocalStorageBase

from snakemake_executor_plugin_quantum import ExecutorSettings

pytestmark = pytest.mark.slow


class TestWorkflows(TestWorkflowsLocalStorageBase):
    __test__ = True

    def get_executor(self) -> str:
        return "quantum"

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings()
